import CoveScenario
import Foundation
import Testing

/// `cove host` and `cove guest` as real processes on a Unix socket (issue 8): the same timelines as
/// one process, several guests at once, a guest killed mid-DMA, a host that goes away.
@Suite(.serialized) struct GuestLinkProcessTests {
  /// The `cove` executable `swift build` put beside the tests (COVE_BINARY overrides).
  static let cove: String = {
    if let path = ProcessInfo.processInfo.environment["COVE_BINARY"] { return path }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/cove").path
  }()
  static let images = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("guest-images")

  /// What a process printed so far (its pipe is read on another thread).
  final class Transcript: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""
    func append(_ data: Data) { lock.withLock { text += String(decoding: data, as: UTF8.self) } }
    var value: String { lock.withLock { text } }

    /// Reads `pipe` into the transcript as it comes.
    func follow(_ pipe: Pipe) {
      pipe.fileHandleForReading.readabilityHandler = { [self] handle in
        let data = handle.availableData
        if !data.isEmpty { append(data) }
      }
    }
  }

  /// A running `cove host`, its log read line by line.
  final class Host {
    let process = Process()
    let socket: String
    let directory: URL
    private let output = Pipe()
    private let transcript = Transcript()

    init() throws {
      directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "cove-link-\(UUID().uuidString.prefix(8))")
      try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
      socket = directory.appendingPathComponent("host.sock").path
      process.executableURL = URL(fileURLWithPath: GuestLinkProcessTests.cove)
      process.arguments = ["host", "--listen", socket, "--threads", "2"]
      process.standardOutput = output
      process.standardError = output
      transcript.follow(output)
      try process.run()
      try wait(for: "listening on")
    }

    var log: String { transcript.value }

    func wait(for needle: String, count: Int = 1, seconds: Double = 180) throws {
      let deadline = Date().addingTimeInterval(seconds)
      while log.components(separatedBy: needle).count - 1 < count {
        guard Date() < deadline, process.isRunning else {
          throw HostFailure(message: "no '\(needle)' ×\(count) in the host's log:\n\(log)")
        }
        Thread.sleep(forTimeInterval: 0.02)
      }
    }

    func stop() {
      if process.isRunning {
        process.terminate()
        process.waitUntilExit()
      }
      output.fileHandleForReading.readabilityHandler = nil
      try? FileManager.default.removeItem(at: directory)
    }
  }

  struct HostFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
  }

  /// A `cove guest` process.
  final class Guest {
    let process = Process()
    let output = Pipe()
    private let transcript = Transcript()

    init(_ arguments: [String]) throws {
      process.executableURL = URL(fileURLWithPath: GuestLinkProcessTests.cove)
      process.arguments = ["guest"] + arguments
      process.standardOutput = output
      process.standardError = output
      transcript.follow(output)
      try process.run()
    }

    var log: String { transcript.value }

    func finish() -> Int32 {
      process.waitUntilExit()
      // What is still in the pipe.
      let rest = output.fileHandleForReading.readDataToEndOfFile()
      output.fileHandleForReading.readabilityHandler = nil
      transcript.append(rest)
      return process.terminationStatus
    }

    func wait(for needle: String, seconds: Double = 180) throws {
      let deadline = Date().addingTimeInterval(seconds)
      while !log.contains(needle) {
        guard Date() < deadline, process.isRunning else {
          throw HostFailure(message: "no '\(needle)' in the guest's output:\n\(log)")
        }
        Thread.sleep(forTimeInterval: 0.01)
      }
    }
  }

  static let bind = "bind: { device: \"03:00.1\", driver: cove-dma }"

  /// An image with one cove-dma device assigned as 03:00.1, the steps `first`, then `count` DMA steps
  /// of `dma` bytes; written to `directory`, its path returned.
  static func loopImage(
    _ name: String, seed: Int, memory: String, in directory: URL, first: [String], dma: String, count: Int
  ) throws -> String {
    var text = """
      name: \(name)
      seed: \(seed)
      guest: { memory: \(memory), boundary: half, swiotlb: 1MiB, autoprobe: false }
      devices:
        - model: cove-dma
          bus: 3
          functions: 2
          assign: ["03:00.1"]
      policy: { trust-anchors: [device], measurements: device }
      drivers: [cove-dma]
      steps:

      """
    for step in first { text += "  - \(step)\n" }
    for _ in 0..<count { text += "  - dma: { device: \"03:00.1\", size: \(dma) }\n" }
    let path = directory.appendingPathComponent("\(name).yaml")
    try text.write(to: path, atomically: true, encoding: .utf8)
    return path.path
  }

  /// The records of an image run in this process, as `--trace` writes them.
  static func oneProcessTrace(_ name: String) throws -> String {
    let text = try String(contentsOf: images.appendingPathComponent("\(name).yaml"), encoding: .utf8)
    let image = try GuestImage(yaml: text, file: "\(name).yaml")
    let result = try ScenarioRunner(image: image).run()
    #expect(result.exitStatus == 0)
    return result.records.map(\.jsonLine).joined(separator: "\n") + "\n"
  }

  /// default.yaml and two-guests-isolation.yaml, run as guest processes at the same time against one
  /// host, write exactly the records a one-process run writes; the host then holds nothing of them.
  @Test func twoProcessRunsMatchOneProcessTimelines() throws {
    #expect(FileManager.default.isExecutableFile(atPath: Self.cove), "build cove first: \(Self.cove)")
    let host = try Host()
    defer { host.stop() }
    let names = ["default", "two-guests-isolation"]
    let guests = try names.map { name in
      try Guest([
        Self.images.appendingPathComponent("\(name).yaml").path, "--connect", host.socket, "--quiet",
        "--trace", host.directory.appendingPathComponent("\(name).jsonl").path,
      ])
    }
    for (name, guest) in zip(names, guests) {
      #expect(guest.finish() == 0, "\(name): \(guest.log)")
      let twoProcess = try String(
        contentsOf: host.directory.appendingPathComponent("\(name).jsonl"), encoding: .utf8)
      let oneProcess = try Self.oneProcessTrace(name)
      #expect(twoProcess == oneProcess, "\(name): the two-process trace differs")
      #expect(twoProcess.split(separator: "\n").count > 100)
    }
    try host.wait(for: " finished: ", count: 2)
    #expect(host.log.components(separatedBy: "nothing left").count - 1 == 3, "\(host.log)")
    #expect(!host.log.contains("LEFT:"))
  }

  /// A guest killed (SIGKILL) in the middle of its DMA loop, with a TDI in RUN and mappings live:
  /// the host stops and releases the TDI, removes the mappings, scrubs the pages, and goes on serving
  /// another guest, which completes its whole image.
  @Test func aGuestKilledMidDMALeavesTheHostServingAnother() throws {
    let host = try Host()
    defer { host.stop() }
    func image(_ name: String, dmaSteps: Int) throws -> String {
      try Self.loopImage(
        name, seed: 3, memory: "64MiB", in: host.directory,
        first: ["lock: \"03:00.1\"", "accept: \"03:00.1\"", Self.bind],
        dma: "1MiB", count: dmaSteps)
    }
    let victim = try Guest([try image("dma-loop", dmaSteps: 400), "--connect", host.socket])
    try host.wait(for: "dma-loop (seed 3) as guest 1")
    // Another guest runs beside it, through the kill.
    let neighbour = try Guest([try image("dma-short", dmaSteps: 12), "--connect", host.socket, "--quiet"])
    try host.wait(for: "dma-short (seed 3) as guest 1")
    // Killed once DMA is under way: the third DMA step has begun.
    try victim.wait(for: "step 6: DMA")
    kill(victim.process.processIdentifier, SIGKILL)
    #expect(victim.finish() == SIGKILL)
    try host.wait(for: "lost (the guest went away mid-flow")
    let line = try #require(
      host.log.split(separator: "\n").first { $0.contains("lost (the guest went away") })
    #expect(line.contains("dma-loop (seed 3)"), "\(line)")
    #expect(line.contains("1 TDI(s) stopped, 1 released, 1 function(s) unassigned"), "\(line)")
    #expect(line.contains("16384 page(s) scrubbed; nothing left"), "\(line)")
    #expect(!line.contains(" 0 IOMMU mapping(s) removed"), "\(line)")
    #expect(neighbour.finish() == 0, "\(neighbour.log)")
    #expect(neighbour.log.contains("dma-short: all 15 steps passed"), "\(neighbour.log)")

    // The host serves the next guest as if nothing had happened.
    let next = try Guest(["default", "--connect", host.socket, "--quiet"])
    #expect(next.finish() == 0, "\(next.log)")
    #expect(next.log.contains("default: all 17 steps passed (seed 1, 232 records)"))
  }

  /// The host killed under a running guest: the guest says so and exits with status 3.
  @Test func aHostThatGoesAwayEndsTheGuestWithAClearError() throws {
    let host = try Host()
    let path = try Self.loopImage(
      "long", seed: 4, memory: "16MiB", in: host.directory, first: [Self.bind], dma: "64KiB", count: 2000)
    let guest = try Guest([path, "--connect", host.socket])
    try guest.wait(for: "step 4: DMA")
    kill(host.process.processIdentifier, SIGKILL)
    host.process.waitUntilExit()
    #expect(guest.finish() == 3)
    #expect(guest.log.contains("cove guest: long: the host went away: "), "\(guest.log)")
    host.stop()
    // Nothing listens any more: a new guest cannot connect, and says so (status 3 too).
    let orphan = try Guest(["default", "--connect", host.socket])
    #expect(orphan.finish() == 3)
    #expect(orphan.log.contains("cannot connect to the host at \(host.socket)"), "\(orphan.log)")
  }

  /// Bytes through a raw Unix socket: what the host answers, until it closes.
  static func raw(_ socketPath: String, send bytes: [UInt8]) throws -> [UInt8] {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    #expect(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { path in
      for (i, byte) in socketPath.utf8.enumerated() { path[i] = byte }
    }
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard connected == 0 else { throw HostFailure(message: "connect: errno \(errno)") }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n <= 0 { break }
      answer += buffer[..<n]
    }
    return answer
  }

  /// An oversized frame, garbage, and a call before the hello each get a protocol error and that
  /// connection closed; a guest served meanwhile does not notice.
  @Test func badFramesCloseOnlyTheirConnection() throws {
    let host = try Host()
    defer { host.stop() }
    let guest = try Guest(["default", "--connect", host.socket, "--quiet"])
    let oversized: [UInt8] = [0x43, 0x56, 0x47, 0x4C, 1, 0, 0x10, 0, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
    for (bytes, code, text) in [
      (oversized, UInt8(3), "a 4294967295-byte payload; the limit is 16777216"),
      (Array("GET / HTTP/1.1\r\n\r\n".utf8), 1, "frame magic 0x20544547, not CVGL"),
      (
        [0x43, 0x56, 0x47, 0x4C, 1, 0, 0x10, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x21, 0], 6, "a call before the hello"
      ),
    ] {
      let answer = try Self.raw(host.socket, send: bytes)
      // One protocol-error frame (kind 0x00FF, id 0), then end of stream.
      #expect(Array(answer.prefix(12)) == [0x43, 0x56, 0x47, 0x4C, 1, 0, 0xFF, 0, 0, 0, 0, 0], "\(text)")
      #expect(answer.count > 18 && answer[16] == code && answer[17] == 0)
      #expect(String(decoding: answer.dropFirst(22), as: UTF8.self) == text)
    }
    #expect(guest.finish() == 0, "\(guest.log)")
    #expect(guest.log.contains("default: all 17 steps passed"))
    try host.wait(for: "closed on a bad frame", count: 2)
  }
}
