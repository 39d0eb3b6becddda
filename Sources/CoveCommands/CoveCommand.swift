public import ArgumentParser
public import CoveCrypto
public import CoveScenario
import Foundation
public import SPDM

/// `cove`: the command-line face of Cove. The executable target only calls `CoveCommand.main()`, so
/// every command is testable as a library.
public struct CoveCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "cove",
    abstract:
      "Cove: a confidential-device (TEE-IO) emulator: SPDM, TDISP, IDE and the IOMMU, without the hardware.",
    version: "cove 0.7.0",
    subcommands: [
      RunCommand.self, CheckCommand.self, ImagesCommand.self, AttestCommand.self, TDISPCommand.self,
      PKICommand.self, TraceCommand.self, BenchCommand.self, HostCommand.self, GuestCommand.self,
      ResponderCommand.self, TSMCommand.self,
    ],
    defaultSubcommand: RunCommand.self
  )

  public init() {}
}

/// Options shared by `cove run` and `cove attest`.
public struct AttestOptions: ParsableArguments {
  @Option(name: .customLong("spdm-version"), help: "Highest SPDM version the TSM offers: 1.2 or 1.3.")
  public var spdmVersion: String = "1.3"

  @Option(help: "Hash the TSM accepts: sha256, sha384, or both (sha256,sha384).")
  public var hash: String = "sha256,sha384"

  @Option(help: "Signature algorithms the TSM accepts: p256, p384, or both.")
  public var asym: String = "p256,p384"

  @Option(help: "DHE groups the TSM accepts: p256, p384, or both.")
  public var dhe: String = "p256,p384"

  @Option(name: .customLong("chunk-size"), help: "Bytes asked for per GET_CERTIFICATE.")
  public var chunkSize: UInt16 = 1024

  @Option(help: "Seed for every random choice (nonces, ephemeral keys, session IDs); random when absent.")
  public var seed: UInt64?

  @Flag(help: "Print only the result line.")
  public var quiet = false

  public init() {}

  func policy(for device: BuiltInDevice) throws -> SPDMRequesterPolicy {
    var policy = device.requesterPolicy
    switch spdmVersion {
    case "1.2": policy.versions = [.v12]
    case "1.3": policy.versions = [.v12, .v13]
    default: throw ValidationError("--spdm-version must be 1.2 or 1.3, not '\(spdmVersion)'")
    }
    policy.baseHashAlgorithms = try parseSet(hash, name: "--hash", ["sha256": .sha256, "sha384": .sha384])
    policy.baseAsymAlgorithms = try parseSet(asym, name: "--asym", ["p256": .ecdsaP256, "p384": .ecdsaP384])
    policy.dheGroups = try parseSet(dhe, name: "--dhe", ["p256": .secp256r1, "p384": .secp384r1])
    guard chunkSize >= 16 else { throw ValidationError("--chunk-size must be at least 16") }
    policy.certificateChunkSize = chunkSize
    return policy
  }

  private func parseSet<Option: OptionSet>(
    _ text: String, name: String, _ table: [String: Option]
  ) throws -> Option where Option.Element == Option {
    var result = Option()
    for item in text.split(separator: ",") {
      guard let value = table[String(item)] else {
        throw ValidationError(
          "\(name): unknown value '\(item)' (expected \(table.keys.sorted().joined(separator: ", ")))")
      }
      result.formUnion(value)
    }
    guard !result.isEmpty else { throw ValidationError("\(name) must name at least one algorithm") }
    return result
  }

  /// The policy these options describe for `device`; public for tests of flag handling.
  public func policyForTesting(_ device: BuiltInDevice) throws -> SPDMRequesterPolicy {
    try policy(for: device)
  }

  func entropy() -> any EntropySource {
    if let seed { return SeededEntropy(seed: seed) }
    return SystemEntropy()
  }
}

/// `cove attest`: the host TSM attests the built-in emulated device over SPDM in PCIe DOE.
public struct AttestCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "attest",
    abstract: "Attest the built-in emulated device over SPDM (DOE mailbox) and exercise a secure session.",
    discussion: """
      Examples:
        cove attest                                  SPDM 1.3, what the device prefers
        cove attest --spdm-version 1.2 --asym p256 --seed 7
        cove attest --chunk-size 256 --quiet
      """
  )

  @OptionGroup public var options: AttestOptions

  public init() {}

  public func run() throws {
    let device = try BuiltInDevice()
    let report = try DeviceAttestation.run(
      device: device, policy: options.policy(for: device), entropy: options.entropy())
    print(ReportPrinter.render(report, quiet: options.quiet), terminator: "")
    if !report.succeeded { throw ExitCode(1) }
  }
}

/// `cove pki generate DIR`: a test PKI (root CA → intermediate → device leaf, P-384) as PEM files.
public struct PKICommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "pki", abstract: "Test PKI tools.", subcommands: [Generate.self])

  public init() {}

  public struct Generate: ParsableCommand {
    public static let configuration = CommandConfiguration(
      abstract: "Write a P-384 root CA, intermediate CA and device certificate with their keys to DIR.",
      discussion: """
        Example:
          cove pki generate pki-out --seed 42 --common-name "Acme NIC"
        """)

    @Argument(help: "Directory to write into (created if missing).")
    public var directory: String

    @Option(help: "Seed for reproducible keys; random when absent.")
    public var seed: UInt64?

    @Option(name: .customLong("common-name"), help: "Prefix of every certificate's common name.")
    public var commonName: String = "Cove Test"

    @Option(help: "Validity in days from now.")
    public var days: Int = 3650

    public init() {}

    public func run() throws {
      let entropy: any EntropySource = seed.map { SeededEntropy(seed: $0) } ?? SystemEntropy()
      let now = Int64(Date().timeIntervalSince1970)
      let pki = try TestPKI.generate(
        entropy: entropy, commonNamePrefix: commonName, notBefore: now - 60, validityDays: days)
      let files = try PKIWriter.write(pki, to: directory)
      for file in files { print(file) }
    }
  }
}

/// Writes a ``TestPKI`` as PEM files; keys are created owner-only (0600).
public enum PKIWriter {
  public static func write(_ pki: TestPKI, to directory: String) throws -> [String] {
    let manager = FileManager.default
    try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let files: [(String, String, Bool)] = [
      ("root.pem", pki.root.pem, false),
      ("root.key", pki.rootKey.pemRepresentation(), true),
      ("intermediate.pem", pki.intermediate.pem, false),
      ("intermediate.key", pki.intermediateKey.pemRepresentation(), true),
      ("device.pem", pki.device.pem, false),
      ("device.key", pki.deviceKey.pemRepresentation(), true),
      ("chain.pem", pki.chainRootToLeaf.map(\.pem).joined(), false),
    ]
    var written: [String] = []
    for (name, contents, secret) in files {
      let path = (directory as NSString).appendingPathComponent(name)
      guard
        manager.createFile(
          atPath: path, contents: Data(contents.utf8),
          attributes: secret ? [.posixPermissions: 0o600] : [.posixPermissions: 0o644])
      else { throw ValidationError("cannot write \(path)") }
      written.append(path)
    }
    return written
  }
}

/// Renders an ``AttestationReport`` as the timeline `make run` prints.
public enum ReportPrinter {
  public static func render(_ report: AttestationReport, quiet: Bool) -> String {
    var out = ""
    if !quiet {
      out +=
        "cove: host TSM attests emulated device cove-dma (DSM at 03:00.0) over SPDM in a PCIe DOE mailbox\n"
      for step in report.steps {
        out += "[\(milliseconds(step.elapsed))] \(step.title)\n"
        for line in step.details { out += "             \(line)\n" }
      }
    }
    if let failure = report.failure {
      out += "attestation FAILED after \(milliseconds(report.total)): \(failure)\n"
    } else {
      out += "attestation succeeded: \(report.steps.count) steps in \(milliseconds(report.total))\n"
    }
    return out
  }

  public static func milliseconds(_ duration: Duration) -> String {
    let ms = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    return String(format: "%8.2f ms", ms)
  }
}

extension CoveCommand {
  /// The entry point `cove` (and a custom runner) calls: like `main()`, except that an invalid command
  /// line exits with status 2, as an invalid image does (issue 7), instead of ArgumentParser's 64.
  public static func run(arguments: [String]? = nil) -> Never {
    do {
      var command = try parseAsRoot(arguments)
      try command.run()
      Foundation.exit(0)
    } catch {
      let code = exitCode(for: error)
      if code == .validationFailure {
        FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
        Foundation.exit(2)
      }
      exit(withError: error)
    }
  }
}
