import CoveCrypto
import CoveGuestDrivers
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// The guest TSM client's rules (SEMANTICS.md §6) with their errno, accept refused by each kind of
/// bad evidence with the check that failed, and every host- or device-forced change revoking trust.
@Suite struct GuestTSMClientTests {
  static func errno(_ body: () throws -> Void) -> Errno? {
    do { try body() } catch let error as KernelError { return error.errno } catch { return nil }
    return nil
  }

  static func failedCheck(_ body: () throws -> Void) -> EvidenceFailure.Check? {
    do { try body() } catch let error as KernelError { return error.evidence?.check } catch { return nil }
    return nil
  }

  @Test func lockAcceptAndUnlockFollowTheRules() throws {
    let rig = try GuestRig()
    let device = rig.pci
    let driver = CoveDMADriver()
    try rig.kernel.register(driver)

    #expect(
      Self.errno { try rig.kernel.tsmAccept(device, policy: rig.policy) } == .EINVAL, "accept: not locked")
    #expect(Self.errno { try rig.kernel.tsmUnlock(device) } == .EINVAL, "unlock: not locked")
    #expect(Self.errno { try rig.kernel.tsmUnaccept(device) } == .EINVAL, "un-accept")

    try rig.kernel.bind(device, driver: "cove-dma")
    #expect(Self.errno { try rig.kernel.tsmLock(device) } == .EBUSY, "lock: driver bound")
    #expect(rig.tdiState == .configUnlocked)
    try rig.kernel.unbind(device)

    try rig.kernel.tsmLock(device)
    #expect(Self.errno { try rig.kernel.tsmLock(device) } == .EBUSY, "lock: already locked")
    // A driver may bind to a locked device (it is still bounced), but then nothing may change.
    try rig.kernel.bind(device, driver: "cove-dma")
    #expect(Self.errno { try rig.kernel.tsmAccept(device, policy: rig.policy) } == .EBUSY, "accept: bound")
    #expect(Self.errno { try rig.kernel.tsmUnlock(device) } == .EBUSY, "unlock: bound")
    #expect(rig.tdiState == .configLocked)
    try rig.kernel.unbind(device)

    try rig.kernel.tsmAccept(device, policy: rig.policy)
    #expect(
      Self.errno { try rig.kernel.tsmAccept(device, policy: rig.policy) } == .EINVAL, "accept: accepted")
    #expect(Self.errno { try rig.kernel.tsmLock(device) } == .EBUSY, "lock: accepted")
    #expect(Self.errno { try rig.kernel.tsmUnaccept(device) } == .EINVAL)
    try rig.kernel.tsmUnlock(device)
    #expect(rig.tdiState == .configUnlocked)
    #expect(device.trust == .untrusted)
    #expect(
      rig.kernel.events.filter { if case .trustChanged = $0 { true } else { false } }
        == [
          .trustChanged(GuestRig.function, from: .untrusted, to: .locked),
          .trustChanged(GuestRig.function, from: .locked, to: .accepted),
          .trustChanged(GuestRig.function, from: .accepted, to: .untrusted),
        ])
  }

  @Test func aTamperedMeasurementFailsTheSignature() throws {
    var host: TamperingHost!
    let rig = try GuestRig { port in
      host = TamperingHost(port)
      return host
    }
    // Flip a byte of the last measurement value, in the response and in the signed transcript alike.
    host.tamperEvidence = { evidence in
      let index = evidence.measurementsResponse.count - evidence.signedMeasurements.signature.count - 40
      let value = evidence.measurementsResponse[index]
      evidence.measurementsResponse[index] ^= 0x01
      let transcriptIndex = evidence.signedMeasurements.signedTranscript.lastIndex(of: value)!
      evidence.signedMeasurements.signedTranscript[transcriptIndex] ^= 0x01
    }
    try rig.kernel.tsmLock(rig.pci)
    #expect(
      Self.failedCheck { try rig.kernel.tsmAccept(rig.pci, policy: rig.policy) } == .measurementsSignature)
    #expect(rig.pci.trust == .locked, "a refused accept leaves the device locked")
    #expect(rig.tdiState == .configLocked)
  }

  @Test func aWrongRootFailsTheChain() throws {
    let rig = try GuestRig()
    let other = try TestPKI.generate(entropy: SeededEntropy(seed: 999), notBefore: GuestRig.notBefore)
    var policy = rig.policy
    policy.trustAnchors = [other.root.der]
    try rig.kernel.tsmLock(rig.pci)
    let error = Self.failedCheck { try rig.kernel.tsmAccept(rig.pci, policy: policy) }
    #expect(error == .certificateChain)
  }

  @Test func aReplayedNonceIsStale() throws {
    var host: TamperingHost!
    let rig = try GuestRig { port in
      host = TamperingHost(port)
      return host
    }
    host.replayFirstEvidence = true
    try rig.kernel.tsmLock(rig.pci)
    _ = try rig.kernel.tsmVerify(rig.pci, policy: rig.policy)  // the first answer is genuine
    #expect(Self.failedCheck { try rig.kernel.tsmAccept(rig.pci, policy: rig.policy) } == .nonce)
  }

  @Test func aMeasurementThePolicyDoesNotAllowIsAMismatch() throws {
    let rig = try GuestRig()
    var policy = rig.policy
    policy.measurements[2] = [[UInt8](repeating: 0xAB, count: 48)]
    try rig.kernel.tsmLock(rig.pci)
    #expect(
      Self.failedCheck { try rig.kernel.tsmAccept(rig.pci, policy: policy) } == .measurementMismatch(index: 2)
    )
  }

  @Test func aReportThatDoesNotMatchTheDeviceAsTheGuestSeesItIsRefused() throws {
    var host: TamperingHost!
    let rig = try GuestRig { port in
      host = TamperingHost(port)
      host.barShift = 0x10_0000
      return host
    }
    try rig.kernel.tsmLock(rig.pci)
    #expect(Self.failedCheck { try rig.kernel.tsmAccept(rig.pci, policy: rig.policy) } == .interfaceReport)
  }

  @Test func aReportOtherThanTheBoundOneFailsTheDigest() throws {
    var host: TamperingHost!
    let rig = try GuestRig { port in
      host = TamperingHost(port)
      return host
    }
    host.tamperEvidence = { $0.interfaceReport[$0.interfaceReport.count - 1] ^= 0xFF }
    try rig.kernel.tsmLock(rig.pci)
    #expect(Self.failedCheck { try rig.kernel.tsmAccept(rig.pci, policy: rig.policy) } == .reportDigest)
  }

  /// Every way the host or the device can take a running TDI out of RUN without the guest asking.
  enum Force: String, CaseIterable, CustomTestStringConvertible {
    case busMasterClear, functionLevelReset, tsmStop, sessionEnded
    var testDescription: String { rawValue }
  }

  @Test(arguments: Force.allCases) func aForcedChangeRevokesTrustAndRemovesTheDriver(_ force: Force) throws {
    let rig = try GuestRig()
    let driver = CoveDMADriver()
    try rig.kernel.register(driver)
    let device = rig.pci
    try rig.kernel.tsmLock(device)
    try rig.kernel.tsmAccept(device, policy: rig.policy)
    try rig.kernel.bind(device, driver: "cove-dma")
    // A mapping the driver still holds when the change comes.
    let buffer = try rig.buffer()
    _ = try rig.kernel.mapSingle(device, gpa: buffer, size: 256, direction: .fromDevice)

    let state: TDIState
    switch force {
    case .busMasterClear:
      let command = try rig.vmm.configRead(rig.guest.id, function: GuestRig.function, offset: 4, size: 2)
      try rig.vmm.hostConfigWrite(GuestRig.function, offset: 4, size: 2, value: command & ~0x4)
      state = .error
    case .functionLevelReset:
      try rig.vmm.hostConfigWrite(GuestRig.function, offset: 0x48, size: 2, value: 0x8000)
      state = .error
    case .tsmStop:
      try rig.tsm.stop(GuestRig.function, for: rig.guest.id)
      state = .configUnlocked
    case .sessionEnded:
      try rig.tsm.disconnect()
      state = .configUnlocked
    }
    #expect(rig.tdiState == state)
    rig.kernel.handleHostEvents()
    #expect(device.driver == nil)
    #expect(device.trust == .revoked("TDI went to \(state) without the guest asking"))
    #expect(
      rig.kernel.events.contains(
        .driverUnbound(GuestRig.function, driver: "cove-dma", reason: "trust revoked")))
    // The mapping the driver left is reported as leaked and torn down.
    let leaks = rig.kernel.events.compactMap { event -> DMADebugReport? in
      if case .dmaDebug(let report) = event, report.kind == .leaked { return report }
      return nil
    }
    #expect(leaks.count == 1)
    #expect(leaks.first?.mappingOrigin?.file == "GuestKernelTests/GuestTSMClientTests.swift")
    #expect(
      Self.errno { _ = try rig.kernel.mapSingle(device, gpa: buffer, size: 64, direction: .toDevice) } == .EIO
    )
    #expect(Self.errno { try rig.kernel.tsmLock(device) } == .EBUSY, "unlock first")
  }

  /// Review finding: accepting the second function of a group without ACS under a lazy vIOMMU could
  /// not re-add it as trusted (the group's domain stays strict) and silently left it out of the IOMMU.
  @Test func acceptingBothFunctionsOfASharedGroupKeepsBothInTheIOMMU() throws {
    let dsm = BDF(bus: 3, device: 0, function: 0).requesterID
    let rig = try GuestRig(
      viommu: true, options: KernelOptions(autoprobe: false, iommuStrict: false), acs: false,
      functions: [dsm, GuestRig.function])
    for function in [dsm, GuestRig.function] {
      let device = try #require(rig.kernel.device(function))
      try rig.kernel.tsmLock(device)
      try rig.kernel.tsmAccept(device, policy: rig.policy)
    }
    let core = rig.kernel.iommu!.core
    #expect(core.description(of: dsm.bdf()) != nil && core.description(of: GuestRig.function.bdf()) != nil)
    #expect(core.group(of: dsm.bdf()) == core.group(of: GuestRig.function.bdf()))
    try rig.kernel.register(CoveDMADriver())
    try rig.kernel.bind(rig.pci, driver: "cove-dma")
    let source = try rig.buffer()
    let destination = try rig.buffer()
    let driver = try #require(rig.pci.driver as? CoveDMADriver)
    #expect(try driver.copy(rig.pci, kernel: rig.kernel, from: source, to: destination, length: 512) == 512)
  }
}
