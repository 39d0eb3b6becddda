// Section: what the guest link (issue 8) costs: a guest's call to the host over the Unix socket
// against the same call in one process, and how many calls per second the host answers with 1, 4
// and 16 guests connected at once.
//
// The host is a GuestLinkHost in this process on 2 event-loop threads (the socket, the framing, the
// thread hops and the host's work are all there; only process scheduling differs from `cove host`).
// Each guest connects with the built-in default image, as `cove guest` would, and gets its own
// platform. Two calls are timed:
// - a hypercall: a 4-byte config-space read of the guest's function (the transport's own cost);
// - a guest TSM request: fresh evidence of the locked TDI (the TSM's GET_MEASUREMENTS, signed by the
//   device, in the session).
import CoveScenario
import CoveTransport
import Foundation
import GuestABI
import NIOCore
import NIOPosix
import PCIe
import Synchronization

enum GuestLinkBench {
  static let function = RequesterID(rawValue: 0x0301)

  static func run(runs: Int) throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "cove-bench-link-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let socket = directory.appendingPathComponent("host.sock").path
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    defer {
      try? clientGroup.syncShutdownGracefully()
      try? serverGroup.syncShutdownGracefully()
    }
    let host = GuestLinkHost(socketPath: socket, group: serverGroup) { _ in }
    let channel = try host.listen()
    defer { channel.close(promise: nil) }
    let hello = GuestLinkHello(seed: 1, imageSource: "default", imageText: BuiltInImages.defaultImage)

    // One process: the platform and the guest's port, no socket.
    let image = try GuestImage(yaml: BuiltInImages.defaultImage, file: "default")
    let platform = try ScenarioPlatform(image: image, seed: 1)
    try platform.connectAtBoot()
    let port = platform.port
    let client = try GuestLinkClient(socketPath: socket, hello: hello, group: clientGroup)
    defer { client.goodbye() }
    _ = try port.tsm(.lock(function))
    _ = try client.tsm(.lock(function))

    let clock = ContinuousClock()
    let batch = 200
    var inProcess: [Duration] = []
    var overSocket: [Duration] = []
    for _ in 0..<(runs + 3) {
      inProcess.append(
        clock.measure { for _ in 0..<batch { _ = try? port.configRead(function, offset: 0, size: 4) } })
      overSocket.append(
        clock.measure { for _ in 0..<batch { _ = try? client.configRead(function, offset: 0, size: 4) } })
    }
    let local = medianMilliseconds(Array(inProcess.dropFirst(3))) * 1e3 / Double(batch)
    let remote = medianMilliseconds(Array(overSocket.dropFirst(3))) * 1e3 / Double(batch)
    var evidenceLocal: [Duration] = []
    var evidenceRemote: [Duration] = []
    let nonce = [UInt8](repeating: 0x5A, count: 32)
    for _ in 0..<(runs + 1) {
      evidenceLocal.append(clock.measure { _ = try? port.tsm(.evidence(function, nonce: nonce)) })
      evidenceRemote.append(clock.measure { _ = try? client.tsm(.evidence(function, nonce: nonce)) })
    }
    let evidenceHere = medianMilliseconds(Array(evidenceLocal.dropFirst()))
    let evidenceThere = medianMilliseconds(Array(evidenceRemote.dropFirst()))

    print("cove-bench: the guest link (Unix socket, CVGL frames) against the same calls in one process")
    print("  round trip of one call, median of \(runs) runs (a hypercall: \(batch) calls per run)")
    print(
      String(
        format: "  config read   socket %9.2f µs  in process %9.2f µs  ratio %7.1f  (%.2f µs per crossing)",
        remote, local, remote / local, remote - local))
    print(
      String(
        format:
          "  TSM evidence  socket %9.3f ms  in process %9.3f ms  ratio %7.3f  (device-signed measurements)",
        evidenceThere, evidenceHere, evidenceThere / evidenceHere))

    // Throughput: N guests, each on its own thread and connection, calling for a fixed time.
    let seconds = 0.5
    let baseline = rate(seconds: seconds) { _ = try? port.configRead(function, offset: 0, size: 4) }
    print(
      String(
        format: "  config reads per second (%.1f s each; in process, one guest: %.0f/s)", seconds, baseline))
    for guests in [1, 4, 16] {
      let total = try throughput(
        guests: guests, seconds: seconds, socket: socket, hello: hello, group: clientGroup)
      print(
        String(
          format: "    %2d guest(s)  %9.0f calls/s  %8.0f per guest  ratio to one in-process guest %6.3f",
          guests, total, total / Double(guests), total / baseline))
    }
  }

  static func rate(seconds: Double, _ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int(seconds * 1000))
    var calls = 0
    while ContinuousClock.now < end {
      for _ in 0..<50 { body() }
      calls += 50
    }
    let elapsed = ContinuousClock.now - start
    return Double(calls)
      / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
  }

  /// Calls per second summed over `guests` guests, each connected, then released together.
  static func throughput(
    guests: Int, seconds: Double, socket: String, hello: GuestLinkHello, group: any EventLoopGroup
  ) throws -> Double {
    let ready = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let done = DispatchSemaphore(value: 0)
    let rates = Mutex<[Double]>([])
    let failures = Mutex<[String]>([])
    for _ in 0..<guests {
      let thread = Thread {
        // The client is gone (its socket closed) before the thread says it is done.
        defer { done.signal() }
        let client: GuestLinkClient
        do { client = try GuestLinkClient(socketPath: socket, hello: hello, group: group) } catch {
          failures.withLock { $0.append("\(error)") }
          ready.signal()
          return
        }
        defer { client.goodbye() }
        ready.signal()
        go.wait()
        let rate = rate(seconds: seconds) { _ = try? client.configRead(function, offset: 0, size: 4) }
        rates.withLock { $0.append(rate) }
      }
      thread.start()
    }
    for _ in 0..<guests { ready.wait() }
    for _ in 0..<guests { go.signal() }
    for _ in 0..<guests { done.wait() }
    if let failure = failures.withLock({ $0.first }) { throw BenchFailure(failure) }
    return rates.withLock { $0.reduce(0, +) }
  }

  struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
  }
}
