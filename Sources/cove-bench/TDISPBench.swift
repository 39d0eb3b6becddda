import CoveCommands
import CoveCrypto
// Section 2: what TDISP and IDE_KM add to an SPDM connection (issue: TDISP, IDE_KM and the host TSM).
//
// Both figures run against the same emulated two-function TEE-IO device (the built-in identity,
// P-384 / SHA-384), through the DSM's DOE mailbox in configuration space, DW by DW:
// - baseline: the SPDM connection alone, as the TSM's connect starts it: DOE discovery, VCA,
//   certificate chain, signed measurements, KEY_EXCHANGE, FINISH;
// - full: the host TSM's connect (the same, then TDISP version and capabilities, IDE_KM QUERY,
//   6 KEY_PROG + 6 K_SET_GO and the root port's keys, both TDIs' states) + bind + LOCK + the
//   interface report + START of one TDI.
// Teardown (END_SESSION / disconnect) happens outside the timed part. Median of N interleaved runs.
import CoveScenario
import Foundation
import HostPlatform
import PCIe
import SPDM
import TDISP

enum TDISPBench {
  static func run(runs: Int) throws {
    let identity = try BuiltInDevice()
    var policy = identity.requesterPolicy
    policy.validationTime = BuiltInDevice.notBefore + 86_400
    let built = try TEEIODeviceTemplate().build(
      identity: identity.responderConfiguration, entropy: SystemEntropy())
    let device = built.device
    let function = built.tsm.interfaces[1]
    let guest = GuestID(1)

    func spdmAlone() throws -> () throws -> Void {
      var requester = SPDMRequester(policy: policy, entropy: SystemEntropy())
      requester.allowsTransportPadding = true
      var driver = SPDMRequesterDriver(
        requester: requester, transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device)))
      driver.transport.abort()
      _ = try driver.transport.discoverProtocols()
      try driver.initializeConnection()
      try driver.retrieveCertificateChain()
      _ = try driver.measurements(signed: true)
      let sessionID = try driver.startSession(summaryType: .all)
      return { try driver.endSession(sessionID: sessionID) }
    }

    func fullFlow() throws -> () throws -> Void {
      let tsm = HostTSM(
        configuration: built.tsm, transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device)),
        rootPort: built.rootPort, policy: policy, entropy: SystemEntropy())
      return try connectLockStart(tsm, function, for: guest)
    }

    let (baselineMedian, fullMedian) = try interleavedMedians(runs: runs, spdmAlone, fullFlow)
    print(
      "cove-bench: TDISP + IDE_KM on top of SPDM, host TSM to a two-function device over DOE in config space")
    print("  median of \(runs) interleaved runs each")
    print(
      String(
        format:
          "  full        %9.3f ms  TSM connect (SPDM + IDE_KM keys on both ends) + bind + LOCK + report + START",
        fullMedian))
    print(
      String(
        format:
          "  baseline    %9.3f ms  SPDM connection alone: DOE discovery, VCA, chain, signed measurements, session",
        baselineMedian))
    print(
      String(
        format: "  ratio       %9.3f     full / baseline; TDISP + IDE_KM overhead %.3f ms",
        fullMedian / baselineMedian,
        fullMedian - baselineMedian))
  }
}
