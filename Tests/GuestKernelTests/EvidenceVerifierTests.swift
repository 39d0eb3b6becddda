import CoveCrypto
import GuestABI
import GuestKernel
import HostPlatform
import PCIe
import SPDM
import TDISP
import Testing

/// The guest TSM client's evidence check against real evidence from the host platform
/// (SEMANTICS.md §6: lock → verify evidence → accept), one test per way the evidence can be wrong,
/// each asserting the exact check that refuses it.
@Suite struct EvidenceVerifierTests {
  /// Verifies and returns the check that refused the evidence (nil when it passed).
  private func refusal(
    _ evidence: DeviceEvidence, nonce: [UInt8], policy: AttestationPolicy, expected: ExpectedInterface
  ) -> EvidenceFailure.Check? {
    do {
      _ = try EvidenceVerifier.verify(evidence, nonce: nonce, policy: policy, expected: expected)
      return nil
    } catch {
      return error.check
    }
  }

  // MARK: Genuine evidence

  @Test func genuineEvidenceFromALockedTDIPassesWithTheSignedBlocks() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(1)
    let verified = try EvidenceVerifier.verify(
      try rig.evidence(nonce: nonce), nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface())
    #expect(verified.measurements.keys.sorted() == [1, 2])
    #expect(verified.measurements[1] == EvidenceRig.measurements[0])
    #expect(verified.measurements[2]?.dmtf?.value == EvidenceRig.configurationDigest)
    #expect(verified.leafCertificate == rig.pki.device.der)
    #expect(verified.certificateChain == rig.pki.chainRootToLeaf.map(\.der))
    #expect(verified.tdiState == .configLocked)
    #expect(verified.mmioReportingOffset == EvidenceRig.mmioReportingOffset)
    // BAR0: registers, MSI-X table page, PBA page; BAR2: one range.
    #expect(verified.report.mmioRanges.map(\.rangeID) == [0, 0, 0, 2])
    #expect(verified.report.mmioRanges.map(\.attributes) == [[], .msixTable, .msixPBA, []])
  }

  @Test func genuineEvidenceFromARunningTDIPasses() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    try rig.accept()
    let nonce = EvidenceRig.nonce(2)
    let verified = try EvidenceVerifier.verify(
      try rig.evidence(nonce: nonce), nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface())
    #expect(verified.tdiState == .run)
  }

  @Test func theGuestReadsTheFunctionAsTheDeviceDescribesIt() throws {
    let rig = try EvidenceRig()
    let expected = try rig.expectedInterface()
    #expect(expected.bars.keys.sorted() == [0, 2])
    #expect(expected.bars[0] == rig.device.bar0(of: EvidenceRig.function))
    #expect(expected.bars[2]?.count == 0x10_0000)
    #expect(
      expected.msix
        == MSIXLocation(
          table: .init(bar: 0, offset: 0xE000, size: 16 * 16), pba: .init(bar: 0, offset: 0xF000, size: 8)))
  }

  // MARK: 1. Certificate chain

  @Test func aChainFromAnotherPKIFailsTheChainCheck() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(3)
    let otherRoot = try TestPKI.generate(
      entropy: SeededEntropy(seed: 90), commonNamePrefix: "Other", notBefore: EvidenceRig.notBefore
    ).root
    var policy = rig.policy
    policy.trustAnchors = [otherRoot.der]
    #expect(
      refusal(
        try rig.evidence(nonce: nonce), nonce: nonce, policy: policy, expected: try rig.expectedInterface())
        == .certificateChain)
  }

  @Test func aChainCheckedOutsideItsValidityFails() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(4)
    var policy = rig.policy
    policy.validationTime = EvidenceRig.notBefore - 86_400
    #expect(
      refusal(
        try rig.evidence(nonce: nonce), nonce: nonce, policy: policy, expected: try rig.expectedInterface())
        == .certificateChain)
  }

  // MARK: 2. Signed measurements and freshness

  @Test func aTamperedMeasurementFailsTheSignature() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(5)
    let tampered = EvidenceRig.tamperingMeasurement(try rig.evidence(nonce: nonce))
    #expect(
      refusal(tampered, nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface())
        == .measurementsSignature)
  }

  @Test func aResponseOtherThanTheSignedOneFailsTheSignature() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(6)
    var evidence = try rig.evidence(nonce: nonce)
    // Only the response the guest parses is changed; the transcript still holds what was signed.
    evidence.measurementsResponse[EvidenceRig.firstMeasurementValueOffset] ^= 0x01
    #expect(
      refusal(evidence, nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface())
        == .measurementsSignature)
  }

  @Test func evidenceTakenForAnotherNonceIsStale() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let evidence = try rig.evidence(nonce: EvidenceRig.nonce(7))
    #expect(
      refusal(
        evidence, nonce: EvidenceRig.nonce(8), policy: rig.policy, expected: try rig.expectedInterface())
        == .nonce)
  }

  @Test func aReplayOfOlderGenuineEvidenceFailsTheNonceCheck() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let expected = try rig.expectedInterface()
    let oldNonce = EvidenceRig.nonce(9)
    let old = try rig.evidence(nonce: oldNonce)
    try rig.accept()
    let newNonce = EvidenceRig.nonce(10)
    let fresh = try rig.evidence(nonce: newNonce)
    #expect(refusal(fresh, nonce: newNonce, policy: rig.policy, expected: expected) == nil)
    // The old evidence is genuine: it passes for the nonce it was taken with.
    #expect(refusal(old, nonce: oldNonce, policy: rig.policy, expected: expected) == nil)
    // The host answers the new request with the old evidence, its unsigned fields brought up to date.
    var replay = old
    replay.signedMeasurements.nonce = newNonce
    replay.tdiState = fresh.tdiState
    #expect(refusal(replay, nonce: newNonce, policy: rig.policy, expected: expected) == .nonce)
  }

  // MARK: 3. Measurement policy

  @Test(arguments: [UInt8(1), 2])
  func aSignedValueThePolicyDoesNotAllowIsAMismatch(index: UInt8) throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(11)
    var policy = rig.policy
    policy.measurements[index] = [HashAlgorithm.sha384.hash(Array("another build".utf8))]
    #expect(
      refusal(
        try rig.evidence(nonce: nonce), nonce: nonce, policy: policy, expected: try rig.expectedInterface())
        == .measurementMismatch(index: index))
  }

  @Test func anIndexThePolicyRequiresButTheDeviceDoesNotReportIsMissing() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(12)
    var policy = rig.policy
    policy.measurements[3] = [HashAlgorithm.sha384.hash(Array("debug state".utf8))]
    #expect(
      refusal(
        try rig.evidence(nonce: nonce), nonce: nonce, policy: policy, expected: try rig.expectedInterface())
        == .missingMeasurement(index: 3))
  }

  @Test func aPolicyAllowingSeveralValuesAcceptsAnyOfThem() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(13)
    var policy = rig.policy
    policy.measurements[1] = [
      HashAlgorithm.sha384.hash(Array("previous build".utf8)), EvidenceRig.firmwareDigest,
    ]
    #expect(
      refusal(
        try rig.evidence(nonce: nonce), nonce: nonce, policy: policy, expected: try rig.expectedInterface())
        == nil)
  }

  // MARK: 4. Report digest

  @Test func aReportDigestMismatchIsRefused() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(14)
    var evidence = try rig.evidence(nonce: nonce)
    evidence.reportDigest[0] ^= 0x80
    #expect(
      refusal(evidence, nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface())
        == .reportDigest)
  }

  @Test func aReportOtherThanTheBoundOneFailsTheDigest() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(15)
    var evidence = try rig.evidence(nonce: nonce)
    // INTERFACE_INFO without "no firmware update while locked".
    evidence.interfaceReport[0] &= ~0x01
    #expect(
      refusal(evidence, nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface())
        == .reportDigest)
  }

  // MARK: 5. Report against the guest's view

  /// Verifies genuine evidence against `adjust`ed expectations; returns the failure.
  private func reportRefusal(
    _ adjust: (inout ExpectedInterface) -> Void, offset: UInt64? = nil
  ) throws -> EvidenceFailure? {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(16)
    var evidence = try rig.evidence(nonce: nonce)
    if let offset { evidence.mmioReportingOffset = offset }
    var expected = try rig.expectedInterface()
    adjust(&expected)
    do {
      _ = try EvidenceVerifier.verify(evidence, nonce: nonce, policy: rig.policy, expected: expected)
      return nil
    } catch {
      return error
    }
  }

  @Test func aReportForBARsElsewhereIsRefused() throws {
    let failure = try reportRefusal { expected in
      for (index, bar) in expected.bars {
        expected.bars[index] = (bar.lowerBound + 0x20_0000)..<(bar.upperBound + 0x20_0000)
      }
    }
    #expect(failure?.check == .interfaceReport)
    #expect(failure?.detail.contains("MMIO_RANGE[0]") == true)
  }

  @Test func aBARTheReportDoesNotWhollyCoverIsRefused() throws {
    let failure = try reportRefusal { expected in
      let bar = expected.bars[2]!
      expected.bars[2] = bar.lowerBound..<(bar.upperBound + 0x1000)
    }
    #expect(failure?.check == .interfaceReport)
    #expect(failure?.detail.contains("BAR 2") == true)
  }

  @Test func aRangeForABARTheGuestDoesNotHaveIsRefused() throws {
    let failure = try reportRefusal { expected in expected.bars[2] = nil }
    #expect(failure?.check == .interfaceReport)
    #expect(failure?.detail.contains("MMIO_RANGE[3]") == true)
  }

  @Test func aWrongReportingOffsetMisplacesTheRanges() throws {
    let failure = try reportRefusal({ _ in }, offset: 0)
    #expect(failure?.check == .interfaceReport)
  }

  @Test func anMSIXTableElsewhereThanTheCapabilitySaysIsRefused() throws {
    let failure = try reportRefusal { expected in expected.msix?.table.offset = 0xD000 }
    #expect(failure?.check == .interfaceReport)
    #expect(failure?.detail.contains("MSI-X table") == true)
  }

  @Test func anMSIXPBAInAnotherBARIsRefused() throws {
    let failure = try reportRefusal { expected in expected.msix?.pba.bar = 2 }
    #expect(failure?.check == .interfaceReport)
    #expect(failure?.detail.contains("MSI-X PBA") == true)
  }

  @Test func anMSIXTableOfAnotherSizeIsRefused() throws {
    let failure = try reportRefusal { expected in expected.msix?.table.size = 8 * 16 }
    #expect(failure?.check == .interfaceReport)
    #expect(failure?.detail.contains("MSI_X_MESSAGE_CONTROL") == true)
  }

  // MARK: 6. TDI state

  @Test(arguments: [TDIState.configUnlocked, .error])
  func aTDIThatIsNeitherLockedNorRunningIsRefused(state: TDIState) throws {
    let rig = try EvidenceRig()
    try rig.lock()
    let nonce = EvidenceRig.nonce(17)
    var evidence = try rig.evidence(nonce: nonce)
    evidence.tdiState = state
    #expect(
      refusal(evidence, nonce: nonce, policy: rig.policy, expected: try rig.expectedInterface()) == .tdiState)
  }

  // MARK: Order

  @Test func theFirstFailingCheckIsTheOneReported() throws {
    let rig = try EvidenceRig()
    try rig.lock()
    var evidence = try rig.evidence(nonce: EvidenceRig.nonce(18))
    evidence.reportDigest[0] ^= 0x80
    evidence.tdiState = .configUnlocked
    var policy = rig.policy
    policy.measurements[3] = []
    let expected = try rig.expectedInterface()
    #expect(refusal(evidence, nonce: EvidenceRig.nonce(19), policy: policy, expected: expected) == .nonce)
    #expect(
      refusal(evidence, nonce: EvidenceRig.nonce(18), policy: policy, expected: expected)
        == .missingMeasurement(index: 3))
    #expect(
      refusal(evidence, nonce: EvidenceRig.nonce(18), policy: rig.policy, expected: expected) == .reportDigest
    )
  }
}
