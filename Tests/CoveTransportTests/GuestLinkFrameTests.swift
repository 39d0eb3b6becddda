import CoveScenario
import CoveWire
import GuestABI
import HostPlatform
import IOMMU
import PCIe
import TDISP
import Testing

@testable import CoveTransport

/// The guest link's framing and payloads, byte for byte, and what hostile bytes do to them.
@Suite struct GuestLinkFrameTests {
  static let function = RequesterID(rawValue: 0x0301)

  @Test func aFrameIsItsHeaderThenItsPayload() {
    let frame = GuestLinkFrame(.call, id: 7, payload: [1, 2, 3])
    #expect(
      frame.encoded == [
        0x43, 0x56, 0x47, 0x4C,  // "CVGL"
        0x01, 0x00,  // version 1
        0x10, 0x00,  // call
        0x07, 0x00, 0x00, 0x00,  // request id 7
        0x03, 0x00, 0x00, 0x00,  // payload length 3
        1, 2, 3,
      ])
  }

  /// Three frames cut at every byte boundary, and fed one byte at a time, come out the same.
  @Test func framesSplitAtEveryByteBoundaryDecodeTheSame() throws {
    let frames = [
      GuestLinkFrame(
        .hello, payload: GuestLinkHello(seed: 9, imageSource: "x.yaml", imageText: "name: x").encoded),
      GuestLinkFrame(
        .call, id: 1, payload: GuestLinkCall.configRead(Self.function, offset: 4, size: 2).encoded),
      GuestLinkFrame(.records, id: 1),
      GuestLinkFrame(.result, id: 1, payload: GuestLinkResult.u32(0x0010_0006)),
    ]
    let stream = frames.flatMap(\.encoded)
    for cut in 0...stream.count {
      var decoder = GuestLinkFrameDecoder()
      var out: [GuestLinkFrame] = []
      decoder.append(stream[..<cut])
      while let frame = try decoder.next() { out.append(frame) }
      decoder.append(stream[cut...])
      while let frame = try decoder.next() { out.append(frame) }
      #expect(out == frames, "cut at \(cut)")
      #expect(decoder.buffered == 0)
    }
    var decoder = GuestLinkFrameDecoder()
    var out: [GuestLinkFrame] = []
    for byte in stream {
      decoder.append([byte])
      while let frame = try decoder.next() { out.append(frame) }
    }
    #expect(out == frames)
  }

  static func header(
    magic: UInt32 = GuestLinkFrame.magic, version: UInt16 = 1, kind: UInt16 = 0x10, length: UInt32
  )
    -> [UInt8]
  {
    var w = ByteWriter()
    w.append(magic)
    w.append(version)
    w.append(kind)
    w.append(UInt32(1))
    w.append(length)
    return w.bytes
  }

  static func decodeError(_ bytes: [UInt8]) -> GuestLinkError? {
    var decoder = GuestLinkFrameDecoder()
    decoder.append(bytes)
    do {
      _ = try decoder.next()
      return nil
    } catch { return error }
  }

  /// An absurd length is refused from the header alone: nothing waits for, or allocates, 4 GiB.
  @Test func absurdSizesAreRefusedFromTheHeader() {
    #expect(Self.decodeError(Self.header(length: 0xFFFF_FFFF))?.code == .oversized)
    #expect(
      Self.decodeError(Self.header(length: UInt32(GuestLinkFrame.maximumPayload) + 1))?.code == .oversized)
    // At the limit the header is fine: the decoder waits for the payload.
    var decoder = GuestLinkFrameDecoder()
    decoder.append(Self.header(length: UInt32(GuestLinkFrame.maximumPayload)))
    #expect((try? decoder.next()) == .some(nil))
  }

  @Test func badMagicVersionAndKindAreTypedErrors() {
    #expect(Self.decodeError(Array("GET / HTTP/1.1\r\n".utf8))?.code == .badMagic)
    // The magic is checked as soon as four bytes are in.
    #expect(Self.decodeError([0x00, 0x01, 0x02, 0x03])?.code == .badMagic)
    #expect(Self.decodeError(Self.header(version: 2, length: 0))?.code == .unsupportedVersion)
    #expect(Self.decodeError(Self.header(kind: 0x7777, length: 0))?.code == .unknownKind)
  }

  static let calls: [GuestLinkCall] = [
    .read(gpa: 0x1000, count: 64), .write(gpa: 0x2000, bytes: [9, 8, 7]), .copy(from: 1, to: 2, count: 3),
    .convert(gpa: 0x4000, pages: 2, toShared: true), .configRead(function, offset: 0x10, size: 4),
    .configWrite(function, offset: 4, size: 2, value: 6), .mmioRead(function, address: 0xFE00_0000),
    .mmioWrite(function, address: 0xFE00_0008, value: 1), .bars(function), .viommuRead(.capabilities),
    .viommuWrite(.capabilities, 5), .tsm(.lock(function)), .tsm(.evidence(function, nonce: Array(0..<32))),
    .tsm(.accept(function)), .tsm(.unlock(function)), .drainNotifications,
    .hostStep(.configWrite(function, offset: 0x48, size: 2, value: 0x8000)), .hostStep(.connect),
    .hostStep(.disconnect), .hostStep(.stop(function)),
    .hostStep(
      .inject(GuestImage.InjectionRule(action: "drop", direction: "response", occurrence: 2, match: nil))),
    .hostStep(
      .inject(GuestImage.InjectionRule(action: "corrupt", direction: "request", occurrence: 1, match: "spdm"))
    ),
    .hostStep(.tamper("replay")), .hostStep(.escape(function, target: .neighbourHPA, address: 0x5000)),
    .tdiStates, .faultCount, .collect, .sessions,
  ]

  @Test func everyCallRoundTrips() throws {
    for call in Self.calls { #expect(try GuestLinkCall(decoding: call.encoded) == call, "\(call)") }
    #expect(
      GuestLinkCall.configRead(Self.function, offset: 4, size: 2).encoded == [
        0x05, 0x00, 0x01, 0x03, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
      ])
  }

  @Test func malformedCallsAreTypedErrors() throws {
    func code(_ bytes: [UInt8]) -> GuestLinkError.Code? {
      do {
        _ = try GuestLinkCall(decoding: bytes)
        return nil
      } catch { return error.code }
    }
    for call in Self.calls {
      let bytes = call.encoded
      // Every truncation, and one trailing byte, is malformed; none traps.
      for cut in 0..<bytes.count {
        #expect(code(Array(bytes[..<cut])) == .malformed, "\(call) cut at \(cut)")
      }
      #expect(code(bytes + [0]) == .malformed)
    }
    #expect(code([0x77, 0x00]) == .unknownKind)
    // A flag is 0 or 1 (found by FuzzGuestLink: 0x4A read as true re-encoded as 1).
    #expect(code([0x04, 0x00] + [UInt8](repeating: 0, count: 16) + [0x4A]) == .malformed)
    // A string is UTF-8 (found by FuzzGuestLink: a truncated sequence was repaired, so re-encoded apart).
    #expect(code([0x20, 0x00, 0x06, 0x02, 0x00, 0x00, 0x00, 0x3B, 0xC7]) == .malformed)
    // A count crosses as the guest passed it, hostile or not (the host refuses it as in one process).
    #expect(
      try GuestLinkCall(decoding: GuestLinkCall.read(gpa: 0, count: Int.min).encoded)
        == .read(gpa: 0, count: Int.min))
  }

  @Test func resultsRoundTrip() throws {
    let bars: [Int: Range<UInt64>] = [0: 0xFE00_0000..<0xFE01_0000, 2: 0xFD00_0000..<0xFD00_1000]
    #expect(try GuestLinkResult.readBars(GuestLinkResult.bars(bars)) == bars)
    let notes: [HostNotification] = [
      .interrupt(Self.function, vector: 3), .tdiStateChanged(Self.function, from: .run, to: .error),
    ]
    #expect(try GuestLinkResult.readNotifications(GuestLinkResult.notifications(notes)) == notes)
    let states = [
      TDIStateEntry(function: Self.function, state: .configLocked),
      .init(function: Self.function, state: nil),
    ]
    #expect(try GuestLinkResult.readStates(GuestLinkResult.states(states)) == states)
    let record = TraceRecord(
      component: .tsm, kind: .doe, device: "03:00.0", summary: "GET_VERSION", bytes: [1, 2, 3], from: .tsm,
      to: .dsm,
      isRequest: true)
    #expect(try GuestLinkResult.readRecords(GuestLinkResult.records([record])) == [record])
    let refusal = HypercallError(.EBUSY, "03:00.1 has a driver bound")
    #expect(try HypercallError(decoding: refusal.encoded) == refusal)
    // A bad TDI state byte or a hostile count is malformed, not a trap or an allocation.
    #expect(throws: GuestLinkError.self) { try GuestLinkResult.readStates([1, 0, 0, 0, 1, 3, 9]) }
    #expect(throws: GuestLinkError.self) { try GuestLinkResult.readBars([0xFF, 0xFF, 0xFF, 0xFF]) }
    #expect(throws: GuestLinkError.self) { try GuestLinkResult.readRecords([0xFF, 0xFF, 0xFF, 0x7F]) }
  }

  /// Frames out of turn close the connection with a protocol error, naming why.
  @Test func theSessionRefusesFramesOutOfTurn() throws {
    let session = GuestLinkSession()
    let early = session.handle(GuestLinkFrame(.call, id: 1, payload: GuestLinkCall.tdiStates.encoded))
    #expect(early.close)
    #expect(early.frames.map(\.kind) == [.protocolError])
    #expect(
      Connection.Inbox.reason(early.frames[0].payload)
        == GuestLinkError(.unexpected, "host: a call before the hello"))

    let broken = GuestLinkSession().handle(
      GuestLinkFrame(
        .hello, payload: GuestLinkHello(seed: 1, imageSource: "bad.yaml", imageText: "name: [").encoded))
    #expect(broken.close)
    let reason = Connection.Inbox.reason(broken.frames[0].payload)
    #expect(reason.code == .malformed)
    #expect(reason.message.hasPrefix("host: guest image: bad.yaml:"))
    #expect(session.tearDown() == nil)
  }

  /// A hello, then calls answered as the in-process port answers them; a refusal carries the errno.
  @Test func aSessionAnswersAsTheInProcessPort() throws {
    let session = GuestLinkSession()
    let hello = session.handle(
      GuestLinkFrame(
        .hello,
        payload: GuestLinkHello(seed: 1, imageSource: "default", imageText: BuiltInImages.defaultImage)
          .encoded))
    #expect(!hello.close)
    let welcome = try GuestLinkWelcome(decoding: try #require(hello.frames.last).payload)
    #expect(welcome.platform.memoryBytes == 16 << 20)
    #expect(welcome.platform.functions == [Self.function])
    #expect(welcome.runs.map(\.pages).reduce(0, +) == 4096)
    #expect(welcome.memoryFile.hasPrefix("/proc/"))

    let read = session.handle(
      GuestLinkFrame(
        .call, id: 5, payload: GuestLinkCall.configRead(Self.function, offset: 0, size: 2).encoded))
    #expect(read.frames.map(\.kind) == [.result])
    #expect(read.frames[0].id == 5)
    let platform = try #require(session.platform)
    #expect(
      try GuestLinkResult.readU32(read.frames[0].payload)
        == (try platform.port.configRead(Self.function, offset: 0, size: 2)))

    let refused = session.handle(
      GuestLinkFrame(.call, id: 6, payload: GuestLinkCall.tsm(.accept(Self.function)).encoded))
    #expect(refused.frames.map(\.kind) == [.refused])
    let error = try HypercallError(decoding: refused.frames[0].payload)
    #expect(error.errno == .EINVAL)

    // A hostile count is refused as the VMM refuses it.
    let hostile = session.handle(
      GuestLinkFrame(.call, id: 9, payload: GuestLinkCall.read(gpa: 0, count: Int.min).encoded))
    #expect(
      try HypercallError(decoding: hostile.frames[0].payload)
        == HypercallError(.EFAULT, "GPA range outside guest memory"))

    // LOCK's DOE objects come as records, before the answer, with the call's id.
    let lock = session.handle(
      GuestLinkFrame(.call, id: 7, payload: GuestLinkCall.tsm(.lock(Self.function)).encoded))
    #expect(lock.frames.map(\.kind) == [.records, .result])
    #expect(lock.frames.map(\.id) == [7, 7])
    let records = try GuestLinkResult.readRecords(lock.frames[0].payload)
    #expect(!records.isEmpty && records.allSatisfy { $0.kind == .doe })
    #expect(
      try GuestLinkResult.readStates(
        session.handle(GuestLinkFrame(.call, id: 8, payload: GuestLinkCall.tdiStates.encoded)).frames[0]
          .payload
      ).first { $0.function == Self.function }?.state == .configLocked)

    // The connection ends: the locked TDI is stopped and released, nothing of the guest is left.
    let accounts = try #require(session.tearDown())
    #expect(accounts.count == 1)
    #expect(accounts[0].tdisStopped == 1)
    #expect(accounts[0].tdisReleased == 1)
    #expect(accounts[0].pagesScrubbed == 4096)
    #expect(accounts[0].leaks == [])
    #expect(platform.devices[0].device.tdisp.tdi(Self.function)?.state == .configUnlocked)
    #expect(platform.memory.pages(ownedBy: platform.guest.id) == 0)
    #expect(session.tearDown() == nil)
  }
}
