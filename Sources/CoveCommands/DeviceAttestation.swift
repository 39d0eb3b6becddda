public import CoveCrypto
public import CoveScenario
import PCIe
public import SPDM

/// Wires the built-in device's DSM (SPDM responder behind a DOE mailbox) to a TSM requester whose
/// DOE driver moves every DW through the mailbox registers, then runs the attestation flow.
public enum DeviceAttestation {
  /// A requester driver talking to `device` through a DOE mailbox.
  public static func makeDriver(
    device: BuiltInDevice, policy: SPDMRequesterPolicy, entropy: any EntropySource,
    deviceEntropy: (any EntropySource)? = nil
  ) -> SPDMRequesterDriver<DOERequesterTransport> {
    var responder = SPDMResponder(
      configuration: device.responderConfiguration, entropy: deviceEntropy ?? entropy)
    responder.vendorDefinedHandler = EchoVendorProtocol()
    var requester = SPDMRequester(policy: policy, entropy: entropy)
    requester.allowsTransportPadding = true
    return SPDMRequesterDriver(
      requester: requester, transport: DOERequesterTransport(endpoint: SPDMDOEEndpoint(responder: responder)))
  }

  /// DOE discovery, then the SPDM attestation flow.
  public static func run(
    device: BuiltInDevice, policy: SPDMRequesterPolicy, entropy: any EntropySource
  ) -> AttestationReport {
    var driver = makeDriver(device: device, policy: policy, entropy: entropy)
    let clock = ContinuousClock()
    let start = clock.now
    let protocols: [DOEProtocol]
    do {
      protocols = try driver.transport.discoverProtocols()
    } catch {
      var report = AttestationReport()
      report.steps.append(
        AttestationStep(
          title: "DOE discovery FAILED", details: [error.description], elapsed: clock.now - start))
      report.failure = error
      return report
    }
    let discovery = AttestationStep(
      title: "DOE discovery",
      details: ["mailbox protocols: " + protocols.map(\.description).joined(separator: ", ")],
      elapsed: clock.now - start)
    guard protocols.contains(.spdm), protocols.contains(.securedSPDM) else {
      var report = AttestationReport()
      report.steps = [discovery]
      report.failure = .transport("the device's DOE mailbox does not offer SPDM and secured SPDM")
      return report
    }
    var report = AttestationFlow.run(driver: &driver)
    report.steps.insert(discovery, at: 0)
    report.steps.append(
      AttestationStep(
        title: "DOE traffic",
        details: [
          "\(driver.transport.objects.count) data objects, \(driver.transport.objects.reduce(0) { $0 + $1.encode().count }) bytes, "
            + "\(driver.transport.registerAccesses) mailbox register accesses"
        ], elapsed: .zero))
    return report
  }
}
