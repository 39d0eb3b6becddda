import GuestABI
import HostPlatform
import SPDM

/// The guest's host interface in a scenario: the VMM's port, with the switches an image's
/// `tamper-evidence` step throws — a host that rewrites or replays the evidence it relays.
final class ScenarioHost: GuestHostForwarder {
  /// How the next evidence answer is tampered with.
  enum Tamper: String, CaseIterable {
    /// A byte of a measurement value flipped, in the response and in the signed transcript.
    case measurement
    /// A byte of the interface report flipped (the TSM's digest no longer matches).
    case report
    /// The first evidence ever relayed is answered again (its nonce is stale).
    case replay
  }

  var tamper: Tamper?
  private var firstEvidence: DeviceEvidence?

  init(port: VMMGuestPort) { super.init(port) }

  override func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    let response = try inner.tsm(request)
    guard case .evidence(var evidence) = response else { return response }
    if firstEvidence == nil { firstEvidence = evidence }
    switch tamper {
    case nil: return response
    case .measurement:
      // The last measurement value's final byte, where it sits in the response and the transcript.
      let index = evidence.measurementsResponse.count - evidence.signedMeasurements.signature.count - 40
      if index > 0 {
        let value = evidence.measurementsResponse[index]
        evidence.measurementsResponse[index] ^= 0x01
        if let at = evidence.signedMeasurements.signedTranscript.lastIndex(of: value) {
          evidence.signedMeasurements.signedTranscript[at] ^= 0x01
        }
      }
    case .report:
      if !evidence.interfaceReport.isEmpty {
        evidence.interfaceReport[evidence.interfaceReport.count - 1] ^= 0xFF
      }
    case .replay:
      evidence = firstEvidence ?? evidence
    }
    tamper = nil
    return .evidence(evidence)
  }
}
