import HostPlatform
public import NIOCore
import NIOPosix
import Synchronization

/// `cove host`: the platform daemon. Listens on a Unix socket; each guest that connects says which
/// image it runs and gets a platform of its own (memory in a shared file, IOMMU, TSMs, devices), served
/// on one event loop. A guest that goes away — goodbye, a crash, a malformed or oversized frame — has
/// its platform taken back (``GuestLinkSession/tearDown()``) and the others are not disturbed.
public final class GuestLinkHost: Sendable {
  public let socketPath: String
  private let group: any EventLoopGroup
  private let log: @Sendable (String) -> Void
  private let state = Mutex(State())

  struct State {
    var connected = 0
    var served = 0
    var teardowns: [String] = []
  }

  /// `onSession` is told of each session once its platform is built (on the session's event loop):
  /// for tests and tools that look at a guest's platform from the host's side.
  public init(
    socketPath: String, group: any EventLoopGroup, log: @escaping @Sendable (String) -> Void,
    onSession: (@Sendable (GuestLinkSession) -> Void)? = nil
  ) {
    self.socketPath = socketPath
    self.group = group
    self.log = log
    self.onSession = onSession
  }

  let onSession: (@Sendable (GuestLinkSession) -> Void)?

  /// Guests connected now.
  public var connectedGuests: Int { state.withLock { $0.connected } }
  /// Every teardown so far, as logged.
  public var teardowns: [String] { state.withLock { $0.teardowns } }

  /// Binds the socket (replacing a stale socket file) and starts accepting guests.
  public func listen() throws -> any Channel {
    try ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 64)
      .childChannelInitializer { [self] channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(GuestLinkServerHandler(host: self))
        }
      }
      .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true)
      .wait()
  }

  func connected() -> Int {
    state.withLock {
      $0.connected += 1
      $0.served += 1
      return $0.served
    }
  }

  func disconnected(_ number: Int, _ summary: String, how: String, teardown: [GuestTeardown]?) {
    let count = state.withLock {
      $0.connected -= 1
      return $0.connected
    }
    var line = "connection \(number) \(how): \(summary)"
    if let teardown {
      line += "; " + teardown.map(\.description).joined(separator: "; ")
      state.withLock { $0.teardowns.append(line) }
    }
    log(line + " [\(count) guest(s) connected]")
  }

  func say(_ line: String) { log(line) }
}

/// One guest connection on the host: bytes to frames, frames to the session, replies out (each frame
/// in one write). Confined to the connection's event loop.
final class GuestLinkServerHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let host: GuestLinkHost
  private let session = GuestLinkSession()
  private var decoder = GuestLinkFrameDecoder()
  private var number = 0
  private var ended: String?

  init(host: GuestLinkHost) { self.host = host }

  func channelActive(context: ChannelHandlerContext) {
    number = host.connected()
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var buffer = unwrapInboundIn(data)
    guard ended == nil, let bytes = buffer.readBytes(length: buffer.readableBytes) else { return }
    decoder.append(bytes)
    while ended == nil {
      let frame: GuestLinkFrame?
      do { frame = try decoder.next() } catch {
        send(session.fail(error), context: context, how: "closed on a bad frame (\(error))")
        return
      }
      guard let frame else { return }
      let wasConnected = session.platform != nil
      let replies = session.handle(frame)
      if !wasConnected, session.platform != nil {
        host.say("connection \(number): \(session.summary)")
        host.onSession?(session)
      }
      send(replies, context: context, how: frame.kind == .goodbye ? "finished" : "closed")
    }
  }

  private func send(_ replies: GuestLinkSession.Replies, context: ChannelHandlerContext, how: String) {
    for frame in replies.frames {
      let bytes = frame.encoded
      var out = context.channel.allocator.buffer(capacity: bytes.count)
      out.writeBytes(bytes)
      context.write(wrapOutboundOut(out), promise: nil)
    }
    context.flush()
    if replies.close {
      ended = how
      context.close(promise: nil)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    host.disconnected(
      number, session.summary, how: ended ?? "lost (the guest went away mid-flow)",
      teardown: session.tearDown())
    context.fireChannelInactive()
  }

  /// A socket error (a reset, a write to a peer that is gone) is the guest going away too: whether
  /// the host sees end-of-file or an error first depends only on timing.
  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if ended == nil { ended = "lost (the guest went away mid-flow; \(error))" }
    context.close(promise: nil)
  }
}
