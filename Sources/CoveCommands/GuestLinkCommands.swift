public import ArgumentParser
import CoveScenario
import CoveTransport
import Foundation
import NIOCore
import NIOPosix

/// `cove host --listen PATH`: the platform as a daemon (issue 8). Each guest that connects gets the
/// platform its image describes; a guest that goes away, however, has everything of it taken back
/// while the others carry on. Runs until killed.
public struct HostCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "host",
    abstract: "Run the host platform as a daemon serving guest processes on a Unix socket.",
    discussion: """
      Example:
        cove host --listen /tmp/cove.sock &
        cove guest default --connect /tmp/cove.sock
      Each connection's teardown (TDIs stopped, mappings removed, pages scrubbed) is logged.
      """)

  @Option(help: "The Unix socket to listen on (a stale socket file there is replaced).")
  public var listen: String

  @Option(help: "Event-loop threads: guests on different threads run in parallel.")
  public var threads: Int = System.coreCount

  public init() {}

  public func validate() throws {
    guard threads >= 1, threads <= 256 else { throw ValidationError("--threads must be 1 to 256") }
    guard listen.utf8.count < 108 else {
      throw ValidationError("--listen: a Unix socket path is at most 107 bytes")
    }
  }

  public func run() throws {
    // A daemon stops on SIGTERM or SIGINT even when it was started with them blocked (a child
    // inherits its parent's signal mask, and a thread pool's threads block every signal).
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGTERM)
    sigaddset(&signals, SIGINT)
    sigprocmask(SIG_UNBLOCK, &signals, nil)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    // Unbuffered, line by line: whoever watches the log (a test, a terminal) sees each line at once.
    let host = GuestLinkHost(socketPath: listen, group: group) { line in
      FileHandle.standardOutput.write(Data("cove host: \(line)\n".utf8))
    }
    let channel: any Channel
    do { channel = try host.listen() } catch {
      FileHandle.standardError.write(Data("cove host: cannot listen on \(listen): \(error)\n".utf8))
      throw ExitCode(1)
    }
    FileHandle.standardOutput.write(Data("cove host: listening on \(listen)\n".utf8))
    try channel.closeFuture.wait()
  }
}

/// `cove guest IMAGE --connect PATH`: a guest kernel and its image's steps in this process, the
/// platform in `cove host`'s. Prints the same timeline `cove run` prints for the image in one process
/// (same seed, same records). Exit status: 0 every expectation held, 1 one did not, 2 the image or
/// command line is invalid, 3 the host could not be reached or went away.
public struct GuestCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "guest",
    abstract: "Run a guest image's kernel and steps in this process against a `cove host`.",
    discussion: """
      Example:
        cove guest guest-images/two-guests-isolation.yaml --connect /tmp/cove.sock --trace guest.jsonl
      Exit status: 0 all expectations held, 1 one failed, 2 invalid image or command line, 3 host unreachable or gone.
      """)

  @Argument(help: "A guest image (YAML file or built-in name); the built-in default when absent.")
  public var image: String?

  @Option(help: "The host's Unix socket.")
  public var connect: String

  @Option(help: "Seed for every random choice; the image's seed when absent.")
  public var seed: UInt64?

  @Option(help: "Write every record as JSON Lines to this file.")
  public var trace: String?

  @Option(help: "Write a self-contained HTML report.")
  public var report: String?

  @Option(help: "Write every DOE object as a pcap (link type 292).")
  public var pcap: String?

  @Option(help: "Write each SPDM session's secrets (for the pcap).")
  public var keys: String?

  @Flag(help: "Print step results only.")
  public var quiet = false

  @Flag(help: "Print DOE objects and message bytes too.")
  public var verbose = false

  @Flag(name: .customLong("no-colour"), help: "Never colour the timeline.")
  public var noColour = false

  @Option(help: "Seconds any one call may wait for the host's answer before the host counts as gone.")
  public var timeout: Double = 120

  public init() {}

  public func validate() throws {
    guard timeout > 0, timeout <= 86_400 else {
      throw ValidationError("--timeout must be 0 to 86400 seconds")
    }
  }

  public func run() throws {
    let (text, file) = try ImageSource.text(image)
    let loaded = try ImageSource.load(image)
    let seed = seed ?? loaded.seed
    let timeline = Timeline(
      colour: !noColour && isatty(STDOUT_FILENO) != 0, detail: quiet ? .quiet : verbose ? .verbose : .normal)
    let recorder = TraceRecorder()
    recorder.onRecord = { record in
      if let line = timeline.line(for: record) { print(line) }
    }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let client: GuestLinkClient
    do {
      client = try GuestLinkClient(
        socketPath: connect, hello: GuestLinkHello(seed: seed, imageSource: file, imageText: text),
        group: group
      ) { records in for record in records { recorder.add(record) } }
    } catch {
      FileHandle.standardError.write(Data("cove guest: \(loaded.name): \(error)\n".utf8))
      throw ExitCode(3)
    }
    client.onRecords = { records in for record in records { recorder.add(record) } }
    let runner: ScenarioRunner
    do {
      runner = try ScenarioRunner(
        image: loaded, seed: seed, interface: client, control: client, recorder: recorder)
    } catch {
      FileHandle.standardError.write(
        Data("cove guest: \(loaded.name): \(client.lost.map { "\($0)" } ?? "\(error)")\n".utf8))
      throw ExitCode(client.lost == nil ? 2 : 3)
    }
    let result = runner.run()
    if let lost = client.lost {
      FileHandle.standardError.write(
        Data("cove guest: \(loaded.name): the host went away: \(lost.message)\n".utf8))
      throw ExitCode(3)
    }
    client.goodbye()
    print(timeline.summary(result))
    try RunCommand.writeOutputs(result, trace: trace, pcap: pcap, keys: keys, report: report)
    if result.exitStatus != 0 { throw ExitCode(result.exitStatus) }
  }
}
