public import PCIe
public import SPDM
public import TDISP

/// A guest request to the host TSM (the guest-request path of TDX Connect / SEV-TIO / CCA RMM, and
/// of the Linux devsec guest TSM). The host checks that the guest owns the TDI (SEMANTICS.md §8);
/// the guest kernel enforces the trust-change rule before it asks (§6).
public enum GuestTSMRequest: Hashable, Sendable, CustomStringConvertible {
  /// LOCK_INTERFACE: freeze the function's configuration; the TSM fetches the interface report.
  case lock(RequesterID)
  /// Fresh evidence for a locked or running TDI, the device's signature covering `nonce` (32 bytes).
  case evidence(RequesterID, nonce: [UInt8])
  /// The guest accepts the TDI: START_INTERFACE, the TDI enters RUN.
  case accept(RequesterID)
  /// STOP_INTERFACE: back to CONFIG_UNLOCKED (from LOCKED, RUN or ERROR).
  case unlock(RequesterID)

  public var function: RequesterID {
    switch self {
    case .lock(let function), .evidence(let function, _), .accept(let function), .unlock(let function):
      function
    }
  }

  public var description: String {
    switch self {
    case .lock(let function): "lock \(function)"
    case .evidence(let function, _): "evidence \(function)"
    case .accept(let function): "accept \(function)"
    case .unlock(let function): "unlock \(function)"
    }
  }
}

public enum GuestTSMResponse: Hashable, Sendable {
  case done
  case evidence(DeviceEvidence)
}

/// A TDI's evidence as it crosses to the guest: raw bytes the guest parses and checks itself with
/// the SPDM and TDISP codecs, so it trusts nothing the host says about them (only the device's
/// signature and the guest's own policy).
public struct DeviceEvidence: Hashable, Sendable {
  /// The device's certificate chain, root first, each certificate DER (SPDM CERTIFICATE, DSP0274 §10.7).
  public var certificateChain: [[UInt8]]
  /// The MEASUREMENTS response as received (DSP0274 §10.11), signature included.
  public var measurementsResponse: [UInt8]
  /// What the signature covers (messageA ‖ L1, or L2 in a session) and the signature itself.
  public var signedMeasurements: SignedMeasurementsEvidence
  /// The DEVICE_INTERFACE_REPORT the TSM fetched at LOCK, all portions joined (PCIe 6.x §11.3.11).
  public var interfaceReport: [UInt8]
  /// The digest of `interfaceReport` the TSM bound the TDI to, under the session's hash algorithm.
  public var reportDigest: [UInt8]
  /// The TDI's state as the device reported it when the evidence was taken.
  public var tdiState: TDIState
  /// The MMIO_REPORTING_OFFSET the TSM gave LOCK_INTERFACE: the report's MMIO ranges are the
  /// function's BAR addresses plus this (PCIe 6.x §11.3.8). From the TSM, which the guest trusts.
  public var mmioReportingOffset: UInt64

  public init(
    certificateChain: [[UInt8]], measurementsResponse: [UInt8],
    signedMeasurements: SignedMeasurementsEvidence,
    interfaceReport: [UInt8], reportDigest: [UInt8], tdiState: TDIState, mmioReportingOffset: UInt64
  ) {
    self.mmioReportingOffset = mmioReportingOffset
    self.certificateChain = certificateChain
    self.measurementsResponse = measurementsResponse
    self.signedMeasurements = signedMeasurements
    self.interfaceReport = interfaceReport
    self.reportDigest = reportDigest
    self.tdiState = tdiState
  }
}
