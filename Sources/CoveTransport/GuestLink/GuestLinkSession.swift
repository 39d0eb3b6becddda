public import CoveScenario
import CoveWire
import GuestABI
public import HostPlatform
import IOMMU
import PCIe

#if canImport(Glibc)
  import Glibc
#endif

/// The host's side of one guest connection, without the socket: frames in, frames out. Before the
/// handshake it accepts only a hello; then it runs the platform the guest's image describes (memory
/// in a shared file, IOMMU, TSMs, devices) and answers each call as the in-process port would. When
/// the connection ends, however it ends, ``tearDown()`` takes every guest of that platform back.
/// Confined to one event loop (single-threaded, as the simulation is).
public final class GuestLinkSession {
  /// What the session says about itself (the host logs it).
  public private(set) var summary = "awaiting hello"
  public private(set) var platform: ScenarioPlatform?
  private var pending: [TraceRecord] = []
  private var tornDown = false

  public init() {}

  /// Whether the connection is to be closed after sending the replies.
  public struct Replies {
    public var frames: [GuestLinkFrame]
    public var close: Bool
  }

  /// Handles one frame from the guest.
  public func handle(_ frame: GuestLinkFrame) -> Replies {
    switch frame.kind {
    case .hello:
      guard platform == nil else { return fail(.init(.unexpected, "a second hello")) }
      return hello(frame.payload)
    case .call:
      guard let platform else { return fail(.init(.unexpected, "a call before the hello")) }
      return call(frame, platform)
    case .goodbye:
      return Replies(frames: [], close: true)
    case .protocolError:
      return Replies(frames: [], close: true)
    case .welcome, .result, .refused, .records:
      return fail(.init(.unexpected, "a \(frame.kind) frame from a guest"))
    }
  }

  /// A protocol error: said to the guest, then the connection closes.
  public func fail(_ error: GuestLinkError) -> Replies {
    summary = "closed: \(error)"
    return Replies(frames: [.error(error)], close: true)
  }

  private func hello(_ payload: [UInt8]) -> Replies {
    let hello: GuestLinkHello
    do { hello = try GuestLinkHello(decoding: payload) } catch { return fail(error) }
    guard hello.minimumVersion <= GuestLinkFrame.version, GuestLinkFrame.version <= hello.maximumVersion
    else {
      return fail(
        .init(
          .unsupportedVersion,
          "the guest speaks versions \(hello.minimumVersion)–\(hello.maximumVersion), the host \(GuestLinkFrame.version)"
        ))
    }
    let image: GuestImage
    do { image = try GuestImage(yaml: hello.imageText, file: hello.imageSource) } catch {
      return fail(.init(.malformed, "guest image: \(error)"))
    }
    let platform: ScenarioPlatform
    do {
      platform = try ScenarioPlatform(image: image, seed: hello.seed, sharedMemory: true)
      platform.onRecord = { [unowned self] in pending.append($0) }
      try platform.connectAtBoot()
    } catch { return fail(.init(.refused, "platform: \(error)")) }
    guard let file = platform.memory.sharedFile else { return fail(.init(.malformed, "no memory file")) }
    self.platform = platform
    summary = "\(image.name) (seed \(hello.seed)) as \(platform.guest.id)"
    var frames = recordsFrame(id: 0)
    let welcome = GuestLinkWelcome(
      version: GuestLinkFrame.version, memoryFile: "/proc/\(getpid())/fd/\(file.descriptor)",
      poisonOffset: UInt64(file.poisonOffset), poisonLength: UInt64(file.poisonLength),
      runs: Self.runs(platform.guest.pages, base: platform.memory.base), platform: platform.port.platform)
    frames.append(GuestLinkFrame(.welcome, payload: welcome.encoded))
    return Replies(frames: frames, close: false)
  }

  /// The guest's pages as runs of consecutive file pages.
  static func runs(_ pages: [PhysicalAddress], base: PhysicalAddress) -> [GuestLinkWelcome.PageRun] {
    var runs: [GuestLinkWelcome.PageRun] = []
    for (index, page) in pages.enumerated() {
      let filePage = (page.rawValue - base.rawValue) / UInt64(PlatformMemory.pageSize)
      if var last = runs.last, last.firstFilePage + last.pages == filePage,
        last.firstGuestPage + last.pages == UInt64(index)
      {
        last.pages += 1
        runs[runs.count - 1] = last
      } else {
        runs.append(.init(firstGuestPage: UInt64(index), firstFilePage: filePage, pages: 1))
      }
    }
    return runs
  }

  private func recordsFrame(id: UInt32) -> [GuestLinkFrame] {
    guard !pending.isEmpty else { return [] }
    defer { pending.removeAll() }
    return [GuestLinkFrame(.records, id: id, payload: GuestLinkResult.records(pending))]
  }

  private func call(_ frame: GuestLinkFrame, _ platform: ScenarioPlatform) -> Replies {
    let call: GuestLinkCall
    do { call = try GuestLinkCall(decoding: frame.payload) } catch { return fail(error) }
    let answer: GuestLinkFrame
    do throws(HypercallError) {
      answer = GuestLinkFrame(.result, id: frame.id, payload: try Self.answer(call, platform))
    } catch {
      answer = GuestLinkFrame(.refused, id: frame.id, payload: error.encoded)
    }
    return Replies(frames: recordsFrame(id: frame.id) + [answer], close: false)
  }

  /// The call made on the platform exactly as the in-process port makes it.
  static func answer(_ call: GuestLinkCall, _ platform: ScenarioPlatform) throws(HypercallError) -> [UInt8] {
    let port = platform.port
    switch call {
    case .read(let gpa, let count): return try port.read(gpa: gpa, count: count)
    case .write(let gpa, let bytes): try port.write(gpa: gpa, bytes: bytes)
    case .copy(let from, let to, let count): try port.copy(from: from, to: to, count: count)
    case .convert(let gpa, let pages, let toShared):
      try port.convert(gpa: gpa, pages: pages, toShared: toShared)
    case .configRead(let function, let offset, let size):
      return GuestLinkResult.u32(try port.configRead(function, offset: offset, size: size))
    case .configWrite(let function, let offset, let size, let value):
      try port.configWrite(function, offset: offset, size: size, value: value)
    case .mmioRead(let function, let address):
      return GuestLinkResult.u32(try port.mmioRead(function, address: address))
    case .mmioWrite(let function, let address, let value):
      try port.mmioWrite(function, address: address, value: value)
    case .bars(let function): return GuestLinkResult.bars(try port.bars(of: function))
    case .viommuRead(let register): return GuestLinkResult.u64(try port.viommuRead(register))
    case .viommuWrite(let register, let value): try port.viommuWrite(register, value)
    case .tsm(let request): return GuestLinkResult.tsm(try port.tsm(request))
    case .drainNotifications: return GuestLinkResult.notifications(port.drainNotifications())
    case .hostStep(let step): try platform.perform(step)
    case .tdiStates: return GuestLinkResult.states(platform.tdiStates())
    case .faultCount: return GuestLinkResult.u64(UInt64(platform.faultCount()))
    case .collect: return GuestLinkResult.records(platform.collect())
    case .sessions: return GuestLinkResult.sessions(platform.sessions())
    }
    return []
  }

  /// Takes back every guest of the session's platform (its TDIs stopped and released, mappings torn
  /// down, pages scrubbed); once only. Nil before a hello.
  public func tearDown() -> [GuestTeardown]? {
    guard !tornDown, let platform else { return nil }
    tornDown = true
    var accounts: [GuestTeardown] = []
    for guest in [platform.guest.id] + (platform.neighbour.map { [$0.id] } ?? []) {
      do throws(VMMError) { accounts.append(try platform.vmm.destroyGuest(guest)) } catch {
        var account = GuestTeardown(guest: guest)
        account.leaks.append("\(error)")
        accounts.append(account)
      }
    }
    return accounts
  }
}
