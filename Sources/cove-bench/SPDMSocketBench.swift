import CoveCrypto
// Section: what the SPDM socket (issue 8) costs over the in-memory path.
//
// Both figures drive the same kind of device (a two-function cove-dma with the built-in identity,
// P-384 / SHA-384) with the host TSM doing the same work: connect (DOE discovery, VCA, certificate
// chain, signed measurements, KEY_EXCHANGE, FINISH, TDISP version and capabilities, IDE_KM QUERY,
// 6 KEY_PROG + 6 K_SET_GO and the root port's keys, both TDIs' states) + bind + LOCK + the interface
// report + START of one TDI:
// - socket: `cove tsm` to `cove responder` on loopback TCP, transport PCI_DOE (whole DOE objects in
//   frames), the timed part including the TCP connect and the TEST hello;
// - memory: HostTSM over DOEMailboxTransport into the device's configuration space, DW by DW.
// Teardown (disconnect, CONTINUE) happens outside the timed part. Median of N interleaved runs.
import CoveScenario
import CoveTransport
import Foundation
import HostPlatform
import PCIe
import SPDM
import TDISP

enum SPDMSocketBench {
  static func run(runs: Int) throws {
    let identity = try BuiltInDevice()
    var policy = identity.requesterPolicy
    policy.validationTime = BuiltInDevice.notBefore + 86_400
    let guest = GuestID(1)

    // The socket: one responder for the whole run (a device persists across connections).
    let served = try CoveDMADevice(
      spec: GuestImage.Device(),
      identity: SPDMSocketDeviceIdentity(
        certificateChain: identity.pki.chainRootToLeaf, signingKey: identity.pki.deviceKey,
        measurements: identity.measurements),
      entropy: SystemEntropy())
    let server = try SPDMSocketResponder(
      core: SPDMSocketResponderCore(device: served, binding: .doe), port: 0)
    defer { server.shutdown() }
    let servedFunction = served.tsmConfiguration.interfaces[1]

    func overSocket() throws -> () throws -> Void {
      let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
      let rootPort = SPDMSocketTSMFlow.rootPort(for: served.tsmConfiguration)
      let tsm = HostTSM(
        configuration: served.tsmConfiguration, transport: SPDMSocketTSMTransport(connection: connection),
        rootPort: rootPort, policy: policy, entropy: SystemEntropy())
      let disconnect = try connectLockStart(tsm, servedFunction, for: guest)
      return {
        try disconnect()
        try connection.end(.continue)
      }
    }

    let built = try TEEIODeviceTemplate().build(
      identity: identity.responderConfiguration, entropy: SystemEntropy())
    let function = built.tsm.interfaces[1]
    func inMemory() throws -> () throws -> Void {
      let tsm = HostTSM(
        configuration: built.tsm,
        transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: built.device)),
        rootPort: built.rootPort, policy: policy, entropy: SystemEntropy())
      return try connectLockStart(tsm, function, for: guest)
    }

    let (socketMedian, memoryMedian) = try interleavedMedians(runs: runs, overSocket, inMemory)
    let exchanges = server.withCore { $0.exchanges } / (runs + 3)
    print("cove-bench: the SPDM socket (spdm-emu/QEMU protocol, PCI_DOE) against the in-memory DOE mailbox")
    print(
      "  median of \(runs) interleaved runs each; ~\(exchanges) request/response exchanges per run (teardown included)"
    )
    print(
      String(
        format:
          "  socket      %9.3f ms  TCP connect + hello + TSM connect + bind + LOCK + report + START (loopback)",
        socketMedian))
    print(
      String(
        format: "  memory      %9.3f ms  the same TSM work over DOEMailboxTransport in config space",
        memoryMedian))
    print(
      String(
        format: "  ratio       %9.3f     socket / memory; socket overhead %.3f ms",
        socketMedian / memoryMedian,
        socketMedian - memoryMedian))
  }
}
