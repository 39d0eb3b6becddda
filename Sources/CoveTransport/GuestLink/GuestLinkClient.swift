public import CoveScenario
public import GuestABI
import IOMMU
public import NIOCore
import NIOPosix
public import PCIe
public import SPDM
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `cove guest`'s end of the link: a `GuestHostInterface` and a `ScenarioHostControl` whose calls
/// go to `cove host` over the Unix socket, one at a time (a guest kernel is single-threaded here), each
/// waiting for its answer. Guest memory does not cross: the guest maps its own pages of the host's
/// memory file and reads and writes them in place, as a vCPU does; only an access to a page the host
/// marks integrity-poisoned goes to the host, whose memory controller has the last word on it.
///
/// When the host goes away every call fails with EIO ("host connection lost") and ``lost`` says why:
/// the guest's command reports it and exits non-zero.
public final class GuestLinkClient: GuestHostInterface, ScenarioHostControl {
  public let welcome: GuestLinkWelcome
  /// Records the host sent with the answers (added to the run's recorder before the answer returns).
  public var onRecords: ([TraceRecord]) -> Void = { _ in }
  /// Why the link ended, once it has.
  public var lost: GuestLinkError? { connection.lost }

  private let connection: Connection
  private var nextID: UInt32 = 1
  private let memory: UnsafeMutableRawPointer
  private let memoryBytes: Int
  private let poison: UnsafePointer<UInt8>
  private let poisonLength: Int
  /// The memory file's page number of each guest page (for its poison byte).
  private let filePages: [Int]

  /// Connects to the host at `socketPath`, says hello and maps the guest's memory. `records` receives
  /// the records of the boot-time TSM connect, before this returns.
  /// `timeout`: how long any one call may wait for its answer before the host counts as gone (a host
  /// that is alive but answers nothing must not hang the guest for ever).
  public init(
    socketPath: String, hello: GuestLinkHello, group: any EventLoopGroup, timeout: Duration = .seconds(120),
    records: ([TraceRecord]) -> Void = { _ in }
  ) throws(GuestLinkError) {
    connection = try Connection(socketPath: socketPath, group: group, timeout: timeout)
    let (bootRecords, answer) = try connection.exchange(GuestLinkFrame(.hello, payload: hello.encoded))
    records(bootRecords)
    guard answer.kind == .welcome else {
      connection.close()
      throw GuestLinkError(.unexpected, "the host answered the hello with \(answer.kind)")
    }
    let welcome = try GuestLinkWelcome(decoding: answer.payload)
    self.welcome = welcome
    let pageSize = 4096
    guard welcome.platform.memoryBytes % UInt64(pageSize) == 0, welcome.platform.memoryBytes < 1 << 40,
      welcome.poisonLength < 1 << 32
    else { throw GuestLinkError(.malformed, "welcome: memory of \(welcome.platform.memoryBytes) bytes") }
    memoryBytes = Int(welcome.platform.memoryBytes)
    var pages = [Int](repeating: -1, count: memoryBytes / pageSize)
    for run in welcome.runs {
      guard run.firstGuestPage <= UInt64(pages.count), run.pages <= UInt64(pages.count) - run.firstGuestPage,
        run.firstFilePage < 1 << 40
      else { throw GuestLinkError(.malformed, "welcome: page run outside guest memory") }
      for i in 0..<Int(run.pages) { pages[Int(run.firstGuestPage) + i] = Int(run.firstFilePage) + i }
    }
    guard !pages.contains(-1) else { throw GuestLinkError(.malformed, "welcome: guest pages without a run") }
    filePages = pages
    let fd = open(welcome.memoryFile, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else {
      throw GuestLinkError(
        .malformed, "cannot open the host's memory file \(welcome.memoryFile): errno \(errno)")
    }
    defer { close(fd) }
    // The guest-physical address space: reserved whole, then each run of pages mapped over it from the
    // file, so GPA n is at memory + n however the host placed the pages.
    guard let base = mmap(nil, memoryBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED
    else { throw GuestLinkError(.malformed, "cannot reserve \(memoryBytes) bytes: errno \(errno)") }
    for run in welcome.runs {
      let at = base + Int(run.firstGuestPage) * pageSize
      guard
        mmap(
          at, Int(run.pages) * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
          off_t(run.firstFilePage) * off_t(pageSize)) != MAP_FAILED
      else {
        munmap(base, memoryBytes)
        throw GuestLinkError(.malformed, "cannot map guest memory from \(welcome.memoryFile): errno \(errno)")
      }
    }
    poisonLength = Int(welcome.poisonLength)
    guard
      let flags = mmap(nil, poisonLength, PROT_READ, MAP_SHARED, fd, off_t(welcome.poisonOffset)),
      flags != MAP_FAILED
    else {
      munmap(base, memoryBytes)
      throw GuestLinkError(.malformed, "cannot map the memory file's poison flags: errno \(errno)")
    }
    memory = base
    poison = UnsafePointer(flags.assumingMemoryBound(to: UInt8.self))
    guard filePages.allSatisfy({ $0 < poisonLength }) else {
      throw GuestLinkError(.malformed, "welcome: page run beyond the poison flags")
    }
  }

  deinit {
    munmap(memory, memoryBytes)
    munmap(UnsafeMutableRawPointer(mutating: poison), poisonLength)
    connection.close()
  }

  /// Tells the host the guest is done (it tears the platform down) and closes.
  public func goodbye() {
    connection.send(GuestLinkFrame(.goodbye))
    connection.close()
  }

  // MARK: Calls

  private func call(_ call: GuestLinkCall) throws(HypercallError) -> [UInt8] {
    let id = nextID
    nextID &+= 1
    let records: [TraceRecord]
    let answer: GuestLinkFrame
    do throws(GuestLinkError) {
      (records, answer) = try connection.exchange(GuestLinkFrame(.call, id: id, payload: call.encoded))
    } catch {
      throw HypercallError(.EIO, "host connection lost: \(error.message)")
    }
    if !records.isEmpty { onRecords(records) }
    switch answer.kind {
    case .result where answer.id == id: return answer.payload
    case .refused where answer.id == id:
      let refusal: HypercallError
      do throws(GuestLinkError) { refusal = try HypercallError(decoding: answer.payload) } catch {
        connection.fail(error)
        throw HypercallError(.EIO, "host connection lost: \(error.message)")
      }
      throw refusal
    default:
      let error = GuestLinkError(.unexpected, "answer \(answer.kind) #\(answer.id) to call #\(id)")
      connection.fail(error)
      throw HypercallError(.EIO, "host connection lost: \(error.message)")
    }
  }

  private func decoded<T>(_ body: () throws(GuestLinkError) -> T) throws(HypercallError) -> T {
    do { return try body() } catch {
      connection.fail(error)
      throw HypercallError(.EIO, "host connection lost: \(error.message)")
    }
  }

  // MARK: GuestHostInterface

  public var platform: GuestPlatformInfo { welcome.platform }

  /// Checks a guest-physical range as the VMM does (EFAULT outside guest memory, the same message),
  /// and says whether any page in it is poisoned (then the host does the access).
  private func local(_ gpa: UInt64, _ count: Int) throws(HypercallError) -> Bool {
    guard count >= 0, gpa <= UInt64(memoryBytes), UInt64(count) <= UInt64(memoryBytes) - gpa else {
      throw HypercallError(.EFAULT, "GPA range outside guest memory")
    }
    guard count > 0 else { return true }
    let first = Int(gpa / 4096)
    let last = Int((gpa + UInt64(count) - 1) / 4096)
    for page in first...last where poison[filePages[page]] != 0 { return false }
    return true
  }

  public func read(gpa: UInt64, count: Int) throws(HypercallError) -> [UInt8] {
    guard try local(gpa, count) else { return try call(.read(gpa: gpa, count: count)) }
    return [UInt8](UnsafeRawBufferPointer(start: memory + Int(gpa), count: count))
  }

  public func write(gpa: UInt64, bytes: [UInt8]) throws(HypercallError) {
    guard try local(gpa, bytes.count) else {
      _ = try call(.write(gpa: gpa, bytes: bytes))
      return
    }
    bytes.withUnsafeBytes { (memory + Int(gpa)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
  }

  public func copy(from source: UInt64, to destination: UInt64, count: Int) throws(HypercallError) {
    let here = try local(source, count)
    guard try local(destination, count), here else {
      _ = try call(.copy(from: source, to: destination, count: count))
      return
    }
    memmove(memory + Int(destination), memory + Int(source), count)
  }

  public func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError) {
    _ = try call(.convert(gpa: gpa, pages: pages, toShared: toShared))
  }

  public func configRead(_ function: RequesterID, offset: Int, size: Int) throws(HypercallError) -> UInt32 {
    let payload = try call(.configRead(function, offset: offset, size: size))
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readU32(payload) }
  }

  public func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32)
    throws(HypercallError)
  {
    _ = try call(.configWrite(function, offset: offset, size: size, value: value))
  }

  public func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32 {
    let payload = try call(.mmioRead(function, address: address))
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readU32(payload) }
  }

  public func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError) {
    _ = try call(.mmioWrite(function, address: address, value: value))
  }

  public func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>] {
    let payload = try call(.bars(function))
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readBars(payload) }
  }

  public func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64 {
    let payload = try call(.viommuRead(register))
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readU64(payload) }
  }

  public func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError) {
    _ = try call(.viommuWrite(register, value))
  }

  public func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    let payload = try call(.tsm(request))
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readTSM(payload) }
  }

  public func drainNotifications() -> [HostNotification] {
    guard let payload = try? call(.drainNotifications) else { return [] }
    return (try? decoded { () throws(GuestLinkError) in try GuestLinkResult.readNotifications(payload) })
      ?? []
  }

  // MARK: ScenarioHostControl

  public var unreachable: String? { connection.lost?.message }

  public func perform(_ step: HostStep) throws(HypercallError) { _ = try call(.hostStep(step)) }

  public func tdiStates() throws(HypercallError) -> [TDIStateEntry] {
    let payload = try call(.tdiStates)
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readStates(payload) }
  }

  public func faultCount() throws(HypercallError) -> Int {
    let payload = try call(.faultCount)
    return Int(
      truncatingIfNeeded: try decoded { () throws(GuestLinkError) in try GuestLinkResult.readU64(payload) })
  }

  public func collect() throws(HypercallError) -> [TraceRecord] {
    let payload = try call(.collect)
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readRecords(payload) }
  }

  public func sessions() throws(HypercallError) -> [SPDMSessionSecrets] {
    let payload = try call(.sessions)
    return try decoded { () throws(GuestLinkError) in try GuestLinkResult.readSessions(payload) }
  }
}

/// The socket under the client: frames out in one write each, frames in through the decoder; one
/// exchange at a time, the caller's thread waiting on a promise the event loop fulfils.
final class Connection: Sendable {
  private let channel: any Channel
  private let inbox: Inbox

  private let timeout: Duration

  init(socketPath: String, group: any EventLoopGroup, timeout: Duration) throws(GuestLinkError) {
    self.timeout = timeout
    let inbox = Inbox()
    do {
      channel = try ClientBootstrap(group: group)
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ClientHandler(inbox: inbox))
          }
        }
        .connect(unixDomainSocketPath: socketPath)
        .wait()
    } catch {
      throw GuestLinkError(.disconnected, "cannot connect to the host at \(socketPath): \(error)")
    }
    self.inbox = inbox
  }

  var lost: GuestLinkError? { inbox.state.withLock { $0.lost } }

  func send(_ frame: GuestLinkFrame) {
    let bytes = frame.encoded
    var buffer = channel.allocator.buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    channel.writeAndFlush(buffer, promise: nil)
  }

  /// Sends `frame` and waits for the answer (and the records that came before it).
  func exchange(_ frame: GuestLinkFrame) throws(GuestLinkError) -> ([TraceRecord], GuestLinkFrame) {
    let promise = channel.eventLoop.makePromise(of: ([TraceRecord], GuestLinkFrame).self)
    if let lost = inbox.expect(promise) {
      promise.fail(lost)
      throw lost
    }
    send(frame)
    let (inbox, timeout) = (inbox, timeout)
    let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
      inbox.end(GuestLinkError(.disconnected, "the host did not answer within \(timeout)"))
    }
    defer { timer.cancel() }
    do { return try promise.futureResult.wait() } catch let error as GuestLinkError {
      if error.message.hasPrefix("the host did not answer") { close() }
      throw error
    } catch {
      throw GuestLinkError(.disconnected, "\(error)")
    }
  }

  func fail(_ error: GuestLinkError) {
    inbox.end(error)
    close()
  }

  /// Closes the socket once (a goodbye closes it, the client's deinit would again).
  func close() {
    guard !closed.exchange(true, ordering: .relaxed) else { return }
    channel.close(promise: nil)
  }

  private let closed = Atomic<Bool>(false)

  final class Inbox: Sendable {
    struct State {
      var waiting: EventLoopPromise<([TraceRecord], GuestLinkFrame)>?
      var records: [TraceRecord] = []
      var lost: GuestLinkError?
    }
    let state = Mutex(State())

    /// Registers the promise for the next answer; the error if the link is already gone.
    func expect(_ promise: EventLoopPromise<([TraceRecord], GuestLinkFrame)>) -> GuestLinkError? {
      state.withLock {
        if let lost = $0.lost { return lost }
        $0.waiting = promise
        $0.records = []
        return nil
      }
    }

    func deliver(_ frame: GuestLinkFrame) {
      if frame.kind == .records {
        do {
          let records = try GuestLinkResult.readRecords(frame.payload)
          state.withLock { $0.records += records }
        } catch { end(error) }
        return
      }
      if frame.kind == .protocolError {
        end(Self.reason(frame.payload))
        return
      }
      let (waiting, records) = state.withLock {
        let pending = ($0.waiting, $0.records)
        $0.waiting = nil
        $0.records = []
        return pending
      }
      if let waiting {
        waiting.succeed((records, frame))
      } else {
        end(GuestLinkError(.unexpected, "a \(frame.kind) frame with no call waiting"))
      }
    }

    func end(_ error: GuestLinkError) {
      let waiting = state.withLock {
        if $0.lost == nil { $0.lost = error }
        let waiting = $0.waiting
        $0.waiting = nil
        return waiting
      }
      waiting?.fail(error)
    }

    static func reason(_ payload: [UInt8]) -> GuestLinkError {
      guard payload.count >= 2 else { return GuestLinkError(.malformed, "the host closed the link") }
      let code = GuestLinkError.Code(rawValue: UInt16(payload[0]) | UInt16(payload[1]) << 8) ?? .malformed
      var message = "the host closed the link"
      if payload.count >= 6 {
        message = String(decoding: payload.dropFirst(6), as: UTF8.self)
      }
      return GuestLinkError(code, "host: \(message)")
    }
  }

  final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let inbox: Inbox
    private var decoder = GuestLinkFrameDecoder()

    init(inbox: Inbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      var buffer = unwrapInboundIn(data)
      guard let bytes = buffer.readBytes(length: buffer.readableBytes) else { return }
      decoder.append(bytes)
      while true {
        do {
          guard let frame = try decoder.next() else { return }
          inbox.deliver(frame)
        } catch {
          inbox.end(error)
          context.close(promise: nil)
          return
        }
      }
    }

    func channelInactive(context: ChannelHandlerContext) {
      inbox.end(GuestLinkError(.disconnected, "the host closed the connection"))
      context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
      inbox.end(GuestLinkError(.disconnected, "\(error)"))
      context.close(promise: nil)
    }
  }
}

extension Duration {
  /// Whole nanoseconds, saturating (NIO's TimeAmount takes an Int64).
  var nanoseconds: Int64 {
    let (seconds, attoseconds) = components
    let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    return overflow ? .max : scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
  }
}
