import ArgumentParser
import CoveCommands
import CoveCrypto
import CoveScenario
import Foundation
import SPDM
import Testing

@Suite struct AttestCommandTests {
  @Test func builtInDeviceAttestsOverDOE() throws {
    let device = try BuiltInDevice()
    let report = DeviceAttestation.run(
      device: device, policy: device.requesterPolicy, entropy: SeededEntropy(seed: 1))
    #expect(report.failure == nil)
    #expect(
      report.steps.map(\.title) == [
        "DOE discovery",
        "VCA (GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS)",
        "certificate chain (GET_DIGESTS, GET_CERTIFICATE)",
        "CHALLENGE",
        "measurements (GET_MEASUREMENTS, signed)",
        "secure session (KEY_EXCHANGE, FINISH)",
        "application message (VENDOR_DEFINED in the session)",
        "KEY_UPDATE (UpdateAllKeys, then VerifyNewKey)",
        "END_SESSION",
        "DOE traffic",
      ])
    #expect(report.negotiated?.version == .v13)
    #expect(report.negotiated?.hash == .sha384)
    let text = ReportPrinter.render(report, quiet: false)
    #expect(text.contains("CN=Cove cove-dma Root CA,O=Cove"))
    #expect(text.contains("#5 firmware version: \"2.4.1\""))
    #expect(text.hasSuffix("ms\n"))
    #expect(ReportPrinter.render(report, quiet: true).hasPrefix("attestation succeeded: 10 steps in"))
  }

  @Test func builtInIdentityIsTheSameEveryTime() throws {
    let first = try BuiltInDevice()
    let second = try BuiltInDevice()
    #expect(try first.pki.root.publicKey().rawXY == second.pki.root.publicKey().rawXY)
    #expect(first.pki.deviceKey.scalar == second.pki.deviceKey.scalar)
    // Certificates are signed with RFC 6979 ECDSA, so the whole chain is byte-identical too.
    #expect(first.pki.chainRootToLeaf.map(\.der) == second.pki.chainRootToLeaf.map(\.der))
  }

  @Test func failureIsReportedWithItsReason() throws {
    let device = try BuiltInDevice()
    let stranger = try TestPKI.generate(entropy: SeededEntropy(seed: 5), notBefore: BuiltInDevice.notBefore)
    var policy = device.requesterPolicy
    policy.trustAnchors = [stranger.root]
    let report = DeviceAttestation.run(device: device, policy: policy, entropy: SeededEntropy(seed: 1))
    #expect(!report.succeeded)
    #expect(
      report.steps.filter { $0.title.hasSuffix("FAILED") }.map(\.title) == [
        "certificate chain (GET_DIGESTS, GET_CERTIFICATE) FAILED"
      ])
    let text = ReportPrinter.render(report, quiet: true)
    #expect(text.hasPrefix("attestation FAILED after"))
    #expect(text.contains("certificate chain rejected"))
  }

  @Test func policyOptionsSelectAlgorithms() throws {
    let device = try BuiltInDevice()
    let options = try AttestOptions.parse([
      "--spdm-version", "1.2", "--hash", "sha256", "--dhe", "p256", "--seed", "3",
    ])
    let report = DeviceAttestation.run(
      device: device, policy: try options.policyForTesting(device), entropy: SeededEntropy(seed: 3))
    #expect(report.succeeded)
    #expect(report.negotiated?.version == .v12)
    #expect(report.negotiated?.hash == .sha256)
    #expect(report.negotiated?.dheCurve == .p256)
    #expect(report.negotiated?.signatureCurve == .p384)
  }

  @Test(arguments: [
    (["--spdm-version", "2.0"], "--spdm-version must be 1.2 or 1.3, not '2.0'"),
    (["--hash", "md5"], "--hash: unknown value 'md5' (expected sha256, sha384)"),
    (["--asym", "p521"], "--asym: unknown value 'p521' (expected p256, p384)"),
    (["--chunk-size", "4"], "--chunk-size must be at least 16"),
  ])
  func badFlagsAreClearErrors(_ arguments: [String], _ message: String) throws {
    let device = try BuiltInDevice()
    let options = try AttestOptions.parse(arguments)
    #expect(throws: ValidationError.self) { try options.policyForTesting(device) }
    do {
      _ = try options.policyForTesting(device)
    } catch let error as ValidationError {
      #expect(error.message == message)
    }
  }

  /// `run` is the default subcommand and takes an image path, so an unknown word is read as an
  /// image that does not exist: exit status 2, as for any invalid command line.
  @Test func anUnknownWordIsAnImageThatDoesNotExist() throws {
    var command = try CoveCommand.parseAsRoot(["frobnicate"])
    #expect(command is RunCommand)
    #expect(throws: ExitCode(2)) { try command.run() }
  }

  @Test func anUnknownOptionIsAnError() {
    #expect(throws: (any Error).self) { try CoveCommand.parseAsRoot(["run", "--frobnicate"]) }
  }
}

@Suite struct PKIGenerateTests {
  @Test func generatedPKIIsAcceptedByOpenSSL() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "cove-pki-\(UUID().uuidString)"
    ).path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let command = try PKICommand.Generate.parse([directory, "--seed", "42"])
    try command.run()
    let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    #expect(
      files == [
        "chain.pem", "device.key", "device.pem", "intermediate.key", "intermediate.pem", "root.key",
        "root.pem",
      ])
    let keyMode =
      try FileManager.default.attributesOfItem(atPath: directory + "/device.key")[.posixPermissions] as? Int
    #expect(keyMode == 0o600)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "openssl", "verify", "-x509_strict", "-CAfile", directory + "/root.pem", "-untrusted",
      directory + "/intermediate.pem", directory + "/device.pem",
    ]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    #expect(
      String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == directory
        + "/device.pem: OK\n")
    // The key on disk is the device certificate's key.
    let key = try ECPrivateKey(pem: String(contentsOfFile: directory + "/device.key", encoding: .utf8))
    let certificate = try X509Certificate.certificates(
      fromPEM: String(contentsOfFile: directory + "/device.pem", encoding: .utf8))[0]
    #expect(key.publicKey.rawXY == (try certificate.publicKey().rawXY))
  }
}

@Suite struct TDISPFlowTests {
  @Test func mainJobTakesATDIThroughLockStartErrorAndStop() throws {
    let report = TDISPFlow.run(device: try BuiltInDevice(), entropy: SeededEntropy(seed: 3))
    #expect(report.failure == nil)
    #expect(
      report.steps.map(\.title) == [
        "TSM connect (SPDM session, IDE_KM, stream enable)", "bind 03:00.1 to guest 1",
        "LOCK_INTERFACE 03:00.1",
        "evidence for guest 1", "START_INTERFACE 03:00.1 (guest accepts)",
        "host clears Bus Master Enable on 03:00.1", "STOP_INTERFACE 03:00.1", "TSM disconnect",
      ])
    let details = report.steps.map { $0.details.first ?? "" }
    #expect(details[1] == "03:00.1 is guest 1's; another guest asking for it gets EBUSY")
    #expect(report.steps[0].details[2] == "stream 1: device SECURE(K0), root port SECURE(K0)")
    #expect(details[2] == "CONFIG_LOCKED; START nonce kept by the TSM")
    #expect(report.steps[2].details.last == "  range 0: 0xe0200000 × 16 pages")
    #expect(details[4] == "RUN; ready for trusted DMA: yes")
    #expect(
      report.steps[5].details == [
        "config space reports busMasterDisabled; TDI ERROR", "ready for trusted DMA: no",
      ])
    #expect(details[6] == "CONFIG_UNLOCKED; TDI secrets scrubbed, report forgotten")
    #expect(details[7] == "K_SET_STOP ×6, END_SESSION; stream 1 INSECURE")
    #expect(TDISPFlow.render(report, quiet: true).hasPrefix("TDISP flow succeeded: 8 steps in"))
  }
}
