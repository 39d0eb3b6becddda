import CoveTransport
import NIOCore
import NIOEmbedded
import PCIe
import SPDM
import Testing

@Suite struct SPDMSocketFrameTests {
  static let frames = [
    SPDMSocketFrame(command: .test, transportType: .pciDOE, payload: SPDMSocketFrame.clientHello),
    SPDMSocketFrame(command: .normal, transportType: .pciDOE, payload: Array(0..<37)),
    SPDMSocketFrame(command: .normal, transportType: .pciDOE, payload: []),
    SPDMSocketFrame(command: .shutdown, transportType: .pciDOE),
  ]

  @Test func encodeGoldenBytes() {
    let frame = SPDMSocketFrame(command: .normal, transportType: .pciDOE, payload: [0xAA, 0xBB, 0xCC])
    #expect(
      frame.encode() == [
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0xAA, 0xBB, 0xCC,
      ])
    let shutdown = SPDMSocketFrame(command: .shutdown, transportType: .mctp)
    #expect(shutdown.encode() == [0x00, 0x00, 0xFF, 0xFE, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])
    let hello = SPDMSocketFrame(command: .test, transportType: .pciDOE, payload: SPDMSocketFrame.clientHello)
    #expect(
      hello.encode()
        == [0x00, 0x00, 0xDE, 0xAD, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0E]
        + Array("Client Hello!".utf8) + [0])
  }

  /// The stream of several frames cut in two at every byte boundary, and fed one byte at a time,
  /// decodes to the same frames.
  @Test func splitAtEveryByteBoundary() throws {
    let stream = Self.frames.flatMap { $0.encode() }
    for cut in 0...stream.count {
      var parser = SPDMSocketFrameParser()
      var decoded: [SPDMSocketFrame] = []
      for part in [stream[..<cut], stream[cut...]] {
        parser.append(part)
        while let frame = try parser.next() { decoded.append(frame) }
      }
      #expect(decoded == Self.frames, "cut at \(cut)")
      #expect(parser.pendingBytes == 0)
    }
    var parser = SPDMSocketFrameParser()
    var decoded: [SPDMSocketFrame] = []
    for byte in stream {
      parser.append([byte])
      while let frame = try parser.next() { decoded.append(frame) }
    }
    #expect(decoded == Self.frames)
  }

  /// The NIO decoder, fed through an EmbeddedChannel in two pieces cut at every byte boundary.
  @Test func nioDecoderSplitAtEveryByteBoundary() throws {
    let stream = Self.frames.flatMap { $0.encode() }
    for cut in 0...stream.count {
      let channel = EmbeddedChannel(handler: ByteToMessageHandler(SPDMSocketFrameDecoder()))
      for part in [stream[..<cut], stream[cut...]] where !part.isEmpty {
        try channel.writeInbound(ByteBuffer(bytes: part))
      }
      var decoded: [SPDMSocketFrame] = []
      while let frame = try channel.readInbound(as: SPDMSocketFrame.self) { decoded.append(frame) }
      #expect(decoded == Self.frames, "cut at \(cut)")
      _ = try channel.finish()
    }
  }

  @Test func nioEncoderWritesOneBufferPerFrame() throws {
    let channel = EmbeddedChannel(handler: MessageToByteHandler(SPDMSocketFrameEncoder()))
    for frame in Self.frames { try channel.writeOutbound(frame) }
    for frame in Self.frames {
      let buffer = try #require(try channel.readOutbound(as: ByteBuffer.self))
      #expect(Array(buffer.readableBytesView) == frame.encode())
    }
    #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    _ = try channel.finish()
  }

  @Test(arguments: [UInt32.max, UInt32(SPDMSocketFrameParser.defaultMaximumPayloadSize) + 1])
  func absurdSizeIsATypedErrorNotAnAllocation(size: UInt32) throws {
    var parser = SPDMSocketFrameParser()
    parser.append([0, 0, 0, 1, 0, 0, 0, 2])
    parser.append([
      UInt8(size >> 24), UInt8(truncatingIfNeeded: size >> 16), UInt8(truncatingIfNeeded: size >> 8),
      UInt8(truncatingIfNeeded: size),
    ])
    let expected = SPDMSocketError.payloadTooLarge(
      size: size, maximum: SPDMSocketFrameParser.defaultMaximumPayloadSize)
    #expect(throws: expected) { try parser.next() }
    // The stream cannot be resynchronised: the error stays, later bytes are ignored.
    parser.append(Self.frames[0].encode())
    #expect(throws: expected) { try parser.next() }
    #expect(parser.pendingBytes == 0)
  }

  @Test func maximumSizeItselfIsAccepted() throws {
    var parser = SPDMSocketFrameParser(maximumPayloadSize: 4)
    parser.append(SPDMSocketFrame(command: .normal, transportType: .none, payload: [1, 2, 3, 4]).encode())
    #expect(try parser.next()?.payload == [1, 2, 3, 4])
    parser.append(SPDMSocketFrame(command: .normal, transportType: .none, payload: [1, 2, 3, 4, 5]).encode())
    #expect(throws: SPDMSocketError.payloadTooLarge(size: 5, maximum: 4)) { try parser.next() }
  }

  @Test func nioDecoderRefusesAbsurdSizeBeforeThePayload() throws {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(SPDMSocketFrameDecoder()))
    #expect(
      throws: SPDMSocketError.payloadTooLarge(
        size: .max, maximum: SPDMSocketFrameParser.defaultMaximumPayloadSize)
    ) {
      try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 1, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF]))
    }
    _ = try? channel.finish()
  }
}

@Suite struct SPDMSocketBindingTests {
  @Test func doePayloadIsTheWholeObject() throws {
    let payload = SPDMSocketBinding.doe.payload(for: .plain([0x12, 0x84, 0x00, 0x00, 0xAB]))
    // Vendor 0x0001, type 1, length 4 DWs (header 2 + payload 2, padded), payload padded to a DW.
    #expect(
      payload == [0x01, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x12, 0x84, 0x00, 0x00, 0xAB, 0, 0, 0])
    let secured = SPDMSocketBinding.doe.payload(for: .secured([1, 2, 3, 4]))
    #expect(secured.prefix(4) == [0x01, 0x00, 0x02, 0x00])
    #expect(try SPDMSocketBinding.doe.message(secured, sessions: []) == .secured([1, 2, 3, 4]))
  }

  @Test func mctpPayloadIsTheMessageTypeThenTheMessage() throws {
    #expect(SPDMSocketBinding.mctp.payload(for: .plain([0x12, 0x84, 0, 0])) == [0x05, 0x12, 0x84, 0, 0])
    #expect(SPDMSocketBinding.mctp.payload(for: .secured([9, 9])) == [0x06, 9, 9])
    #expect(try SPDMSocketBinding.mctp.message([0x06, 9, 9], sessions: []) == .secured([9, 9]))
    #expect(throws: SPDMSocketError.malformedPayload("MCTP message type 0x7e is not SPDM")) {
      try SPDMSocketBinding.mctp.message([0x7E, 1], sessions: [])
    }
  }

  @Test func noneIsTheBareMessageAndSessionsMarkRecords() throws {
    let record: [UInt8] = [0xFF, 0xFF, 0x01, 0x00, 0x20, 0x00, 0xAA]
    #expect(SPDMSocketBinding.none.payload(for: .secured(record)) == record)
    #expect(try SPDMSocketBinding.none.message(record, sessions: [0x0001_FFFF]) == .secured(record))
    #expect(try SPDMSocketBinding.none.message(record, sessions: []) == .plain(record))
  }

  @Test func doePayloadFromAnotherVendorIsRefused() {
    #expect(throws: SPDMSocketError.malformedPayload("DOE vendor 0x1234, expected PCI-SIG 0x0001")) {
      try SPDMSocketBinding.doeObject([0x34, 0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00])
    }
  }

  /// Regression (interop with DMTF spdm_requester_emu over MCTP): libspdm's MCTP records carry a
  /// 2-byte sequence number between SessionID and Length, and the SPDM message type 0x05 before the
  /// message inside the encrypted data; Cove answered its FINISH with VersionMismatch.
  @Test func mctpSecuredRecordLayout() throws {
    let keys = SPDMTrafficKeys(
      secret: [], key: Array(repeating: 7, count: 32), iv: Array(repeating: 1, count: 12))
    var sender = keys
    let message: [UInt8] = [0x13, 0xE5, 0x00, 0x00]
    let first = try SecuredMessage.seal(
      sessionID: 0x0102_FFFF, message: message, keys: &sender, format: .mctp)
    let second = try SecuredMessage.seal(
      sessionID: 0x0102_FFFF, message: message, keys: &sender, format: .mctp)
    #expect(first.prefix(8) == [0xFF, 0xFF, 0x02, 0x01, 0x00, 0x00, UInt8(2 + 1 + 4 + 16), 0x00])
    #expect(second[4..<6] == [0x01, 0x00])
    var inner = keys
    let raw = try SecuredMessage.open(
      first, keys: &inner, format: SecuredRecordFormat(sequenceNumberSize: 2, innerMessageType: nil))
    #expect(raw.message == [0x05] + message)
    var receiver = keys
    #expect(try SecuredMessage.open(first, keys: &receiver, format: .mctp).message == message)
    #expect(try SecuredMessage.open(second, keys: &receiver, format: .mctp).message == message)
    // A record whose wire sequence number is not the expected one is refused.
    var stale = keys
    stale.sequenceNumber = 1
    #expect(throws: SecuredMessageError.self) { try SecuredMessage.open(first, keys: &stale, format: .mctp) }
  }
}

@Suite struct SPDMSocketDeviceSelectorTests {
  @Test func parsesEveryForm() {
    #expect(SPDMSocketDeviceSelector(parsing: "default") == SPDMSocketDeviceSelector(image: "default"))
    #expect(
      SPDMSocketDeviceSelector(parsing: "a.yaml#2")
        == SPDMSocketDeviceSelector(image: "a.yaml", which: .index(2)))
    #expect(SPDMSocketDeviceSelector(parsing: "#bus=1f") == SPDMSocketDeviceSelector(which: .bus(0x1F)))
    #expect(
      SPDMSocketDeviceSelector(parsing: "default#cove-dma")
        == SPDMSocketDeviceSelector(image: "default", which: .model("cove-dma")))
    #expect(SPDMSocketDeviceSelector(parsing: "default#") == nil)
    #expect(SPDMSocketDeviceSelector(parsing: "default#-1") == nil)
    #expect(SPDMSocketDeviceSelector(parsing: "default#bus=zz") == nil)
  }
}
