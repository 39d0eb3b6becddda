public import HostPlatform
import NIOCore
import NIOPosix
public import PCIe
public import SPDM

/// A blocking client connection of the SPDM socket protocol (the requester's side, spdm-emu's
/// `spdm_requester_emu` role): each ``exchange(_:)`` writes one frame and waits on the caller's
/// thread for the answer. The event loop only moves bytes and completes the promise; nothing ever
/// waits on it. Not for use from an event loop thread (it would deadlock), nor from two threads at
/// once.
public final class SPDMSocketConnection {
  public let binding: SPDMSocketBinding
  /// How long one answer may take.
  public let timeout: Duration
  /// Every payload sent (true) and received (false), in order: what `cove tsm --pcap` writes.
  public var onPayload: ((_ payload: [UInt8], _ isRequest: Bool) -> Void)?
  /// The first socket-level failure, kept typed (the TSM sees it as an SPDM transport error).
  public private(set) var lastError: SPDMSocketError?
  private let channel: any Channel
  private let handler: ClientHandler
  private var closed = false

  /// Connects to `host:port` and, for DOE and MCTP, says hello (TEST).
  public init(
    host: String, port: Int, binding: SPDMSocketBinding, timeout: Duration = .seconds(10),
    maximumPayloadSize: Int = SPDMSocketFrameParser.defaultMaximumPayloadSize
  ) throws(SPDMSocketError) {
    self.binding = binding
    self.timeout = timeout
    let handler = ClientHandler()
    // NIO's process-wide event loops: a connection costs no thread of its own.
    let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelOption(.tcpOption(.tcp_nodelay), value: 1)
      .connectTimeout(TimeAmount(timeout))
      .channelInitializer { channel in
        do {
          try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(SPDMSocketFrameDecoder(maximumPayloadSize: maximumPayloadSize)),
            MessageToByteHandler(SPDMSocketFrameEncoder()),
            handler,
          ])
          return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
      }
    do {
      channel = try bootstrap.connect(host: host, port: port).wait()
    } catch {
      throw .io("cannot connect to \(host):\(port): \(error)")
    }
    self.handler = handler
    if binding.usesHello {
      let answer = try exchange(
        SPDMSocketFrame(
          command: .test, transportType: binding.transportType, payload: SPDMSocketFrame.clientHello))
      guard answer.command == .test, answer.payload == SPDMSocketFrame.serverHello else {
        close()
        throw .unexpectedFrame(answer, expected: "TEST \"Server Hello!\\0\"")
      }
    }
  }

  deinit { close() }

  /// One frame out, the next frame in. A frame for another transport, or 0xFFFF, is an error.
  public func exchange(_ frame: SPDMSocketFrame) throws(SPDMSocketError) -> SPDMSocketFrame {
    guard !closed else { throw lastError ?? .connectionClosed(pendingBytes: 0) }
    let promise = channel.eventLoop.makePromise(of: SPDMSocketFrame.self)
    let (channel, handler, timeout) = (channel, handler, TimeAmount(timeout))
    channel.eventLoop.execute {
      handler.expect(promise, timeout: timeout, on: channel.eventLoop)
      channel.writeAndFlush(frame, promise: nil)
    }
    let answer: SPDMSocketFrame
    do { answer = try promise.futureResult.wait() } catch {
      throw remember(error as? SPDMSocketError ?? .io("\(error)"))
    }
    guard answer.transportType == binding.transportType else {
      throw remember(.wrongTransport(got: answer.transportType, expected: binding.transportType))
    }
    if answer.command == .unknown, frame.command != .unknown {
      throw remember(.unknownCommandAnswered(frame.command))
    }
    return answer
  }

  /// One NORMAL exchange: `payload` out, the answer's payload back.
  public func normal(_ payload: [UInt8]) throws(SPDMSocketError) -> [UInt8] {
    onPayload?(payload, true)
    let answer = try exchange(
      SPDMSocketFrame(command: .normal, transportType: binding.transportType, payload: payload))
    guard answer.command == .normal else { throw remember(.unexpectedFrame(answer, expected: "NORMAL")) }
    if !answer.payload.isEmpty { onPayload?(answer.payload, false) }
    return answer.payload
  }

  /// Ends the connection politely: SHUTDOWN stops the responder, CONTINUE lets it take the next
  /// connection. Either is echoed; then the socket closes.
  public func end(_ command: SPDMSocketCommand = .shutdown) throws(SPDMSocketError) {
    let answer = try exchange(SPDMSocketFrame(command: command, transportType: binding.transportType))
    guard answer.command == command else {
      throw remember(.unexpectedFrame(answer, expected: "\(command) echoed"))
    }
    close()
  }

  public func close() {
    guard !closed else { return }
    closed = true
    _ = try? channel.close().wait()
  }

  private func remember(_ error: SPDMSocketError) -> SPDMSocketError {
    if lastError == nil { lastError = error }
    return error
  }

  /// Hands each frame read to the waiting promise; fails it on error, close or timeout. Touched only
  /// on its channel's event loop (hence `@unchecked Sendable`: the caller's closures that reach it
  /// run there).
  final class ClientHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = SPDMSocketFrame

    private var waiting: EventLoopPromise<SPDMSocketFrame>?
    private var timer: Scheduled<Void>?
    private var failure: SPDMSocketError?
    private var early: [SPDMSocketFrame] = []

    func expect(_ promise: EventLoopPromise<SPDMSocketFrame>, timeout: TimeAmount, on loop: any EventLoop) {
      if let failure {
        promise.fail(failure)
        return
      }
      if !early.isEmpty {
        promise.succeed(early.removeFirst())
        return
      }
      waiting = promise
      timer = loop.scheduleTask(in: timeout) { [self] in
        guard let waiting = self.waiting, waiting.futureResult === promise.futureResult else { return }
        self.waiting = nil
        waiting.fail(SPDMSocketError.timeout("no answer within \(timeout.nanoseconds / 1_000_000) ms"))
      }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      let frame = unwrapInboundIn(data)
      timer?.cancel()
      if let waiting {
        self.waiting = nil
        waiting.succeed(frame)
      } else if early.count < 16 {
        // An answer nobody asked for yet; a peer that floods is cut off below.
        early.append(frame)
      } else {
        fail(.unexpectedFrame(frame, expected: "no frame (nothing was asked)"))
        context.close(promise: nil)
      }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
      fail(error as? SPDMSocketError ?? .io("\(error)"))
      context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
      fail(.connectionClosed(pendingBytes: 0))
      context.fireChannelInactive()
    }

    private func fail(_ error: SPDMSocketError) {
      if failure == nil { failure = error }
      timer?.cancel()
      if let waiting {
        self.waiting = nil
        waiting.fail(failure ?? error)
      }
    }
  }
}

/// The TSM's transport over an SPDM socket connection (``HostTSM`` attests an external responder
/// with it). DOE discovery goes over the wire for DOE; MCTP and NONE have no discovery, so both
/// SPDM protocols are reported present (the responder is reached for nothing else).
public struct SPDMSocketTSMTransport: TSMTransport, DOEObjectExchange {
  public let connection: SPDMSocketConnection

  public init(connection: SPDMSocketConnection) { self.connection = connection }

  public var securedRecordFormat: SecuredRecordFormat { connection.binding.securedRecordFormat }

  /// No mailbox to abort: the socket carries one exchange at a time and a fresh GET_VERSION resets
  /// the SPDM connection.
  public mutating func reset() {}

  public mutating func discoverProtocols() throws(SPDMRequesterError) -> [DOEProtocol] {
    guard connection.binding == .doe else { return [.discovery, .spdm, .securedSPDM] }
    return try DOEDiscovery.walk { request throws(SPDMRequesterError) in try exchange(object: request) }
  }

  public mutating func exchange(object: DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject {
    precondition(connection.binding == .doe, "DOE objects travel only on a PCI_DOE connection")
    let payload: [UInt8]
    do { payload = try connection.normal(object.paddedToDW().encode()) } catch {
      throw .transport("\(error)")
    }
    guard !payload.isEmpty else { throw .transport("the responder sent no answer (empty NORMAL frame)") }
    do { return try SPDMSocketBinding.doeObject(payload) } catch { throw .transport("\(error)") }
  }

  public mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError)
    -> SPDMTransportMessage
  {
    if connection.binding == .doe {
      return try SPDMTransportMessage(doeResponse: try exchange(object: DOEDataObject(carrying: message)))
    }
    let payload: [UInt8]
    do { payload = try connection.normal(connection.binding.payload(for: message)) } catch {
      throw .transport("\(error)")
    }
    guard !payload.isEmpty else { throw .transport("the responder sent no answer (empty NORMAL frame)") }
    var sessions: Set<UInt32> = []
    if case .secured(let record) = message, let id = try? SecuredMessage.sessionID(of: record) {
      sessions = [id]
    }
    do { return try connection.binding.message(payload, sessions: sessions) } catch {
      throw .transport("\(error)")
    }
  }
}

extension TimeAmount {
  init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
