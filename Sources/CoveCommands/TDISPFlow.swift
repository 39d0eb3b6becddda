public import CoveCrypto
public import CoveScenario
import Foundation
import HostPlatform
import IDEKM
import IOMMU
import PCIe
import SPDM
import TDISP

/// The result of the TDISP part of the main job: every step, in order; `failure` names the step
/// that failed, the steps before it are still reported.
public struct TDISPFlowReport: Sendable {
  public var steps: [AttestationStep] = []
  public var failure: String?
  public var succeeded: Bool { failure == nil }
  public var total: Duration { steps.reduce(.zero) { $0 + $1.elapsed } }
}

/// The TEE-IO story on the built-in device, until guest images drive it (SEMANTICS.md §7–8): the host
/// TSM connects (SPDM session, IDE keys on the device and the root port), binds a TDI to guest 1,
/// locks it, fetches the interface report, starts it on the guest's accept, hands the guest its
/// evidence; then the host clears Bus Master Enable, the TDI goes to ERROR, and the TSM stops it
/// and disconnects.
public enum TDISPFlow {
  public static func run(device identity: BuiltInDevice, entropy: any EntropySource) -> TDISPFlowReport {
    var report = TDISPFlowReport()
    let clock = ContinuousClock()
    let guest = GuestID(1)
    let built: (device: TDISPDevice, rootPort: IDERootPort, tsm: TSMDeviceConfiguration)
    do {
      built = try TEEIODeviceTemplate().build(identity: identity.responderConfiguration, entropy: entropy)
    } catch {
      report.failure = "building the device: \(error)"
      return report
    }
    let device = built.device
    let tdi = built.tsm.interfaces[1]
    var policy = identity.requesterPolicy
    policy.validationTime = BuiltInDevice.notBefore + 86_400
    let tsm = HostTSM(
      configuration: built.tsm, transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device)),
      rootPort: built.rootPort, policy: policy, entropy: entropy)

    func step(_ title: String, _ body: () throws -> [String]) -> Bool {
      let start = clock.now
      do {
        let details = try body()
        report.steps.append(AttestationStep(title: title, details: details, elapsed: clock.now - start))
        return true
      } catch {
        report.steps.append(
          AttestationStep(title: "\(title) FAILED", details: ["\(error)"], elapsed: clock.now - start))
        report.failure = "\(title): \(error)"
        return false
      }
    }
    func hex(_ bytes: [UInt8]) -> String {
      bytes.prefix(12).map { String(format: "%02x", $0) }.joined() + "…"
    }
    func state(_ function: RequesterID) -> String { device.tdi(function).map { "\($0.state)" } ?? "?" }

    _ =
      step("TSM connect (SPDM session, IDE_KM, stream enable)") {
        let connection = try tsm.connect()
        let stream = built.tsm.streamID
        return [
          "session 0x\(String(connection.sessionID, radix: 16)), TDISP \(connection.tdispVersions.map(\.description).joined(separator: ", "))",
          "IDE_KM: 6 KEY_PROG + 6 K_SET_GO on the device, the same keys into root port \(built.rootPort.requesterID)",
          "stream \(stream): device \(device.dsm.ideKM.ports[0].endpoint.state(of: stream)), root port \(built.rootPort.state(of: stream))",
          "TDIs: " + built.tsm.interfaces.map { "\($0) \(state($0))" }.joined(separator: ", "),
        ]
      }
      && step("bind \(tdi) to \(guest)") {
        try tsm.bind(tdi, to: guest)
        return ["\(tdi) is \(guest)'s; another guest asking for it gets EBUSY"]
      }
      && step("LOCK_INTERFACE \(tdi)") {
        let locked = try tsm.lock(tdi, for: guest)
        var lines = [
          "\(state(tdi)); START nonce kept by the TSM",
          "report: \(locked.bytes.count) bytes in \(locked.portions) portion(s), SHA-384 \(hex(locked.digest))",
        ]
        for range in locked.report.mmioRanges {
          let attributes =
            range.attributes.rawValue == 0
            ? "" : ", attributes 0x\(String(range.attributes.rawValue, radix: 16))"
          lines.append(
            "  range \(range.rangeID): 0x\(String(range.firstPage, radix: 16)) × \(range.numberOfPages) pages\(attributes)"
          )
        }
        return lines
      }
      && step("evidence for \(guest)") {
        let nonce = entropy.bytes(count: 32)
        let evidence = try tsm.evidence(for: tdi, guest: guest, nonce: nonce)
        guard let leaf = evidence.certificateChain.last,
          evidence.signedMeasurements.verify(with: try leaf.publicKey())
        else { throw TSMError(.EIO, .unexpectedResponse("evidence signature does not verify")) }
        return [
          "\(evidence.certificateChain.count) certificates, \(evidence.measurements.blocks.count) measurements signed over the guest's nonce \(hex(nonce))",
          "signature checked with the leaf key, as the guest will",
        ]
      }
      && step("START_INTERFACE \(tdi) (guest accepts)") {
        try tsm.start(tdi, for: guest)
        return ["\(state(tdi)); ready for trusted DMA: \(try tsm.isReadyForTrustedDMA(tdi) ? "yes" : "no")"]
      }
      && step("host clears Bus Master Enable on \(tdi)") {
        let events = device.configWrite(tdi, offset: PCIHeaderRegister.command, size: 2, value: 0x0002)
        return [
          "config space reports \(events.map { "\($0)" }.joined(separator: ", ")); TDI \(state(tdi))",
          "ready for trusted DMA: \(try tsm.isReadyForTrustedDMA(tdi) ? "yes" : "no")",
        ]
      }
      && step("STOP_INTERFACE \(tdi)") {
        try tsm.stop(tdi, for: guest)
        return ["\(state(tdi)); TDI secrets scrubbed, report forgotten"]
      }
      && step("TSM disconnect") {
        try tsm.disconnect()
        return [
          "K_SET_STOP ×6, END_SESSION; stream \(built.tsm.streamID) \(device.dsm.ideKM.ports[0].endpoint.state(of: built.tsm.streamID))",
          "\(tsm.messages.count) IDE_KM/TDISP messages exchanged inside the session",
        ]
      }
    return report
  }

  public static func render(_ report: TDISPFlowReport, quiet: Bool) -> String {
    var out = ""
    if !quiet {
      out += "cove: host TSM takes the device's TDIs into the TEE (TDISP, IDE_KM over the SPDM session)\n"
      for step in report.steps {
        out += "[\(ReportPrinter.milliseconds(step.elapsed))] \(step.title)\n"
        for line in step.details { out += "             \(line)\n" }
      }
    }
    if let failure = report.failure {
      out += "TDISP flow FAILED after \(ReportPrinter.milliseconds(report.total)): \(failure)\n"
    } else {
      out +=
        "TDISP flow succeeded: \(report.steps.count) steps in \(ReportPrinter.milliseconds(report.total))\n"
    }
    return out
  }
}
