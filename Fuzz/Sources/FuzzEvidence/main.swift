// libFuzzer entry point for the guest's evidence check (GuestKernel `EvidenceVerifier.verify`): the
// `DeviceEvidence` a hostile host hands the guest — certificate DERs, the MEASUREMENTS response, the
// signed transcript and signature, the interface report, its digest, the TDI state, the reporting
// offset — either taken whole from the input or made from genuine evidence (a cove-dma device behind
// the host TSM, built once at startup) with fields edited by the input. Optionally the device itself
// is hostile and signs whatever transcript results, the TSM binds the digest to whatever report
// results, and the guest's view of the function (BARs, MSI-X) is perturbed.
//
// verify must never crash: it throws an EvidenceFailure, or returns a VerifiedEvidence that holds up
// — its report is the parse of the report bytes, which hash to the digest; its measurements are the
// blocks of the response presented, one per index, each the policy allows; its ranges lie in the
// guest's BARs; its state is CONFIG_LOCKED or RUN — and, unless the harness's own device key
// re-signed, its measurements are the genuine ones (evidence nobody re-signed cannot be forged).
//
// Input: byte 0 is a set of flags (see `Flags`); then, with `skeleton` clear, the DeviceEvidence
// fields in order as length-prefixed chunks (`allFieldsFromInput`); with it set, optional
// perturbations of the guest's view, then edits of the genuine evidence until the input ends
// (`applyEdits`).
import CoveCrypto
import FuzzSupport
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP

Harness.run()

enum Harness {
  static func run() -> Never {
    let fixture: Fixture
    do { fixture = try Fixture() } catch {
      fatalError("FuzzEvidence: building the genuine evidence failed: \(error)")
    }
    runLibFuzzer { fuzzInput($0, fixture) }
  }
}

struct Flags: OptionSet {
  var rawValue: UInt8
  /// Start from the genuine evidence and apply edits; clear: every field comes from the input.
  static let skeleton = Flags(rawValue: 1 << 0)
  /// The device signs whatever transcript the edits leave (a hostile device, with its genuine key).
  static let deviceResigns = Flags(rawValue: 1 << 1)
  /// The TSM binds the digest of whatever report the edits leave (the device sent that report).
  static let tsmDigestsReport = Flags(rawValue: 1 << 2)
  /// The guest's view of the function (BARs, MSI-X) is perturbed by the input.
  static let perturbedView = Flags(rawValue: 1 << 3)
}

// MARK: The genuine evidence

/// A cove-dma device with a test PKI and two measurements behind a host TSM (as
/// Tests/GuestKernelTests/EvidenceFixtures.swift builds it), its DSM function locked, and the
/// evidence the TSM returns for a fixed nonce: everything a run starts from. Deterministic.
final class Fixture {
  static let function = BDF(bus: 3, device: 0, function: 0).requesterID
  static let notBefore: Int64 = 1_735_689_600
  static let validationTime: Int64 = 1_767_225_600
  static let mmioReportingOffset: UInt64 = 0x40_0000_0000
  static let firmwareDigest = HashAlgorithm.sha384.hash(Array("evidence firmware".utf8))
  static let configurationDigest = HashAlgorithm.sha384.hash(Array("evidence configuration".utf8))

  let evidence: DeviceEvidence
  let nonce: [UInt8]
  let policy: AttestationPolicy
  let expected: ExpectedInterface
  /// The device's signing key: what a hostile device re-signs with.
  let deviceKey: ECPrivateKey
  let parts: EvidenceParts

  init() throws {
    let memory = PlatformMemory(pages: 4096, entropy: SeededEntropy(seed: 70))
    let iommu = PlatformIOMMU(
      core: try IOMMUCore(tableMemory: try TablePagePool(maxPages: 1024)), memory: memory)
    let vmm = VMM(memory: memory, iommu: iommu)
    let pki = try TestPKI.generate(entropy: SeededEntropy(seed: 71), notBefore: Self.notBefore)
    let measurements = [
      MeasurementBlock(
        index: 1,
        dmtf: DMTFMeasurement(valueType: .mutableFirmware, isRawBitStream: false, value: Self.firmwareDigest)),
      MeasurementBlock(
        index: 2,
        dmtf: DMTFMeasurement(
          valueType: .hardwareConfiguration, isRawBitStream: false, value: Self.configurationDigest)),
    ]
    let device = try CoveDMADevice(
      identity: SPDMResponderConfiguration(
        certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: measurements),
      entropy: SeededEntropy(seed: 72))
    var requesterPolicy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    requesterPolicy.validationTime = Self.validationTime
    var configuration = device.tsmConfiguration
    configuration.mmioReportingOffset = Self.mmioReportingOffset
    let tsm = HostTSM(
      configuration: configuration,
      transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device.tdisp)),
      rootPort: device.rootPort, policy: requesterPolicy, entropy: SeededEntropy(seed: 73))
    try vmm.plug(device, tsm: tsm)
    let guest = try vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20))
    try vmm.assign(Self.function, to: guest.id)
    try tsm.connect()
    try tsm.bind(Self.function, to: guest.id)
    try tsm.lock(Self.function, for: guest.id)

    nonce = SeededEntropy(seed: 0xE001).bytes(count: 32)
    evidence = try tsm.evidence(for: Self.function, guest: guest.id, nonce: nonce)
      .crossingToGuest(mmioReportingOffset: Self.mmioReportingOffset)
    policy = AttestationPolicy(
      trustAnchors: [pki.root.der],
      measurements: [1: [Self.firmwareDigest], 2: [Self.configurationDigest]],
      validationTime: Self.validationTime)
    deviceKey = pki.deviceKey

    // The function as the guest enumerates it: memory BARs at their addresses, sized by the layout,
    // and the MSI-X capability found on the capability list.
    let read = { (offset: Int, size: Int) throws -> UInt32 in
      try vmm.configRead(guest.id, function: Self.function, offset: offset, size: size)
    }
    let layout = device.tdisp.configSpaces[Self.function]!.layout
    var bars: [Int: Range<UInt64>] = [:]
    for (index, bar) in layout.bars.enumerated() {
      guard let bar, bar.kind != .io else { continue }
      let register = PCIHeaderRegister.bar0 + 4 * index
      var address = UInt64(try read(register, 4)) & ~0xF
      if bar.kind == .memory64 { address |= UInt64(try read(register + 4, 4)) << 32 }
      bars[index] = address..<(address + bar.size)
    }
    var msix: MSIXLocation?
    var pointer = Int(try read(0x34, 1)) & ~0x3
    while pointer != 0 {
      if try read(pointer, 1) == 0x11 {
        msix = MSIXLocation(
          messageControl: UInt16(try read(pointer + MSIXCapabilityRegister.messageControl, 2)),
          tableOffsetBIR: try read(pointer + MSIXCapabilityRegister.tableOffsetBIR, 4),
          pbaOffsetBIR: try read(pointer + MSIXCapabilityRegister.pbaOffsetBIR, 4))
        break
      }
      pointer = Int(try read(pointer + 1, 1)) & ~0x3
    }
    expected = ExpectedInterface(bars: bars, msix: msix)
    parts = EvidenceParts(evidence)

    // The skeleton must be genuine, or the harness explores nothing past the first check.
    let verified = try EvidenceVerifier.verify(evidence, nonce: nonce, policy: policy, expected: expected)
    precondition(verified.measurements.count == 2, "the genuine evidence lost its measurements")
    precondition(parts.assemble() == evidence, "EvidenceParts does not reassemble the genuine evidence")
    precondition(msix != nil && bars.count >= 2, "the genuine function lost its BARs or MSI-X")
  }

  /// MSI-X registers that give `expected.msix` back (the register form MSIXLocation reads).
  var msixRegisters: (messageControl: UInt16, tableOffsetBIR: UInt32, pbaOffsetBIR: UInt32)? {
    guard let msix = expected.msix else { return nil }
    return (
      UInt16(msix.table.size / 16 - 1), UInt32(msix.table.offset) | UInt32(msix.table.bar),
      UInt32(msix.pba.offset) | UInt32(msix.pba.bar)
    )
  }
}

/// DeviceEvidence as the pieces a device and a TSM make it from, so edits to one piece keep the
/// others consistent: the response is the unsigned response and the signature, the transcript is
/// what precedes the response plus the unsigned response — unless an edit replaced the response or
/// the transcript as a whole.
struct EvidenceParts {
  var certificates: [[UInt8]]
  /// The signed transcript before the MEASUREMENTS response (VCA, …, GET_MEASUREMENTS).
  var transcriptPrefix: [UInt8]
  /// The MEASUREMENTS response without its signature.
  var unsignedResponse: [UInt8]
  var signature: [UInt8]
  /// The response as sent, when edited as a whole.
  var responseOverride: [UInt8]?
  /// The signed transcript, when edited as a whole.
  var transcriptOverride: [UInt8]?
  var version: SPDMVersion
  var hash: HashAlgorithm
  var signedNonce: [UInt8]
  var report: [UInt8]
  var digest: [UInt8]
  var state: TDIState
  var mmioReportingOffset: UInt64

  init(_ evidence: DeviceEvidence) {
    let signed = evidence.signedMeasurements
    let unsigned = Array(evidence.measurementsResponse.dropLast(signed.signature.count))
    certificates = evidence.certificateChain
    transcriptPrefix = Array(signed.signedTranscript.dropLast(unsigned.count))
    unsignedResponse = unsigned
    signature = signed.signature
    version = signed.version
    hash = signed.hash
    signedNonce = signed.nonce
    report = evidence.interfaceReport
    digest = evidence.reportDigest
    state = evidence.tdiState
    mmioReportingOffset = evidence.mmioReportingOffset
  }

  var response: [UInt8] { responseOverride ?? unsignedResponse + signature }
  var transcript: [UInt8] { transcriptOverride ?? transcriptPrefix + unsignedResponse }

  func assemble() -> DeviceEvidence {
    DeviceEvidence(
      certificateChain: certificates, measurementsResponse: response,
      signedMeasurements: SignedMeasurementsEvidence(
        version: version, hash: hash, nonce: signedNonce, signedTranscript: transcript, signature: signature),
      interfaceReport: report, reportDigest: digest, tdiState: state, mmioReportingOffset: mmioReportingOffset
    )
  }
}

// MARK: One input

private func fuzzInput(_ input: [UInt8], _ fixture: Fixture) {
  var reader = FuzzReader(input)
  let flags = Flags(rawValue: reader.u8())
  var expected = fixture.expected
  var nonce = fixture.nonce
  var parts: EvidenceParts
  if flags.contains(.skeleton) {
    if flags.contains(.perturbedView) { expected = perturbedView(&reader, fixture) }
    parts = fixture.parts
    applyEdits(&reader, to: &parts, guestNonce: &nonce)
  } else {
    parts = allFieldsFromInput(&reader, fixture)
  }
  if flags.contains(.deviceResigns) {
    // The device signs what it is shown; the response carries the new signature.
    guard
      let signature = try? SPDMSigningContext.measurements.sign(
        key: fixture.deviceKey, hash: parts.hash, version: parts.version,
        transcriptHash: parts.hash.hash(parts.transcript))
    else { return }
    parts.signature = signature
  }
  if flags.contains(.tsmDigestsReport) { parts.digest = parts.hash.hash(parts.report) }

  let evidence = parts.assemble()
  let verified: VerifiedEvidence
  do {
    verified = try EvidenceVerifier.verify(evidence, nonce: nonce, policy: fixture.policy, expected: expected)
  } catch {
    fuzzLog("refused: \(error)")
    return  // a typed EvidenceFailure: the only other outcome allowed
  }
  fuzzLog("verified: \(verified.measurements.count) measurements, \(verified.report.mmioRanges.count) ranges")
  check(
    verified, evidence: evidence, nonce: nonce, expected: expected, fixture: fixture,
    resigned: flags.contains(.deviceResigns))
}

/// Every DeviceEvidence field in order: certificate count (u8, at most 4) and that many chunks
/// (u16 lengths), the MEASUREMENTS response (u16), the signed transcript (u16), the signature (u8),
/// the interface report (u16), the digest (u8), the SPDM version (u8), the hash (u8, bit 0: SHA-384),
/// the TDI state (u8, low two bits), MMIO_REPORTING_OFFSET (u64) and the signed nonce (u8).
private func allFieldsFromInput(_ reader: inout FuzzReader, _ fixture: Fixture) -> EvidenceParts {
  var parts = fixture.parts
  parts.certificates = (0..<Int(reader.u8() % 5)).map { _ in reader.chunk16() }
  parts.responseOverride = reader.chunk16()
  parts.transcriptOverride = reader.chunk16()
  parts.signature = reader.chunk8()
  parts.report = reader.chunk16()
  parts.digest = reader.chunk8()
  parts.version = SPDMVersion(rawValue: reader.u8())
  parts.hash = reader.u8() & 1 == 0 ? .sha256 : .sha384
  parts.state = TDIState(rawValue: reader.u8() & 3)!
  parts.mmioReportingOffset = reader.u64()
  parts.signedNonce = reader.chunk8()
  return parts
}

/// The guest's view, perturbed: a count (u8, at most 4) of BAR edits — index (u8: bits 2:0 the BAR,
/// bit 3 drops it), then base and length XORed into the genuine BAR (u64 each) — then an MSI-X byte
/// (bit 0: none; bit 1: XOR Message Control (u16), Table Offset/BIR and PBA Offset/BIR (u32 each)
/// into the genuine registers).
private func perturbedView(_ reader: inout FuzzReader, _ fixture: Fixture) -> ExpectedInterface {
  var expected = fixture.expected
  for _ in 0..<(reader.u8() % 5) {
    let selector = reader.u8()
    let index = Int(selector & 7)
    let base = reader.u64()
    let length = reader.u64()
    if selector & 8 != 0 {
      expected.bars[index] = nil
      continue
    }
    let old = expected.bars[index] ?? 0..<0
    let start = old.lowerBound ^ base
    let size = (old.upperBound - old.lowerBound) ^ length
    let (end, overflow) = start.addingReportingOverflow(size)
    expected.bars[index] = start..<(overflow ? UInt64.max : end)
  }
  let msix = reader.u8()
  if msix & 1 != 0 {
    expected.msix = nil
  } else if msix & 2 != 0, let registers = fixture.msixRegisters {
    expected.msix = MSIXLocation(
      messageControl: registers.messageControl ^ reader.u16(),
      tableOffsetBIR: registers.tableOffsetBIR ^ reader.u32(),
      pbaOffsetBIR: registers.pbaOffsetBIR ^ reader.u32())
  }
  return expected
}

/// Edits until the input ends. Each: a field (u8), an operation (u8), then its operands. Byte fields
/// take replace (u16 chunk), XOR (u16 offset, u16 chunk), truncate (u16 length) or insert (u16
/// offset, u16 chunk); the chain takes structural edits too; scalars take a value.
private func applyEdits(_ reader: inout FuzzReader, to parts: inout EvidenceParts, guestNonce: inout [UInt8])
{
  while !reader.isAtEnd {
    let field = reader.u8()
    let operation = reader.u8()
    switch field % 17 {
    case 0, 1, 2:
      let index = Int(field % 17)
      guard index < parts.certificates.count else { continue }
      edit(&parts.certificates[index], operation, &reader)
    case 3:  // the chain's shape
      switch operation % 5 {
      case 0: if !parts.certificates.isEmpty { parts.certificates.removeLast() }
      case 1: if !parts.certificates.isEmpty { parts.certificates.removeFirst() }
      case 2: if let last = parts.certificates.last { parts.certificates.append(last) }
      case 3: parts.certificates.reverse()
      default: parts.certificates.append(reader.chunk16())
      }
    case 4: edit(&parts.transcriptPrefix, operation, &reader)
    case 5: edit(&parts.unsignedResponse, operation, &reader)
    case 6: edit(&parts.signature, operation, &reader)
    case 7:
      var response = parts.response
      edit(&response, operation, &reader)
      parts.responseOverride = response
    case 8:
      var transcript = parts.transcript
      edit(&transcript, operation, &reader)
      parts.transcriptOverride = transcript
    case 9: edit(&parts.report, operation, &reader)
    case 10: edit(&parts.digest, operation, &reader)
    case 11: edit(&parts.signedNonce, operation, &reader)
    case 12: edit(&guestNonce, operation, &reader)
    case 13: parts.version = SPDMVersion(rawValue: operation)
    case 14: parts.hash = operation & 1 == 0 ? .sha256 : .sha384
    case 15: parts.state = TDIState(rawValue: operation & 3)!
    default: parts.mmioReportingOffset ^= reader.u64()
    }
  }
}

private func edit(_ bytes: inout [UInt8], _ operation: UInt8, _ reader: inout FuzzReader) {
  switch operation % 4 {
  case 0:
    bytes = reader.chunk16()
  case 1:
    let offset = Int(reader.u16())
    for (index, byte) in reader.chunk16().enumerated() where offset + index < bytes.count {
      bytes[offset + index] ^= byte
    }
  case 2:
    bytes = Array(bytes.prefix(Int(reader.u16())))
  default:
    let offset = min(Int(reader.u16()), bytes.count)
    bytes.insert(contentsOf: reader.chunk16(), at: offset)
  }
}

// MARK: What a verified evidence must satisfy

private func check(
  _ verified: VerifiedEvidence, evidence: DeviceEvidence, nonce: [UInt8], expected: ExpectedInterface,
  fixture: Fixture, resigned: Bool
) {
  let signed = evidence.signedMeasurements
  // The report: what the report bytes parse to, and they hash to the digest the TSM bound.
  precondition(
    signed.hash.hash(evidence.interfaceReport) == evidence.reportDigest,
    "verified evidence whose report does not hash to the report digest")
  precondition(
    (try? TDISPDeviceInterfaceReport(parsing: evidence.interfaceReport)) == verified.report,
    "the verified report is not the parse of the report bytes")
  precondition(verified.mmioReportingOffset == evidence.mmioReportingOffset, "the reporting offset changed")
  precondition(
    verified.tdiState == .configLocked || verified.tdiState == .run, "verified in \(verified.tdiState)")
  precondition(verified.tdiState == evidence.tdiState, "the TDI state changed")

  // The chain: a path from one of the guest's anchors (which the device need not send, since chain[0]
  // may be issued by an anchor) through certificates presented to the leaf presented, whose key
  // signed the transcript.
  guard let anchor = verified.certificateChain.first else { preconditionFailure("an empty verified chain") }
  precondition(
    fixture.policy.trustAnchors.contains(anchor), "the verified path does not start at a trust anchor")
  for certificate in verified.certificateChain.dropFirst() {
    precondition(
      evidence.certificateChain.contains(certificate), "the verified path uses a certificate nobody presented"
    )
  }
  precondition(verified.leafCertificate == verified.certificateChain.last, "the leaf is not the path's last")
  precondition(
    verified.leafCertificate == evidence.certificateChain.last, "the leaf is not the presented chain's last")
  guard let leaf = try? X509Certificate(der: verified.leafCertificate), let key = try? leaf.publicKey() else {
    preconditionFailure("the verified leaf does not parse or has no usable key")
  }
  precondition(signed.verify(with: key), "verified evidence whose signature the leaf key does not verify")
  precondition(
    contains(signed.signedTranscript, nonce), "the signed transcript does not carry the guest's nonce")

  // The measurements: the blocks of the response presented, one per index, as the policy allows.
  guard
    let response = try? MeasurementsResponse(
      parsing: evidence.measurementsResponse, signatureSize: signed.signature.count)
  else { preconditionFailure("the verified MEASUREMENTS response does not parse") }
  precondition(response == verified.measurementsResponse, "the verified response is not the one presented")
  precondition(response.signature == signed.signature, "the response carries another signature")
  precondition(
    signed.signedTranscript.suffix(evidence.measurementsResponse.count - signed.signature.count)
      .elementsEqual(evidence.measurementsResponse.dropLast(signed.signature.count)),
    "the signed transcript does not end with the verified response")
  precondition(verified.measurements.count == response.blocks.count, "blocks dropped or invented")
  for (index, block) in verified.measurements {
    precondition(block.index == index, "measurement \(index) filed under another index")
    precondition(response.blocks.contains(block), "measurement \(index) is not a block of the response")
  }
  for (index, allowed) in fixture.policy.measurements {
    guard let value = verified.measurements[index]?.dmtf?.value, allowed.contains(value) else {
      preconditionFailure("measurement \(index) verified against the policy")
    }
  }
  // Nobody re-signed: whatever was verified is what the genuine device signed.
  if !resigned && evidence.certificateChain == fixture.evidence.certificateChain {
    let genuine = try? MeasurementsResponse(
      parsing: fixture.evidence.measurementsResponse,
      signatureSize: fixture.evidence.signedMeasurements.signature.count)
    precondition(
      verified.measurementsResponse.blocks == genuine?.blocks,
      "measurements the device never signed were verified")
  }

  // The report's ranges lie in the guest's BARs (whole pages from the BAR's base).
  for range in verified.report.mmioRanges {
    guard let bar = expected.bars[Int(range.rangeID)] else {
      preconditionFailure("a verified range names BAR \(range.rangeID), which the guest does not have")
    }
    precondition(range.numberOfPages > 0, "a verified empty range")
    // Bytes of the BAR's whole pages, from its base (capped where the address space ends).
    let size = bar.upperBound - bar.lowerBound
    let (rounded, roundingOverflow) = (size / 4096 * 4096).addingReportingOverflow(
      size % 4096 == 0 ? 0 : 4096)
    let span = min(roundingOverflow ? UInt64.max : rounded, UInt64.max - bar.lowerBound)
    let start = range.firstPage &- verified.mmioReportingOffset
    precondition(start >= bar.lowerBound, "a verified range below its BAR")
    let (end, overflow) = (start - bar.lowerBound).addingReportingOverflow(UInt64(range.numberOfPages) * 4096)
    precondition(!overflow && end <= span, "a verified range beyond its BAR")
  }
}

/// Whether `needle` occurs in `haystack`.
private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
  guard needle.count <= haystack.count else { return false }
  if needle.isEmpty { return true }
  for start in 0...(haystack.count - needle.count)
  where haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle) {
    return true
  }
  return false
}
