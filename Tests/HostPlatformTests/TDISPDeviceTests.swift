import CoveCrypto
import HostPlatform
import IDEKM
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// The emulated device: its functions, the DSM on function 0, reports built from configuration,
/// PF FLR reaching VFs, and TLPs with the T bit (PCIe 6.x §11.2, §11.3.11; SEMANTICS.md §7–8).
@Suite struct TDISPDeviceTests {
  static let vf0 = BDF(bus: 3, device: 0, function: 2).requesterID
  static let vf1 = BDF(bus: 3, device: 0, function: 3).requesterID

  @Test func onlyTheDSMFunctionMayHaveTheDOEMailbox() throws {
    let identity = try TEEIORig().device.doe.responder.configuration
    var builder = PCIeConfigSpaceBuilder(vendorID: 0x1B36, deviceID: 1, classCode: 0)
    builder.add(.doe(DOECapability()), at: 0x100)
    let withDOE = try builder.build()
    let withoutDOE = try PCIeConfigSpaceBuilder(vendorID: 0x1B36, deviceID: 1, classCode: 0).build()
    let caps = TDISPCapabilities(
      supportedRequests: TDISPRequestCode.allKnown, lockInterfaceFlagsSupported: [], deviceAddressWidth: 52)
    let port = IDEKMPort(
      deviceFunction: 0, bus: 3, capability: IDECapabilityRegister(linkStreams: 0, selectiveStreams: 1),
      streams: [1: .selective])
    func make(_ spaces: [PCIeConfigSpace], parents: [RequesterID?] = []) throws(TDISPDeviceError) {
      let functions = spaces.enumerated().map { index, space in
        TDISPFunctionDescription(
          requesterID: RequesterID(rawValue: 0x0300 + UInt16(index)), configSpace: space,
          physicalFunction: index < parents.count ? parents[index] : nil, capabilities: caps)
      }
      _ = try TDISPDevice(
        functions: functions, responder: identity, idePorts: [port], entropy: SeededEntropy(seed: 1))
    }
    #expect(throws: TDISPDeviceError.noFunctions) { try make([]) }
    #expect(throws: TDISPDeviceError.dsmWithoutDOE(RequesterID(rawValue: 0x0300))) { try make([withoutDOE]) }
    #expect(throws: TDISPDeviceError.doeOnNonDSMFunction(RequesterID(rawValue: 0x0301))) {
      try make([withDOE, withDOE])
    }
    #expect(
      throws: TDISPDeviceError.unknownPhysicalFunction(
        vf: RequesterID(rawValue: 0x0301), pf: RequesterID(rawValue: 0x0309))
    ) {
      try make([withDOE, withoutDOE], parents: [nil, RequesterID(rawValue: 0x0309)])
    }
    #expect(throws: TDISPDeviceError.nestedVirtualFunction(RequesterID(rawValue: 0x0302))) {
      try make(
        [withDOE, withoutDOE, withoutDOE],
        parents: [nil, RequesterID(rawValue: 0x0300), RequesterID(rawValue: 0x0301)])
    }
    try make([withDOE, withoutDOE])
  }

  @Test func anAbsentFunctionReadsAllOnesAndIgnoresWrites() throws {
    let rig = try TEEIORig()
    let absent = BDF(bus: 3, device: 0, function: 7).requesterID
    #expect(rig.device.configRead(absent, offset: 0, size: 4) == 0xFFFF_FFFF)
    #expect(rig.device.configRead(absent, offset: 0, size: 2) == 0xFFFF)
    #expect(rig.device.configWrite(absent, offset: 4, size: 2, value: 0).isEmpty)
    // Function 1 has no DOE capability: writes at the DSM's DOE offset are plain config writes.
    #expect(rig.device.configRead(TEEIORig.pf1, offset: 0, size: 2) == 0x1B36)
  }

  /// PF0's report (PROTOCOLS.md "Report", PCIe 6.x Table 11-15): BAR0 (64 KiB at 0xE0000000) splits
  /// into 14 register pages, the MSI-X table page (0xE000) and the PBA page (0xF000); BAR2 (1 MiB at
  /// 0xE0100000) is one range; MSI-X control says 16 vectors (Table Size 15).
  @Test func theReportFollowsTheFunctionsConfigurationAtLock() throws {
    var template = TEEIODeviceTemplate()
    template.reportTweaks = InterfaceReportTweaks(nonTEERangeIDs: [2], deviceSpecificInfo: [0xAB, 0xCD])
    let rig = try TEEIORig(template: template)
    try rig.tsm.connect()
    try rig.tsm.bind(TEEIORig.pf0, to: TEEIORig.guest)
    let report = try rig.tsm.lock(TEEIORig.pf0, for: TEEIORig.guest).report
    // The template gives every function a PASID capability: DMA with and without PASID.
    #expect(report.interfaceInfo == [.noFirmwareUpdateWhileLocked, .dmaWithoutPASID, .dmaWithPASID])
    #expect(report.msixMessageControl == 0x000F)
    #expect(
      report.mmioRanges == [
        TDISPMMIORange(firstPage: 0xE000_0000, numberOfPages: 14, attributes: [], rangeID: 0),
        TDISPMMIORange(firstPage: 0xE000_E000, numberOfPages: 1, attributes: .msixTable, rangeID: 0),
        TDISPMMIORange(firstPage: 0xE000_F000, numberOfPages: 1, attributes: .msixPBA, rangeID: 0),
        TDISPMMIORange(firstPage: 0xE010_0000, numberOfPages: 256, attributes: .isNonTEEMemory, rangeID: 2),
      ])
    #expect(report.deviceSpecificInfo == [0xAB, 0xCD])

    // A BAR moved while unlocked is what the next LOCK reports, shifted by MMIO_REPORTING_OFFSET.
    try rig.tsm.stop(TEEIORig.pf0, for: TEEIORig.guest)
    rig.device.configWrite(TEEIORig.pf1, offset: PCIHeaderRegister.bar0, size: 4, value: 0xE040_0000)
    try rig.tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)
    let moved = try rig.tsm.lock(TEEIORig.pf1, for: TEEIORig.guest).report
    #expect(moved.mmioRanges.map(\.firstPage) == [0xE040_0000])
  }

  @Test func overlappingBARsAreAnInvalidDeviceConfiguration() throws {
    let rig = try TEEIORig()
    try rig.tsm.connect()
    // Move PF0's BAR2 (1 MiB) onto its BAR0.
    rig.device.configWrite(TEEIORig.pf0, offset: PCIHeaderRegister.bar0 + 8, size: 4, value: 0xE000_0000)
    try rig.tsm.bind(TEEIORig.pf0, to: TEEIORig.guest)
    #expect(throws: TSMError(.EIO, .device(.invalidDeviceConfiguration, data: 0))) {
      try rig.tsm.lock(TEEIORig.pf0, for: TEEIORig.guest)
    }
    #expect(rig.state(TEEIORig.pf0) == .configUnlocked)
    // A refusal keeps the session and the TSM's view of the TDI.
    #expect(rig.tsm.isConnected)
    #expect(rig.tsm.interface(TEEIORig.pf0)?.state == .unlocked)
  }

  /// The last 1 MiB of the 64-bit space is a legal BAR (size-aligned, base + size wraps to 0): the
  /// lock checks must not trap on it.
  @Test func aBARAtTheTopOfTheAddressSpaceLocksWithoutTrapping() throws {
    let rig = try TEEIORig()
    try rig.tsm.connect()
    rig.device.configWrite(TEEIORig.pf0, offset: PCIHeaderRegister.bar0 + 8, size: 4, value: 0xFFF0_0000)
    rig.device.configWrite(TEEIORig.pf0, offset: PCIHeaderRegister.bar0 + 12, size: 4, value: 0xFFFF_FFFF)
    #expect(rig.device.configSpaces[TEEIORig.pf0]?.barAddress(2) == 0xFFFF_FFFF_FFF0_0000)
    try rig.tsm.bind(TEEIORig.pf0, to: TEEIORig.guest)
    let report = try rig.tsm.lock(TEEIORig.pf0, for: TEEIORig.guest).report
    #expect(
      report.mmioRanges.last
        == TDISPMMIORange(firstPage: 0xFFFF_FFFF_FFF0_0000, numberOfPages: 256, attributes: [], rangeID: 2))
  }

  @Test func aPFsFLRTakesItsVFsTDIsToError() throws {
    let rig = try TEEIORig(template: TEEIODeviceTemplate(virtualFunctions: 2))
    for function in [TEEIORig.pf0, TEEIORig.pf1, Self.vf0, Self.vf1] { try rig.run(function) }
    // FLR of VF 0 (Device Control bit 15 of its PCIe capability at 0x40): that VF alone.
    rig.device.configWrite(Self.vf0, offset: 0x40 + 0x08, size: 2, value: 0x8000)
    #expect(rig.state(Self.vf0) == .error)
    #expect(rig.state(Self.vf1) == .run)
    #expect(rig.state(TEEIORig.pf0) == .run)
    // FLR of PF 0: PF 0 and both its VFs; PF 1 is not PF 0's.
    let events = rig.device.configWrite(TEEIORig.pf0, offset: 0x40 + 0x08, size: 2, value: 0x8000)
    #expect(events == [.functionLevelReset])
    #expect(rig.state(TEEIORig.pf0) == .error)
    #expect(rig.state(Self.vf1) == .error)
    #expect(rig.state(TEEIORig.pf1) == .run)
    #expect(rig.device.events.contains(.flrPropagated(from: TEEIORig.pf0, to: Self.vf1)))
    // The VF's registers were reset too: its BAR reads back unassigned.
    #expect(rig.device.configSpaces[Self.vf1]?.barAddress(0) == 0)
    // The TSM brings every TDI back by STOP from ERROR.
    for function in [TEEIORig.pf0, Self.vf0, Self.vf1] {
      #expect(try rig.tsm.deviceState(function) == .error)
      try rig.tsm.stop(function, for: TEEIORig.guest)
      #expect(rig.state(function) == .configUnlocked)
    }
  }

  @Test func busMasterClearFromTheHostTakesTheRunningTDIToError() throws {
    let rig = try TEEIORig()
    try rig.run(TEEIORig.pf1)
    let events = rig.device.configWrite(
      TEEIORig.pf1, offset: PCIHeaderRegister.command, size: 2, value: 0x0002)
    #expect(events == [.busMasterDisabled])  // 0x0002 keeps MSE (bit 1), clears BME (bit 2)
    #expect(rig.state(TEEIORig.pf1) == .error)
    #expect(try !rig.tsm.isReadyForTrustedDMA(TEEIORig.pf1))
  }

  @Test func tZeroTrafficToATDIInRun() throws {
    var template = TEEIODeviceTemplate()
    template.reportTweaks = InterfaceReportTweaks(nonTEERangeIDs: [2])
    let rig = try TEEIORig(template: template)
    let host = rig.rootPort.requesterID
    // T=1 to a TDI not in RUN: UR, state unchanged.
    let early = TLP(requesterID: host, address: 0xE000_0000, tBit: true, kind: .memoryWrite(length: 4))
    #expect(
      rig.device.receive(early, at: TEEIORig.pf0)
        == .unsupportedRequest("T=1 request for a TDI in CONFIG_UNLOCKED"))
    #expect(rig.state(TEEIORig.pf0) == .configUnlocked)
    try rig.run(TEEIORig.pf0)
    // T=0 to the non-TEE range (BAR2) is served in RUN.
    let shared = TLP(requesterID: host, address: 0xE010_0040, tBit: false, kind: .memoryRead(length: 8))
    #expect(rig.device.receive(shared, at: TEEIORig.pf0) == .completed)
    #expect(rig.state(TEEIORig.pf0) == .run)
    // T=0 to TEE memory (BAR0): UR and ERROR.
    let private0 = TLP(requesterID: host, address: 0xE000_0010, tBit: false, kind: .memoryWrite(length: 4))
    #expect(
      rig.device.receive(private0, at: TEEIORig.pf0)
        == .unsupportedRequest("T=0 request to TEE memory of a TDI in RUN"))
    #expect(rig.state(TEEIORig.pf0) == .error)

    // A T=0 translation completion in RUN: ERROR; in CONFIG_LOCKED it is legal (§11.2).
    try rig.tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)
    try rig.tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    let completion = TLP(requesterID: host, address: 0x1000, tBit: false, kind: .translationCompletion)
    #expect(rig.device.receive(completion, at: TEEIORig.pf1) == .completed)
    #expect(rig.state(TEEIORig.pf1) == .configLocked)
    try rig.tsm.start(TEEIORig.pf1, for: TEEIORig.guest)
    #expect(
      rig.device.receive(completion, at: TEEIORig.pf1)
        == .unsupportedRequest("T=0 translation completion for a TDI in RUN"))
    #expect(rig.state(TEEIORig.pf1) == .error)
  }
}
