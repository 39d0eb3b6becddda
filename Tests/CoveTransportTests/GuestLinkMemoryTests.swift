import CoveScenario
import Foundation
import GuestABI
import HostPlatform
import IOMMU
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import CoveTransport

/// The guest's memory across the link: the guest writes and reads its pages in place, in the memory
/// file the host's platform memory lives in, so both sides see the same bytes; a page the host's
/// memory controller has poisoned is left to the host, which answers exactly as in one process.
@Suite struct GuestLinkMemoryTests {
  /// The host's session, handed over from its event loop. The test touches it only while the guest
  /// is between calls (the session's loop is idle then).
  final class SessionBox: @unchecked Sendable {
    private let lock = NSLock()
    private var session: GuestLinkSession?
    func set(_ value: GuestLinkSession) { lock.withLock { session = value } }
    var platform: ScenarioPlatform? { lock.withLock { session?.platform } }
  }

  final class Link {
    let directory: URL
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let channel: any Channel
    let client: GuestLinkClient
    let platform: ScenarioPlatform

    init() throws {
      directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "cove-mem-\(UUID().uuidString.prefix(8))")
      try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
      let box = SessionBox()
      let host = GuestLinkHost(
        socketPath: directory.appendingPathComponent("s").path, group: group, log: { _ in }
      ) {
        session in box.set(session)
      }
      channel = try host.listen()
      client = try GuestLinkClient(
        socketPath: host.socketPath,
        hello: GuestLinkHello(seed: 1, imageSource: "default", imageText: BuiltInImages.defaultImage),
        group: group)
      platform = try #require(box.platform)
    }

    deinit {
      client.goodbye()
      channel.close(promise: nil)
      try? group.syncShutdownGracefully()
      try? FileManager.default.removeItem(at: directory)
    }
  }

  @Test func theGuestAndTheHostSeeTheSameBytes() throws {
    let link = try Link()
    let guest = link.platform.guest.id
    let pattern = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    // Written in place by the guest, read by the host's VMM.
    try link.client.write(gpa: 0x3_0000, bytes: pattern)
    #expect(try link.platform.vmm.guestRead(guest, gpa: 0x3_0000, count: pattern.count) == pattern)
    // Written by the host, read in place by the guest.
    let other = pattern.reversed().map { $0 ^ 0x5A }
    try link.platform.vmm.guestWrite(guest, gpa: 0x8_0800, bytes: other)
    #expect(try link.client.read(gpa: 0x8_0800, count: other.count) == other)
    // A copy in place is the host's copy too.
    try link.client.copy(from: 0x3_0000, to: 0x5_0001, count: pattern.count)
    #expect(try link.platform.vmm.guestRead(guest, gpa: 0x5_0001, count: pattern.count) == pattern)
    // The private page's ciphertext is what anyone but the owner sees: not the plaintext.
    let hpa = try #require(link.platform.guest.hostAddress(of: 0x3_0000))
    #expect(try link.platform.memory.read(hpa, count: 64, as: .untrusted) != Array(pattern[..<64]))
    // A range past the end is refused as the VMM refuses it.
    #expect(throws: HypercallError(.EFAULT, "GPA range outside guest memory")) {
      _ = try link.client.read(gpa: (16 << 20) - 8, count: 16)
    }
    #expect(throws: HypercallError(.EFAULT, "GPA range outside guest memory")) {
      try link.client.copy(from: 0, to: (16 << 20) - 4, count: 8)
    }
  }

  /// The host writes a private page behind the guest's back (what DRAM access by a hostile VMM
  /// does): the page is poisoned, and the guest's next read of it fails with the in-process error;
  /// a partial write fails too; a whole-page write heals it.
  @Test func aPoisonedPageIsTheHostsToAnswer() throws {
    let link = try Link()
    let port = link.platform.port
    let page: UInt64 = 0x7_0000
    try link.client.write(gpa: page, bytes: [UInt8](repeating: 0x11, count: 4096))
    let hpa = try #require(link.platform.guest.hostAddress(of: page))
    try link.platform.memory.write([0xEE, 0xEE], at: hpa.advanced(by: 100), as: .untrusted)
    var inProcess: HypercallError?
    do { _ = try port.read(gpa: page + 8, count: 8) } catch { inProcess = error }
    let expected = try #require(inProcess)
    #expect(expected.errno == .EIO)
    #expect(throws: expected) { _ = try link.client.read(gpa: page + 8, count: 8) }
    // A read that only touches the neighbouring page is still local and fine.
    #expect(try link.client.read(gpa: page + 4096, count: 8) == [UInt8](repeating: 0, count: 8))
    #expect(throws: expected) { try link.client.write(gpa: page, bytes: [1, 2, 3]) }
    #expect(throws: expected) { try link.client.copy(from: page, to: page + 8192, count: 16) }
    // Rewriting the whole page clears the poison (at the host), and the page reads back in place.
    let fresh = [UInt8](repeating: 0x42, count: 4096)
    try link.client.write(gpa: page, bytes: fresh)
    #expect(link.platform.memory.page(at: hpa)?.poisoned == false)
    #expect(try link.client.read(gpa: page, count: 4096) == fresh)
  }
}

/// A host that accepts the connection and then answers nothing: the guest gives up after its
/// timeout with a typed error instead of hanging.
@Suite struct GuestLinkTimeoutTests {
  @Test func aSilentHostTimesTheGuestOut() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "cove-silent-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("s").path
    let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    #expect(listener >= 0)
    defer { close(listener) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { bytes in
      for (i, byte) in path.utf8.enumerated() { bytes[i] = byte }
    }
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    #expect(bound == 0)
    #expect(listen(listener, 1) == 0)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let started = ContinuousClock.now
    #expect(throws: GuestLinkError(.disconnected, "the host did not answer within 0.3 seconds")) {
      _ = try GuestLinkClient(
        socketPath: path, hello: GuestLinkHello(seed: 1, imageSource: "default", imageText: "name: x"),
        group: group, timeout: .milliseconds(300))
    }
    #expect(ContinuousClock.now - started < .seconds(5))
  }
}

/// However the host learns that a guest is gone — end of file, or a write to a peer that is no more
/// (which one comes first is only timing) — it is logged as the guest going away and torn down.
@Suite struct GuestLinkGoneTests {
  final class Lines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
  }

  @Test func aSocketErrorIsTheGuestGoingAway() throws {
    let lines = Lines()
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let host = GuestLinkHost(socketPath: "unused", group: group, log: { lines.add($0) })
    let channel = EmbeddedChannel(handler: GuestLinkServerHandler(host: host))
    try channel.connect(to: SocketAddress(unixDomainSocketPath: "/unused")).wait()
    #expect(host.connectedGuests == 1)
    channel.pipeline.fireErrorCaught(IOError(errnoCode: EPIPE, reason: "write(descriptor:pointer:size:)"))
    _ = try? channel.finish()
    #expect(host.connectedGuests == 0)
    #expect(lines.all.count == 1)
    #expect(
      lines.all.first?.hasPrefix("connection 1 lost (the guest went away mid-flow; ") == true, "\(lines.all)")
  }
}
