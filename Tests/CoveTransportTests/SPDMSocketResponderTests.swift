import CoveTransport
import NIOCore
import NIOPosix
import SPDM
import Testing

/// A bare TCP client: writes bytes as given and collects what comes back until the peer closes or
/// `expecting` bytes arrived (then it closes itself).
final class RawSocketClient {
  final class Collector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var received: [UInt8] = []
    let expecting: Int?
    let done: EventLoopPromise<(bytes: [UInt8], peerClosed: Bool)>
    init(expecting: Int?, done: EventLoopPromise<(bytes: [UInt8], peerClosed: Bool)>) {
      self.expecting = expecting
      self.done = done
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      received += Array(unwrapInboundIn(data).readableBytesView)
      if let expecting, received.count >= expecting {
        done.succeed((received, false))
        context.close(promise: nil)
      }
    }
    func channelInactive(context: ChannelHandlerContext) { done.succeed((received, true)) }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
  }

  static func exchange(port: Int, sending bytes: [UInt8], expecting: Int? = nil) throws -> (
    bytes: [UInt8], peerClosed: Bool
  ) {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let done = group.next().makePromise(of: (bytes: [UInt8], peerClosed: Bool).self)
    let collector = Collector(expecting: expecting, done: done)
    let channel = try ClientBootstrap(group: group)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
      }
      .connect(host: "127.0.0.1", port: port).wait()
    try channel.writeAndFlush(ByteBuffer(bytes: bytes)).wait()
    let timeout = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
    defer { timeout.cancel() }
    return try done.futureResult.wait()
  }
}

@Suite(.serialized) struct SPDMSocketResponderTests {
  static func server(_ binding: SPDMSocketBinding = .doe) throws -> SPDMSocketResponder {
    try SPDMSocketResponder(core: SocketRig(binding: binding).core, port: 0)
  }

  @Test func testHelloBytes() throws {
    let server = try Self.server()
    defer { server.shutdown() }
    let hello = SPDMSocketFrame(command: .test, transportType: .pciDOE, payload: SPDMSocketFrame.clientHello)
    let answer = try RawSocketClient.exchange(port: server.port, sending: hello.encode(), expecting: 26)
    #expect(
      answer.bytes
        == [0x00, 0x00, 0xDE, 0xAD, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0E]
        + Array("Server Hello!".utf8) + [0])
  }

  @Test func unknownCommandIsAnsweredFFFFAndDropped() throws {
    let server = try Self.server()
    defer { server.shutdown() }
    let frame = SPDMSocketFrame(command: SPDMSocketCommand(rawValue: 0x1234), transportType: .pciDOE)
    let answer = try RawSocketClient.exchange(port: server.port, sending: frame.encode())
    #expect(answer.bytes == [0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00])
    #expect(answer.peerClosed)
  }

  /// A header announcing 0xFFFFFFFF or max+1 bytes: that connection is closed with a typed error and
  /// nothing sent; the server serves the next connection.
  @Test(arguments: [UInt32.max, UInt32(SPDMSocketFrameParser.defaultMaximumPayloadSize) + 1])
  func absurdSizeClosesOnlyThatConnection(size: UInt32) throws {
    let server = try Self.server()
    defer { server.shutdown() }
    let header: [UInt8] = [
      0, 0, 0, 1, 0, 0, 0, 2, UInt8(size >> 24), UInt8(truncatingIfNeeded: size >> 16),
      UInt8(truncatingIfNeeded: size >> 8), UInt8(truncatingIfNeeded: size),
    ]
    let answer = try RawSocketClient.exchange(port: server.port, sending: header + [1, 2, 3])
    #expect(answer.bytes.isEmpty)
    #expect(answer.peerClosed)
    let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
    try connection.end(.shutdown)
    server.wait()
    server.withCore { core in
      #expect(
        core.peerErrors == [
          .payloadTooLarge(size: size, maximum: SPDMSocketFrameParser.defaultMaximumPayloadSize)
        ])
    }
  }

  @Test func wrongTransportTypeIsRejected() throws {
    let server = try Self.server(.doe)
    defer { server.shutdown() }
    let hello = SPDMSocketFrame(command: .test, transportType: .mctp, payload: SPDMSocketFrame.clientHello)
    let answer = try RawSocketClient.exchange(port: server.port, sending: hello.encode())
    #expect(answer.bytes.isEmpty)
    #expect(answer.peerClosed)
    // A Cove client of the other transport gets its hello refused the same way: a typed error.
    #expect(throws: SPDMSocketError.connectionClosed(pendingBytes: 0)) {
      _ = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .mctp)
    }
    server.withCore { core in
      #expect(core.peerErrors.first == .wrongTransport(got: .mctp, expected: .pciDOE))
    }
  }

  @Test func malformedDOEPayloadClosesTheConnection() throws {
    let server = try Self.server(.doe)
    defer { server.shutdown() }
    // A DOE header claiming 5 DWs with only 2 present.
    let frame = SPDMSocketFrame(command: .normal, transportType: .pciDOE, payload: [1, 0, 1, 0, 5, 0, 0, 0])
    let answer = try RawSocketClient.exchange(port: server.port, sending: frame.encode())
    #expect(answer.bytes.isEmpty)
    #expect(answer.peerClosed)
    server.withCore { core in
      guard case .malformedPayload? = core.peerErrors.first else {
        Issue.record("expected malformedPayload, got \(core.peerErrors)")
        return
      }
    }
  }

  @Test func doeDiscoveryIndices() throws {
    let server = try Self.server(.doe)
    defer { server.shutdown() }
    let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
    var answers: [[UInt8]] = []
    for index: UInt8 in 0...2 {
      // Discovery request: vendor 1, type 0, 3 DWs; index, version 0.
      answers.append(try connection.normal([1, 0, 0, 0, 3, 0, 0, 0, index, 0, 0, 0]))
    }
    #expect(answers[0] == [1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 1])
    #expect(answers[1] == [1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 1, 2])
    #expect(answers[2] == [1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 2, 0])
    try connection.end(.shutdown)
  }

  /// A request the device does not answer (here a secured record for no session) gets an empty
  /// NORMAL frame, so the requester is not left waiting, and the connection stays up.
  @Test func unansweredRequestGetsAnEmptyNormalFrame() throws {
    let server = try Self.server(.doe)
    defer { server.shutdown() }
    let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
    let record: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x12, 0x00] + Array(repeating: 0, count: 18)
    #expect(try connection.normal(SPDMSocketBinding.doe.payload(for: .secured(record))) == [])
    var transport = SPDMSocketTSMTransport(connection: connection)
    #expect(throws: SPDMRequesterError.transport("the responder sent no answer (empty NORMAL frame)")) {
      _ = try transport.exchange(.secured(record))
    }
    #expect(try connection.normal(SPDMSocketBinding.doe.payload(for: .plain([0x10, 0x84, 0, 0]))).count > 8)
    try connection.end(.shutdown)
  }
}
