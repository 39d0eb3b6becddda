import CoveCrypto
import CoveWire
public import GuestABI
import PCIe
public import SPDM
public import TDISP

/// Why the guest refused a TDI's evidence: which check failed and what it found.
public struct EvidenceFailure: Error, Hashable, Sendable, CustomStringConvertible {
  /// The checks, in the order ``EvidenceVerifier/verify(_:nonce:policy:expected:)`` makes them.
  public enum Check: Hashable, Sendable, CustomStringConvertible {
    /// The chain does not parse or does not validate to a trust anchor at the policy's time.
    case certificateChain
    /// The device's leaf key did not sign the measurements presented.
    case measurementsSignature
    /// Genuinely signed, but over another nonce than the guest's: stale or replayed evidence.
    case nonce
    /// The MEASUREMENTS response or the GET_MEASUREMENTS request in the transcript is malformed.
    case measurementsFormat
    /// The policy requires an index the device did not report.
    case missingMeasurement(index: UInt8)
    /// The device reported the index with a value the policy does not allow.
    case measurementMismatch(index: UInt8)
    /// The interface report does not hash to the digest the TSM bound the TDI to.
    case reportDigest
    /// The interface report is malformed or does not describe the function the guest sees.
    case interfaceReport
    /// The TDI is neither CONFIG_LOCKED nor RUN.
    case tdiState

    public var description: String {
      switch self {
      case .certificateChain: "certificate chain"
      case .measurementsSignature: "measurements signature"
      case .nonce: "nonce"
      case .measurementsFormat: "measurements format"
      case .missingMeasurement(let index): "missing measurement \(index)"
      case .measurementMismatch(let index): "measurement \(index) mismatch"
      case .reportDigest: "report digest"
      case .interfaceReport: "interface report"
      case .tdiState: "TDI state"
      }
    }
  }

  public var check: Check
  /// What was found, for logs; tests match on `check`.
  public var detail: String

  public init(_ check: Check, _ detail: String) {
    self.check = check
    self.detail = detail
  }

  public var description: String { "evidence refused (\(check)): \(detail)" }
}

/// Evidence that passed every check. Only the verifier makes one, so holding one means the checks
/// ran: the guest's accept path can demand it.
public struct VerifiedEvidence: Hashable, Sendable {
  /// The device's chain as validated, root first, each certificate DER.
  public let certificateChain: [[UInt8]]
  /// The leaf certificate (DER), whose key signed the measurements.
  public let leafCertificate: [UInt8]
  /// The signed MEASUREMENTS response (DSP0274 §10.11).
  public let measurementsResponse: MeasurementsResponse
  /// Its measurement blocks by index (indices are unique in a verified response).
  public let measurements: [UInt8: MeasurementBlock]
  /// The DEVICE_INTERFACE_REPORT (PCIe 6.x §11.3.11); its MMIO ranges are guest addresses plus
  /// `mmioReportingOffset`.
  public let report: TDISPDeviceInterfaceReport
  public let mmioReportingOffset: UInt64
  /// CONFIG_LOCKED or RUN.
  public let tdiState: TDIState
}

/// The guest TSM client's check of a TDI's evidence before it accepts the device (SEMANTICS.md §6:
/// unbind → lock → verify evidence → accept). The evidence arrives from the host as raw bytes
/// (``DeviceEvidence``); everything the guest relies on is either signed by the device's leaf key,
/// which chains to the guest's own trust anchors, or compared with what the guest saw itself
/// (its nonce, its PCI enumeration). The TSM's report digest, MMIO_REPORTING_OFFSET and TDI state
/// are taken from the TSM, which the guest trusts; the host VMM is not trusted.
public enum EvidenceVerifier {
  /// Bytes per MMIO_RANGE page (PCIe 6.x §11.3.11: FIRST_PAGE and NUMBER_OF_PAGES count 4 KiB pages).
  static let pageSize: UInt64 = 4096

  /// Checks `evidence` against the guest's `nonce` (the 32 bytes it sent with the evidence request),
  /// its `policy` and the function as it sees it, in this order, the first failure thrown:
  /// 1. the chain validates to a trust anchor at the policy's time (`.certificateChain`);
  /// 2. the signed transcript ends with the GET_MEASUREMENTS that carried the nonce followed by the
  ///    MEASUREMENTS response presented (without its signature), and the leaf key signed it
  ///    (`.measurementsFormat`, `.measurementsSignature`); the signed nonce is the guest's (`.nonce`);
  /// 3. every index the policy lists is reported with an allowed value (`.missingMeasurement`,
  ///    `.measurementMismatch`);
  /// 4. the interface report hashes to the report digest (`.reportDigest`);
  /// 5. the report describes the function: its ranges are the guest's BARs, whole, and the MSI-X
  ///    table and PBA pages where the capability puts them (`.interfaceReport`);
  /// 6. the TDI is CONFIG_LOCKED or RUN (`.tdiState`).
  public static func verify(
    _ evidence: DeviceEvidence, nonce: [UInt8], policy: AttestationPolicy, expected: ExpectedInterface
  ) throws(EvidenceFailure) -> VerifiedEvidence {
    let (chain, leafKey) = try validateChain(evidence.certificateChain, policy: policy)
    let response = try verifyMeasurements(evidence, nonce: nonce, leafKey: leafKey)
    let blocks = try checkMeasurements(response.blocks, policy: policy)
    // §11.3.11: the TSM binds the TDI to the report it read at LOCK; the digest is under the
    // session's hash, which the measurements signature just proved is `hash`.
    let digest = evidence.signedMeasurements.hash.hash(evidence.interfaceReport)
    guard digest == evidence.reportDigest else {
      throw EvidenceFailure(
        .reportDigest,
        "the report hashes to \(Hex.encode(digest.prefix(8)))…, "
          + "the TSM bound \(Hex.encode(evidence.reportDigest.prefix(8)))…")
    }
    let report = try checkReport(
      evidence.interfaceReport, mmioReportingOffset: evidence.mmioReportingOffset, expected: expected)
    // §11.2: only CONFIG_LOCKED and RUN freeze the configuration the report describes; in
    // CONFIG_UNLOCKED the host may change it, in ERROR the device no longer vouches for it.
    guard evidence.tdiState == .configLocked || evidence.tdiState == .run else {
      throw EvidenceFailure(.tdiState, "the TDI is \(evidence.tdiState.name), not CONFIG_LOCKED or RUN")
    }
    return VerifiedEvidence(
      certificateChain: chain.map(\.der), leafCertificate: chain[chain.count - 1].der,
      measurementsResponse: response, measurements: blocks, report: report,
      mmioReportingOffset: evidence.mmioReportingOffset, tdiState: evidence.tdiState)
  }

  // MARK: 1. Certificate chain

  /// The validated chain (root first) and the leaf's public key (RFC 5280 §6 path validation by
  /// CoveCrypto, as the SPDM requester does it).
  private static func validateChain(_ ders: [[UInt8]], policy: AttestationPolicy) throws(EvidenceFailure)
    -> (chain: [X509Certificate], leafKey: ECPublicKey)
  {
    var anchors: [X509Certificate] = []
    for (index, der) in policy.trustAnchors.enumerated() {
      do { anchors.append(try X509Certificate(der: der)) } catch {
        throw EvidenceFailure(.certificateChain, "trust anchor \(index) does not parse: \(error)")
      }
    }
    var certificates: [X509Certificate] = []
    for (index, der) in ders.enumerated() {
      do { certificates.append(try X509Certificate(der: der)) } catch {
        throw EvidenceFailure(.certificateChain, "certificate \(index) of the chain does not parse: \(error)")
      }
    }
    let path: [X509Certificate]
    do {
      path = try CertificateChainVerifier(trustAnchors: anchors)
        .verify(rootToLeaf: certificates, at: policy.validationTime)
    } catch {
      throw EvidenceFailure(.certificateChain, "\(error)")
    }
    // `verify` refuses an empty chain, so there is a leaf.
    let leaf = certificates[certificates.count - 1]
    do {
      return (path, try leaf.publicKey())
    } catch {
      throw EvidenceFailure(.certificateChain, "the leaf's public key is unusable: \(error)")
    }
  }

  // MARK: 2. Signed measurements

  /// DSP0274 §10.11: the signature covers the transcript ending in GET_MEASUREMENTS ‖ MEASUREMENTS
  /// without its signature. The guest finds its own nonce in that GET_MEASUREMENTS, so the signature
  /// proves the device answered this request: a replay of older evidence is genuinely signed, over
  /// an older nonce, and fails as `.nonce` (checked after the signature, so that `.nonce` always
  /// means "signed by the device, but not for this request").
  private static func verifyMeasurements(
    _ evidence: DeviceEvidence, nonce: [UInt8], leafKey: ECPublicKey
  ) throws(EvidenceFailure) -> MeasurementsResponse {
    let signed = evidence.signedMeasurements
    // The signature size follows from the leaf key (r ‖ s, DSP0274 BaseAsymAlgo), not from the host.
    let signatureSize = 2 * leafKey.curve.coordinateSize
    guard signed.signature.count == signatureSize else {
      throw EvidenceFailure(
        .measurementsSignature,
        "a \(signed.signature.count)-byte signature; the leaf key's signatures are \(signatureSize) bytes")
    }
    let response: MeasurementsResponse
    do {
      response = try MeasurementsResponse(
        parsing: evidence.measurementsResponse, signatureSize: signatureSize)
    } catch {
      throw EvidenceFailure(.measurementsFormat, "MEASUREMENTS: \(error)")
    }
    guard response.signature == signed.signature else {
      throw EvidenceFailure(
        .measurementsSignature, "the MEASUREMENTS response carries another signature than the one presented")
    }
    let unsigned = evidence.measurementsResponse.dropLast(signatureSize)
    let transcript = signed.signedTranscript
    guard transcript.count >= unsigned.count, transcript.suffix(unsigned.count).elementsEqual(unsigned) else {
      throw EvidenceFailure(
        .measurementsSignature, "the signed transcript does not end with the MEASUREMENTS response presented")
    }
    guard signed.version == response.version else {
      throw EvidenceFailure(
        .measurementsFormat, "evidence says SPDM \(signed.version), the response is \(response.version)")
    }
    // GET_MEASUREMENTS with a signature requested: header, Nonce, SlotIDParam (1.1+),
    // RequesterContext (1.3+) (DSP0274 "GET_MEASUREMENTS request message format").
    let requestSize =
      4 + spdmNonceSize + (response.version >= .v11 ? 1 : 0)
      + (response.version >= .v13 ? spdmRequesterContextSize : 0)
    let requestEnd = transcript.count - unsigned.count
    guard requestEnd >= requestSize else {
      throw EvidenceFailure(.measurementsFormat, "no GET_MEASUREMENTS before the response in the transcript")
    }
    let request: GetMeasurementsRequest
    do {
      request = try GetMeasurementsRequest(
        parsing: Array(transcript[(requestEnd - requestSize)..<requestEnd]))
    } catch {
      throw EvidenceFailure(.measurementsFormat, "GET_MEASUREMENTS in the transcript: \(error)")
    }
    guard request.version == response.version, request.signatureRequested, let signedNonce = request.nonce
    else {
      throw EvidenceFailure(
        .measurementsFormat,
        "the GET_MEASUREMENTS before the response is not a signed \(response.version) request")
    }
    guard signed.verify(with: leafKey) else {
      throw EvidenceFailure(.measurementsSignature, "the leaf key did not sign this transcript")
    }
    guard signedNonce == nonce else {
      throw EvidenceFailure(
        .nonce,
        "the device signed nonce \(Hex.encode(signedNonce.prefix(8)))…, "
          + "the guest sent \(Hex.encode(nonce.prefix(8)))…")
    }
    return response
  }

  // MARK: 3. Measurement policy

  private static func checkMeasurements(
    _ reported: [MeasurementBlock], policy: AttestationPolicy
  ) throws(EvidenceFailure) -> [UInt8: MeasurementBlock] {
    var blocks: [UInt8: MeasurementBlock] = [:]
    for block in reported {
      // One block per index (DSP0274 "Measurement block format"): two would make the policy's
      // answer depend on which one it looked at.
      guard blocks.updateValue(block, forKey: block.index) == nil else {
        throw EvidenceFailure(.measurementsFormat, "measurement index \(block.index) is reported twice")
      }
    }
    for (index, allowed) in policy.measurements.sorted(by: { $0.key < $1.key }) {
      guard let block = blocks[index] else {
        throw EvidenceFailure(.missingMeasurement(index: index), "the device reports no measurement \(index)")
      }
      guard let value = block.dmtf?.value else {
        throw EvidenceFailure(
          .measurementMismatch(index: index), "measurement \(index) is not in the DMTF measurement format")
      }
      guard allowed.contains(value) else {
        throw EvidenceFailure(
          .measurementMismatch(index: index),
          "measurement \(index) is \(Hex.encode(value.prefix(8)))…, which the policy does not allow")
      }
    }
    return blocks
  }

  // MARK: 5. Interface report against the guest's view

  /// One reported range placed in the guest's address space.
  private struct PlacedRange {
    var position: Int
    var range: TDISPMMIORange
    /// Guest-physical bytes: FIRST_PAGE minus MMIO_REPORTING_OFFSET, NUMBER_OF_PAGES × 4 KiB long.
    var span: Range<UInt64>
    var bar: Int { Int(range.rangeID) }

    var name: String {
      "MMIO_RANGE[\(position)] (RANGE_ID \(range.rangeID), "
        + "FIRST_PAGE 0x\(String(range.firstPage, radix: 16)), \(range.numberOfPages) pages)"
    }
  }

  /// PCIe 6.x §11.3.11 (MMIO_RANGE rules): the device reports each memory BAR's pages with RANGE_ID
  /// identifying the BAR and the MSI-X table and PBA pages as their own ranges; addresses are the
  /// function's plus MMIO_REPORTING_OFFSET (§11.3.8). A range for a BAR the guest does not have, one
  /// outside its BAR, a BAR not wholly covered, or MSI-X pages elsewhere than the capability says
  /// mean the report and the guest disagree about the device, and the guest would map it wrongly.
  private static func checkReport(
    _ bytes: [UInt8], mmioReportingOffset: UInt64, expected: ExpectedInterface
  ) throws(EvidenceFailure) -> TDISPDeviceInterfaceReport {
    let report: TDISPDeviceInterfaceReport
    do { report = try TDISPDeviceInterfaceReport(parsing: bytes) } catch {
      throw EvidenceFailure(.interfaceReport, "the report does not parse: \(error)")
    }
    var placed: [PlacedRange] = []
    for (position, range) in report.mmioRanges.enumerated() {
      // NUMBER_OF_PAGES is a u32, so the length (at most 2^44) cannot overflow.
      let start = range.firstPage &- mmioReportingOffset
      let (end, overflow) = start.addingReportingOverflow(UInt64(range.numberOfPages) * pageSize)
      let entry = PlacedRange(position: position, range: range, span: start..<(overflow ? start : end))
      guard let bar = expected.bars[entry.bar] else {
        throw EvidenceFailure(
          .interfaceReport, "\(entry.name) names BAR \(entry.bar), which the function does not have")
      }
      guard range.numberOfPages > 0, !overflow else {
        throw EvidenceFailure(.interfaceReport, "\(entry.name) is empty or wraps the address space")
      }
      guard start >= bar.lowerBound, end <= pageSpan(of: bar).upperBound else {
        throw EvidenceFailure(
          .interfaceReport,
          "\(entry.name) is at guest address \(hex(entry.span)) (FIRST_PAGE − MMIO_REPORTING_OFFSET), "
            + "outside BAR \(entry.bar) at \(hex(bar))")
      }
      placed.append(entry)
    }
    try checkCoverage(placed, bars: expected.bars)
    if let msix = expected.msix {
      try checkMSIX(
        msix.table, attribute: .msixTable, what: "MSI-X table", placed: placed, bars: expected.bars)
      try checkMSIX(msix.pba, attribute: .msixPBA, what: "MSI-X PBA", placed: placed, bars: expected.bars)
      // MSI_X_MESSAGE_CONTROL is the capability's Message Control at LOCK (§11.3.11): its table size
      // must be the one the guest read.
      let entries = UInt64(report.msixMessageControl & MSIXCapabilityRegister.tableSizeMask) + 1
      guard entries * 16 == msix.table.size else {
        throw EvidenceFailure(
          .interfaceReport,
          "MSI_X_MESSAGE_CONTROL gives \(entries) table entries; "
            + "the guest's capability \(msix.table.size / 16)")
      }
    }
    return report
  }

  /// The bytes the report may use for `bar`: its pages, since a BAR smaller than a page is still
  /// reported as one whole page from its base.
  private static func pageSpan(of bar: Range<UInt64>) -> Range<UInt64> {
    let (end, overflow) = bar.lowerBound.addingReportingOverflow(
      roundedUpToPage(bar.upperBound - bar.lowerBound))
    return bar.lowerBound..<(overflow ? UInt64.max : end)
  }

  /// `value` rounded up to a multiple of the page size, or UInt64.max when that does not fit (BAR
  /// addresses come from config reads the host traps, so no sum of them may trap).
  private static func roundedUpToPage(_ value: UInt64) -> UInt64 {
    let (rounded, overflow) = (value / pageSize * pageSize).addingReportingOverflow(
      value % pageSize == 0 ? 0 : pageSize)
    return overflow ? UInt64.max : rounded
  }

  /// Each BAR's ranges, in address order, cover it from base to end without gaps or overlaps: a
  /// hidden part of a BAR would be MMIO the guest maps with no attributes the device vouched for,
  /// and overlapping ranges would give one page two sets of attributes.
  private static func checkCoverage(_ placed: [PlacedRange], bars: [Int: Range<UInt64>])
    throws(EvidenceFailure)
  {
    for (index, bar) in bars.sorted(by: { $0.key < $1.key }) where !bar.isEmpty {
      var covered = bar.lowerBound
      var previous: PlacedRange?
      for entry in placed.filter({ $0.bar == index }).sorted(by: { $0.span.lowerBound < $1.span.lowerBound })
      {
        if entry.span.lowerBound < covered, let previous {
          throw EvidenceFailure(.interfaceReport, "\(entry.name) overlaps \(previous.name)")
        }
        guard entry.span.lowerBound == covered else {
          throw EvidenceFailure(
            .interfaceReport,
            "BAR \(index) bytes \(hex(covered..<entry.span.lowerBound)) are in no range "
              + "(the next is \(entry.name))")
        }
        covered = entry.span.upperBound
        previous = entry
      }
      guard covered >= bar.upperBound else {
        throw EvidenceFailure(
          .interfaceReport, "BAR \(index) bytes \(hex(covered..<bar.upperBound)) are in no range")
      }
    }
  }

  /// The pages holding `region` are reported with `attribute`, and no other page is: every range
  /// with the attribute lies within those pages, and together (ranges do not overlap, checked
  /// before) they cover all of them.
  private static func checkMSIX(
    _ region: MSIXLocation.Region, attribute: TDISPMMIORangeAttributes, what: String,
    placed: [PlacedRange], bars: [Int: Range<UInt64>]
  ) throws(EvidenceFailure) {
    guard let bar = bars[region.bar] else {
      throw EvidenceFailure(
        .interfaceReport, "the \(what) is in BAR \(region.bar), which the function does not have")
    }
    // Pages are counted from the BAR's base, as the device splits them (§11.3.11).
    let span = pageSpan(of: bar)
    let (regionEnd, overflow) = region.offset.addingReportingOverflow(region.size)
    guard !overflow, region.size > 0, regionEnd <= span.upperBound - span.lowerBound else {
      throw EvidenceFailure(
        .interfaceReport,
        "the \(what) (BAR \(region.bar) offset 0x\(String(region.offset, radix: 16)), "
          + "\(region.size) bytes) is not inside its BAR")
    }
    // Both ends lie within `span`, so the sums cannot overflow.
    let firstPage = region.offset / pageSize * pageSize
    let endPage = min(roundedUpToPage(regionEnd), span.upperBound - span.lowerBound)
    let pages = (bar.lowerBound + firstPage)..<(bar.lowerBound + endPage)
    var marked: UInt64 = 0
    for entry in placed where entry.range.attributes.contains(attribute) {
      guard entry.bar == region.bar, entry.span.lowerBound >= pages.lowerBound,
        entry.span.upperBound <= pages.upperBound
      else {
        throw EvidenceFailure(
          .interfaceReport, "\(entry.name) is marked as \(what) but the \(what) is at \(hex(pages))")
      }
      marked += entry.span.upperBound - entry.span.lowerBound
    }
    guard marked == pages.upperBound - pages.lowerBound else {
      throw EvidenceFailure(
        .interfaceReport, "the \(what) pages at \(hex(pages)) are not all reported with the \(what) attribute"
      )
    }
  }

  private static func hex(_ range: Range<UInt64>) -> String {
    "0x\(String(range.lowerBound, radix: 16))..<0x\(String(range.upperBound, radix: 16))"
  }
}
