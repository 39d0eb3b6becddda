import CoveCrypto
import CoveScenario
import CoveWire
public import SPDM

/// One step of an attestation as shown to the user: what happened, the facts it established, and
/// how long it took.
public struct AttestationStep: Sendable {
  public var title: String
  public var details: [String]
  public var elapsed: Duration
}

/// The result of `cove attest`: every step, in order; `failure` is set when a step failed, and the
/// steps before it are still reported.
public struct AttestationReport: Sendable {
  public var steps: [AttestationStep] = []
  public var failure: SPDMRequesterError?
  public var negotiated: SPDMNegotiatedAlgorithms?
  public var sessionID: UInt32?
  public var succeeded: Bool { failure == nil }
  public var total: Duration { steps.reduce(.zero) { $0 + $1.elapsed } }
}

/// The TSM's side of the main job: attest a device over SPDM and exercise a secured session.
///
/// VCA → certificate chain → CHALLENGE → signed measurements → KEY_EXCHANGE/FINISH → one
/// application message → KEY_UPDATE (all keys, then verify) → HEARTBEAT → END_SESSION.
public enum AttestationFlow {
  public static func run<Transport: SPDMRequesterTransport>(
    driver: inout SPDMRequesterDriver<Transport>
  ) -> AttestationReport {
    var report = AttestationReport()
    let clock = ContinuousClock()

    func step(_ title: String, _ body: () throws(SPDMRequesterError) -> [String]) -> Bool {
      let start = clock.now
      do {
        let details = try body()
        report.steps.append(AttestationStep(title: title, details: details, elapsed: clock.now - start))
        return true
      } catch {
        report.steps.append(
          AttestationStep(title: title + " FAILED", details: [error.description], elapsed: clock.now - start))
        report.failure = error
        return false
      }
    }

    guard
      step(
        "VCA (GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS)",
        { () throws(SPDMRequesterError) in
          let algorithms = try driver.initializeConnection()
          report.negotiated = algorithms
          return [
            "SPDM \(algorithms.version) (responder offers \(driver.requester.responderVersions.map(\.description).joined(separator: ", ")))",
            "hash \(algorithms.hash), signature ECDSA \(algorithms.signatureCurve), "
              + "DHE \(algorithms.dheCurve.map { "\($0)" } ?? "none"), AEAD AES-256-GCM",
          ]
        })
    else { return report }

    guard
      step(
        "certificate chain (GET_DIGESTS, GET_CERTIFICATE)",
        { () throws(SPDMRequesterError) in
          let chain = try driver.retrieveCertificateChain()
          let size = driver.requester.spdmCertificateChain?.encode().count ?? 0
          return ["\(chain.count) certificates, \(size) bytes, verified against the trust anchor"]
            + chain.enumerated().map { "  [\($0.offset)] \($0.element.subject)" }
        })
    else { return report }

    guard
      step(
        "CHALLENGE",
        { () throws(SPDMRequesterError) in
          try driver.challenge()
          return ["CHALLENGE_AUTH signature verified with the device key (slot 0)"]
        })
    else { return report }

    guard
      step(
        "measurements (GET_MEASUREMENTS, signed)",
        { () throws(SPDMRequesterError) in
          let response = try driver.measurements(signed: true)
          var lines = [
            "\(response.blocks.count) blocks, signature over L1 verified, all match reference values"
          ]
          for block in response.blocks {
            guard let dmtf = block.dmtf else { continue }
            let value =
              dmtf.isRawBitStream
              ? "\"\(String(decoding: dmtf.value, as: UTF8.self))\"" : Hex.encode(dmtf.value.prefix(12)) + "…"
            lines.append("  #\(block.index) \(dmtf.valueType): \(value)")
          }
          lines.append("summary hash in CHALLENGE_AUTH matches the measurements")
          return lines
        })
    else { return report }

    var sessionID: UInt32 = 0
    guard
      step(
        "secure session (KEY_EXCHANGE, FINISH)",
        { () throws(SPDMRequesterError) in
          sessionID = try driver.startSession()
          report.sessionID = sessionID
          let keys = driver.requester.sessions[sessionID]
          return [
            "session 0x\(String(sessionID, radix: 16, uppercase: false)) established; signature and both verify-data checked",
            "TH1 \(Hex.encode((keys?.th1 ?? []).prefix(16)))…  TH2 \(Hex.encode((keys?.th2 ?? []).prefix(16)))…",
          ]
        })
    else { return report }

    guard
      step(
        "application message (VENDOR_DEFINED in the session)",
        { () throws(SPDMRequesterError) in
          let payload = Array("cove: hello from the TSM".utf8)
          let response = try driver.vendorDefined(
            standardID: EchoVendorProtocol.standardID, vendorID: EchoVendorProtocol.vendorIDBytes,
            payload: payload,
            sessionID: sessionID)
          guard response.payload == payload.reversed() else {
            throw SPDMRequesterError.transport("echo payload did not round-trip")
          }
          return [
            "\(payload.count) bytes sent, \(response.payload.count) bytes answered, encrypted both ways"
          ]
        })
    else { return report }

    guard
      step(
        "KEY_UPDATE (UpdateAllKeys, then VerifyNewKey)",
        { () throws(SPDMRequesterError) in
          // The driver follows the update with VerifyNewKey under the new key.
          try driver.keyUpdate(sessionID: sessionID, operation: .updateAllKeys)
          try driver.heartbeat(sessionID: sessionID)
          return ["both directions re-keyed; the new keys carried VerifyNewKey and a HEARTBEAT"]
        })
    else { return report }

    _ = step(
      "END_SESSION",
      { () throws(SPDMRequesterError) in
        try driver.endSession(sessionID: sessionID)
        return ["session 0x\(String(sessionID, radix: 16)) closed"]
      })
    return report
  }
}
