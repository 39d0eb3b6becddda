import CoveCrypto
import HostPlatform
import IDEKM
import PCIe
import SPDM
import TDISP
import Testing

/// Host config writes reaching a locked TDI's function take it to ERROR (SEMANTICS.md §7), driven by
/// the events the function's config space reports.
@Suite struct ConfigSpaceTriggerTests {
  func lockedRig(flags: TDISPLockFlags = [.lockMSIX]) throws -> (
    DeviceSecurityManagerTests.Rig, DeviceSecurityManagerTests
  ) {
    let suite = DeviceSecurityManagerTests()
    var rig = try suite.rig()
    try suite.programStream(&rig)
    let lock = TDISPRequest.Body.lockInterface(
      TDISPLockInterfaceParameters(flags: flags, defaultStreamID: DeviceSecurityManagerTests.defaultStream))
    _ = try suite.tdisp(&rig, 0x0301, lock)
    #expect(rig.dsm.tdi(0x0301)?.state == .configLocked)
    return (rig, suite)
  }

  func configSpace() throws -> PCIeConfigSpace {
    var builder = PCIeConfigSpaceBuilder(vendorID: 0x1B36, deviceID: 0x0010, classCode: 0x12_0000)
    builder.bars[0] = .memory64(size: 1 << 20, prefetchable: false)
    builder.add(.pciExpress(PCIExpressCapability()), at: 0x40)
    var space = try builder.build()
    _ = space.write(offset: PCIHeaderRegister.command, size: 2, value: 0x0006)  // MSE | BME
    return space
  }

  @Test func clearingBusMasterEnableTakesTheTDIToError() throws {
    let (rig, _) = try lockedRig()
    var space = try configSpace()
    let events = space.write(offset: PCIHeaderRegister.command, size: 2, value: 0x0002)  // BME off
    #expect(events == [.busMasterDisabled])
    rig.dsm.configSpaceEvents(events, function: 0x0301)
    #expect(rig.dsm.tdi(0x0301)?.state == .error)
    #expect(rig.dsm.tdi(0x0300)?.state == .configUnlocked)
  }

  @Test func barWriteTakesTheTDIToError() throws {
    let (rig, _) = try lockedRig()
    var space = try configSpace()
    let events = space.write(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
    #expect(events == [.barWritten(index: 0)])
    rig.dsm.configSpaceEvents(events, function: 0x0301)
    #expect(rig.dsm.tdi(0x0301)?.state == .error)
  }

  @Test func unchangedCommandWriteIsNotATrigger() throws {
    let (rig, _) = try lockedRig()
    var space = try configSpace()
    let events = space.write(offset: PCIHeaderRegister.command, size: 2, value: 0x0006)
    #expect(events.isEmpty)
    rig.dsm.configSpaceEvents(events, function: 0x0301)
    #expect(rig.dsm.tdi(0x0301)?.state == .configLocked)
  }

  @Test func msixChangeMattersOnlyWhenLOCK_MSIXWasSet() throws {
    let (unlockedMSIX, _) = try lockedRig(flags: [])
    unlockedMSIX.dsm.configSpaceEvents([.msixControlChanged(old: 0, new: 0x8000)], function: 0x0301)
    #expect(unlockedMSIX.dsm.tdi(0x0301)?.state == .configLocked)
    let (lockedMSIX, _) = try lockedRig(flags: [.lockMSIX])
    lockedMSIX.dsm.configSpaceEvents([.msixControlChanged(old: 0, new: 0x8000)], function: 0x0301)
    #expect(lockedMSIX.dsm.tdi(0x0301)?.state == .error)
  }

  @Test func flrAndIDERegisterWrites() throws {
    let (rig, _) = try lockedRig()
    rig.dsm.configSpaceEvents([.ideRegisterWritten(offset: 0x10)], function: 0x0300)
    // IDE registers belong to the link: every locked TDI goes to ERROR, whichever function was written.
    #expect(rig.dsm.tdi(0x0301)?.state == .error)
    let (other, _) = try lockedRig()
    other.dsm.configSpaceEvents([.functionLevelReset], function: 0x0301)
    #expect(other.dsm.tdi(0x0301)?.state == .error)
  }
}
