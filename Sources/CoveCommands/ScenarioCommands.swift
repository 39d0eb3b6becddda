public import ArgumentParser
import CoveCrypto
import CoveScenario
import Foundation
import SPDM

/// `cove run [IMAGE]`: the main job (ARCHITECTURE.md): boot the platform a guest image describes, run
/// its steps, check their expectations, print the timeline, and write the records asked for.
/// Exit status: 0 every expectation held, 1 one did not, 2 the image or the command line is invalid.
public struct RunCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run a guest image (the built-in default when none is given) and print its timeline.",
    discussion: """
      Examples:
        cove run                                   the built-in default image
        cove run guest-images/viommu-nested.yaml --seed 42
        cove run --trace run.jsonl --quiet         JSON Lines trace, step results only
        cove run attestation-failures --report failures.html
        cove run --pcap run.pcap --keys run.keys     then: cove trace show run.pcap --keys run.keys
      Exit status: 0 all expectations held, 1 an expectation failed, 2 the image or the command line is invalid.
      """)

  @Argument(help: "A guest image (YAML); the built-in default when absent.")
  public var image: String?

  @Option(help: "Seed for every random choice (nonces, keys, ordering); the image's seed when absent.")
  public var seed: UInt64?

  @Option(help: "Write every record as JSON Lines to this file.")
  public var trace: String?

  @Option(help: "Write a self-contained HTML report (sequence diagram, TDI state timeline, step results).")
  public var report: String?

  @Option(help: "Write every DOE object as a pcap (link type 292, as DMTF spdm-dump reads it).")
  public var pcap: String?

  @Option(help: "Write each SPDM session's secrets, so the pcap's secured messages can be decrypted.")
  public var keys: String?

  @Flag(help: "Print step results only.")
  public var quiet = false

  @Flag(help: "Print DOE objects and message bytes too.")
  public var verbose = false

  @Flag(
    name: .customLong("no-colour"),
    help: "Never colour the timeline (it is coloured only on a terminal anyway).")
  public var noColour = false

  public init() {}

  public func run() throws {
    let loaded = try ImageSource.load(image)
    let timeline = Timeline(
      colour: !noColour && isatty(STDOUT_FILENO) != 0, detail: quiet ? .quiet : verbose ? .verbose : .normal)
    let recorder = TraceRecorder()
    recorder.onRecord = { record in
      if let line = timeline.line(for: record) { print(line) }
    }
    let runner: ScenarioRunner
    do { runner = try ScenarioRunner(image: loaded, seed: seed, recorder: recorder) } catch {
      FileHandle.standardError.write(Data("cove: \(loaded.name): \(error)\n".utf8))
      throw ExitCode(2)
    }
    let result = runner.run()
    print(timeline.summary(result))
    try Self.writeOutputs(result, trace: trace, pcap: pcap, keys: keys, report: report)
    if result.exitStatus != 0 { throw ExitCode(result.exitStatus) }
  }

  /// Writes what `--trace`, `--pcap`, `--keys` and `--report` ask for (`cove run` and `cove guest`).
  static func writeOutputs(_ result: RunResult, trace: String?, pcap: String?, keys: String?, report: String?)
    throws
  {
    if let trace {
      let text = result.records.map(\.jsonLine).joined(separator: "\n") + "\n"
      try write(text, to: trace)
    }
    if let pcap {
      do { try Data(PcapWriter.write(records: result.records)).write(to: URL(fileURLWithPath: pcap)) } catch {
        FileHandle.standardError.write(
          Data("cove: cannot write \(pcap): \(error.localizedDescription)\n".utf8))
        throw ExitCode(2)
      }
    }
    if let keys { try write(SessionKeysFile.write(result.sessions), to: keys) }
    if let report {
      try write(
        HTMLReport.render(
          title: "Cove run: \(result.image.name)", image: result.image.name, seed: result.seed,
          records: result.records,
          steps: result.steps),
        to: report)
    }
  }
}

/// `cove check IMAGE`: validate a guest image without running it.
public struct CheckCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "check", abstract: "Validate a guest image without running it.",
    discussion: """
      Example:
        cove check guest-images/default.yaml
      Errors name the file, line, column and key. Exit status 2 when the image is invalid.
      """)

  @Argument(help: "The guest image (YAML).")
  public var image: String

  public init() {}

  public func run() throws {
    let loaded = try ImageSource.load(image)
    print("\(image): ok — \(loaded.devices.count) device(s), \(loaded.steps.count) step(s)")
  }
}

/// `cove images`: the images built into the binary.
public struct ImagesCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "images", abstract: "List the shipped guest images, a line each.",
    discussion: """
      Example:
        cove images                   then: cove run <name>
      """)

  public init() {}

  public func run() throws {
    for (name, text) in BuiltInImages.all {
      let image = try? GuestImage(yaml: text, file: "\(name).yaml")
      print("\(name)\t\(image?.description.split(separator: ".").first.map(String.init) ?? "")")
    }
  }
}

/// Where an image comes from: a file, or the built-in default. An invalid image is reported on
/// standard error and exits with status 2.
enum ImageSource {
  static func load(_ path: String?) throws -> GuestImage {
    let (text, file) = try self.text(path)
    do { return try GuestImage(yaml: text, file: file) } catch {
      FileHandle.standardError.write(Data("cove: \(error)\n".utf8))
      throw ExitCode(2)
    }
  }

  /// The image's YAML text and the name its errors cite: a built-in image by name, a file, or the
  /// built-in default.
  static func text(_ path: String?) throws -> (text: String, file: String) {
    guard let path else { return (BuiltInImages.defaultImage, "default.yaml (built in)") }
    if let builtIn = BuiltInImages.all.first(where: { $0.name == path }) {
      return (builtIn.text, "\(path).yaml")
    }
    guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
      FileHandle.standardError.write(Data("cove: cannot read \(path)\n".utf8))
      throw ExitCode(2)
    }
    return (contents, path)
  }
}

func write(_ text: String, to path: String) throws {
  do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
    FileHandle.standardError.write(Data("cove: cannot write \(path): \(error.localizedDescription)\n".utf8))
    throw ExitCode(2)
  }
}

/// `cove tdisp`: the host TSM's TDISP story on the built-in device alone (connect, bind, lock,
/// report, evidence, start, a forced ERROR, stop, disconnect), without a guest.
public struct TDISPCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "tdisp", abstract: "The host TSM's TDISP flow on the built-in device, without a guest.",
    discussion: """
      Example:
        cove tdisp --seed 3
      """)

  @Option(help: "Seed for every random choice; random when absent.")
  public var seed: UInt64?

  @Flag(help: "Print only the result line.")
  public var quiet = false

  public init() {}

  public func run() throws {
    let entropy: any EntropySource = seed.map { SeededEntropy(seed: $0) } ?? SystemEntropy()
    let flow = TDISPFlow.run(device: try BuiltInDevice(), entropy: entropy)
    print(TDISPFlow.render(flow, quiet: quiet), terminator: "")
    if !flow.succeeded { throw ExitCode(1) }
  }
}

/// `cove bench [SECTION] [RUNS]`: the benchmark executable built beside `cove` (make bench).
public struct BenchCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Run cove-bench (built beside cove): every figure beside its same-run baseline.",
    discussion: """
      Examples:
        cove bench               every section
        cove bench guest 10      the guest DMA API section, 10 runs
      Sections: spdm, tdisp, iommu, dma, platform, guest, all.
      """)

  @Argument(help: "Section and run count, passed to cove-bench.")
  public var arguments: [String] = []

  public init() {}

  public func run() throws {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
      .deletingLastPathComponent().appendingPathComponent("cove-bench")
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
      FileHandle.standardError.write(
        Data(
          "cove: cove-bench is not built beside cove (run `make bench`, or `swift build -c release --product cove-bench`)\n"
            .utf8))
      throw ExitCode(2)
    }
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    try process.run()
    process.waitUntilExit()
    if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
  }
}

/// `cove trace`: reading what a run wrote.
public struct TraceCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "trace", abstract: "Read a run's records.", subcommands: [Show.self])

  public init() {}

  /// `cove trace show FILE [--keys KEYS]`: a pcap (decoded DOE, SPDM, TDISP, IDE_KM; secured messages
  /// decrypted with the keys file) or a JSON Lines trace, pretty-printed.
  public struct Show: ParsableCommand {
    public static let configuration = CommandConfiguration(
      commandName: "show",
      abstract: "Pretty-print a JSON Lines trace or a pcap (decrypting with a keys file).",
      discussion: """
        Examples:
          cove trace show run.jsonl
          cove trace show run.pcap --keys run.keys
        """)

    @Argument(help: "A --trace (JSON Lines) or --pcap file.")
    public var file: String

    @Option(help: "A --keys file: each session's secrets, to decrypt secured messages.")
    public var keys: String?

    public init() {}

    public func run() throws {
      guard let data = FileManager.default.contents(atPath: file) else {
        FileHandle.standardError.write(Data("cove: cannot read \(file)\n".utf8))
        throw ExitCode(2)
      }
      var sessions: [SPDMSessionSecrets] = []
      if let keys {
        guard let text = try? String(contentsOfFile: keys, encoding: .utf8) else {
          FileHandle.standardError.write(Data("cove: cannot read \(keys)\n".utf8))
          throw ExitCode(2)
        }
        do { sessions = try SessionKeysFile.parse(text) } catch {
          FileHandle.standardError.write(Data("cove: \(keys): \(error)\n".utf8))
          throw ExitCode(2)
        }
      }
      let bytes = [UInt8](data)
      let decoding: TraceDecoding
      if bytes.starts(with: [0xD4, 0xC3, 0xB2, 0xA1]) || bytes.starts(with: [0xA1, 0xB2, 0xC3, 0xD4]) {
        do { decoding = try TraceDecoder.decode(pcap: bytes, sessions: sessions) } catch {
          FileHandle.standardError.write(Data("cove: \(file): \(error)\n".utf8))
          throw ExitCode(2)
        }
      } else {
        do {
          decoding = try TraceDecoder.decode(
            jsonLines: String(decoding: bytes, as: UTF8.self), sessions: sessions)
        } catch {
          FileHandle.standardError.write(Data("cove: \(file): \(error)\n".utf8))
          throw ExitCode(2)
        }
      }
      for line in decoding.lines { print(line) }
    }
  }
}
