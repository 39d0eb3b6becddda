import GuestABI
import HostPlatform
import IOMMU
import PCIe
import SPDM

/// The guest's host interface in a scenario: the VMM's port, with the switches an image's
/// `tamper-evidence` step throws — a host that rewrites or replays the evidence it relays.
final class ScenarioHost: GuestHostInterface {
  /// How the next evidence answer is tampered with.
  enum Tamper: String, CaseIterable {
    /// A byte of a measurement value flipped, in the response and in the signed transcript.
    case measurement
    /// A byte of the interface report flipped (the TSM's digest no longer matches).
    case report
    /// The first evidence ever relayed is answered again (its nonce is stale).
    case replay
  }

  let port: VMMGuestPort
  var tamper: Tamper?
  private var firstEvidence: DeviceEvidence?

  init(port: VMMGuestPort) { self.port = port }

  var platform: GuestPlatformInfo { port.platform }
  func read(gpa: UInt64, count: Int) throws(HypercallError) -> [UInt8] {
    try port.read(gpa: gpa, count: count)
  }
  func write(gpa: UInt64, bytes: [UInt8]) throws(HypercallError) { try port.write(gpa: gpa, bytes: bytes) }
  func copy(from source: UInt64, to destination: UInt64, count: Int) throws(HypercallError) {
    try port.copy(from: source, to: destination, count: count)
  }
  func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError) {
    try port.convert(gpa: gpa, pages: pages, toShared: toShared)
  }
  func configRead(_ function: RequesterID, offset: Int, size: Int) throws(HypercallError) -> UInt32 {
    try port.configRead(function, offset: offset, size: size)
  }
  func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32) throws(HypercallError) {
    try port.configWrite(function, offset: offset, size: size, value: value)
  }
  func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32 {
    try port.mmioRead(function, address: address)
  }
  func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError) {
    try port.mmioWrite(function, address: address, value: value)
  }
  func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>] {
    try port.bars(of: function)
  }
  func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64 {
    try port.viommuRead(register)
  }
  func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError) {
    try port.viommuWrite(register, value)
  }
  func drainNotifications() -> [HostNotification] { port.drainNotifications() }

  func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    let response = try port.tsm(request)
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
