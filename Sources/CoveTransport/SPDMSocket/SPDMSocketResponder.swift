import NIOCore
import NIOPosix
import Synchronization

/// `cove responder`: a TCP server speaking the SPDM socket protocol for one Cove device (DMTF
/// spdm-emu's `spdm_responder_emu` role; QEMU's `spdm_port` and DMTF `spdm_requester_emu` connect to
/// it). One event loop thread serves every connection; the device and its core are shared and
/// touched only under a lock, so the caller thread can read the trace, capture and key log at any
/// time.
///
/// Connections are served one after another as they come; the server stops on SHUTDOWN, with
/// ``stop()``, or (``once``) when its first connection ends.
public final class SPDMSocketResponder: Sendable {
  /// The port bound (useful with port 0: the system picks one).
  public let port: Int
  private let group: MultiThreadedEventLoopGroup
  private let serverChannel: any Channel
  private let shared: Shared

  /// Shared between the event loop and the caller: the core behind a lock.
  final class Shared: @unchecked Sendable {
    // @unchecked: `core` is touched only inside `lock`.
    private let lock = Mutex(())
    private let core: SPDMSocketResponderCore
    let once: Bool
    let maximumPayloadSize: Int

    init(core: SPDMSocketResponderCore, once: Bool, maximumPayloadSize: Int) {
      self.core = core
      self.once = once
      self.maximumPayloadSize = maximumPayloadSize
    }

    func with<Result>(_ body: (SPDMSocketResponderCore) throws(SPDMSocketError) -> Result)
      throws(SPDMSocketError)
      -> Result
    {
      try lock.withLock { _ throws(SPDMSocketError) in try body(core) }
    }
  }

  /// Binds `host:port` and starts serving `core`'s device.
  public init(
    core: SPDMSocketResponderCore, host: String = "127.0.0.1", port: Int, once: Bool = false,
    maximumPayloadSize: Int = SPDMSocketFrameParser.defaultMaximumPayloadSize
  ) throws(SPDMSocketError) {
    let shared = Shared(core: core, once: once, maximumPayloadSize: maximumPayloadSize)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        do {
          try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(SPDMSocketFrameDecoder(maximumPayloadSize: shared.maximumPayloadSize)),
            MessageToByteHandler(SPDMSocketFrameEncoder()),
            ResponderHandler(shared: shared),
          ])
          return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
      }
    do {
      serverChannel = try bootstrap.bind(host: host, port: port).wait()
    } catch {
      try? group.syncShutdownGracefully()
      throw .io("cannot listen on \(host):\(port): \(error)")
    }
    self.group = group
    self.shared = shared
    self.port = serverChannel.localAddress?.port ?? port
  }

  /// Reads the core (trace, capture, key log, device) under the lock.
  public func withCore<Result>(_ body: (SPDMSocketResponderCore) -> Result) -> Result {
    do { return try shared.with { core throws(SPDMSocketError) in body(core) } } catch {
      preconditionFailure("unreachable: the body does not throw")
    }
  }

  /// Blocks the calling thread (never an event loop thread) until the server stops.
  public func wait() {
    try? serverChannel.closeFuture.wait()
  }

  /// Stops accepting and closes the server; connections in progress are closed with the group.
  public func stop() {
    _ = try? serverChannel.close().wait()
  }

  /// Stops the server and its event loop thread.
  public func shutdown() {
    stop()
    try? group.syncShutdownGracefully()
  }

  /// One connection: frames in, the core's replies out; closes on the core's word or a peer error.
  final class ResponderHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = SPDMSocketFrame
    typealias OutboundOut = SPDMSocketFrame

    private let shared: Shared
    private var peer = "?"
    private var closing = false
    private var error: SPDMSocketError?

    init(shared: Shared) { self.shared = shared }

    func channelActive(context: ChannelHandlerContext) {
      peer = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
      let peer = peer
      try? shared.with { core throws(SPDMSocketError) in core.connectionOpened(peer: peer) }
      context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      guard !closing else { return }
      let frame = unwrapInboundIn(data)
      let reply: SPDMSocketReply
      do { reply = try shared.with { core throws(SPDMSocketError) in try core.handle(frame) } } catch {
        fail(context: context, error)
        return
      }
      if let answer = reply.frame {
        let written = context.writeAndFlush(wrapOutboundOut(answer))
        if reply.disposition != .keepOpen {
          closing = true
          let shutdown = reply.disposition == .shutdown
          let server = context.channel.parent
          let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
          written.whenComplete { _ in
            bound.value.close(promise: nil)
            if shutdown { server?.close(promise: nil) }
          }
        }
      } else if reply.disposition != .keepOpen {
        closing = true
        context.close(promise: nil)
        if reply.disposition == .shutdown { context.channel.parent?.close(promise: nil) }
      }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
      fail(context: context, error as? SPDMSocketError ?? .io("\(error)"))
    }

    private func fail(context: ChannelHandlerContext, _ error: SPDMSocketError) {
      guard !closing else { return }
      closing = true
      self.error = error
      context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
      let (peer, error) = (peer, error)
      try? shared.with { core throws(SPDMSocketError) in core.connectionClosed(peer: peer, error: error) }
      if shared.once { context.channel.parent?.close(promise: nil) }
      context.fireChannelInactive()
    }
  }
}
