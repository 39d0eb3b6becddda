public import CoveCrypto
import IDEKM
public import PCIe
public import SPDM
public import TDISP

/// A ready-made TEE-IO device on a root port, as a platform enumerates it: the shape Cove's tests,
/// benchmarks and built-in scenario use when they need "a TDISP device" rather than a particular one.
///
/// - Function 0 (the DSM): DOE, IDE (one selective stream), MSI-X, PCIe capability with FLR;
///   BAR0 64 KiB of registers with the MSI-X table and PBA in its last pages, BAR2 1 MiB of memory.
/// - Each further PF: BAR0 64 KiB, PCIe capability with FLR (no DOE: reached through the DSM).
/// - VFs of PF 0: BAR0 16 KiB each.
/// - Every function: a PASID capability (20 bits) and an ACS capability, unless configured without.
/// BARs are assigned from `mmioBase` upwards and memory space and bus mastering are enabled, as the
/// host's enumeration leaves them.
public struct TEEIODeviceTemplate: Sendable {
  public var bus: UInt8
  public var physicalFunctions: Int
  public var virtualFunctions: Int
  public var streamID: UInt8
  public var mmioBase: UInt64
  public var lockFlags: TDISPLockFlags
  public var supportedLockFlags: TDISPLockFlags
  public var reportTweaks: InterfaceReportTweaks
  public var compatibility: TDICompatibility
  /// Whether every function has an ACS capability (isolated from its siblings, so each is an IOMMU
  /// group of its own), and the PASID width each function's PASID capability offers (0: none).
  public var acs: Bool
  public var pasidWidth: UInt8

  public init(
    bus: UInt8 = 0x03, physicalFunctions: Int = 2, virtualFunctions: Int = 0, streamID: UInt8 = 1,
    mmioBase: UInt64 = 0xE000_0000, lockFlags: TDISPLockFlags = [.noFirmwareUpdate],
    supportedLockFlags: TDISPLockFlags = [.noFirmwareUpdate, .systemCacheLineSize, .lockMSIX, .bindP2P],
    reportTweaks: InterfaceReportTweaks = .none, compatibility: TDICompatibility = .specification,
    acs: Bool = true, pasidWidth: UInt8 = 20
  ) {
    precondition(pasidWidth <= 20, "PASIDs are at most 20 bits (PCIe 6.x §6.20)")
    self.acs = acs
    self.pasidWidth = pasidWidth
    precondition((1...8).contains(physicalFunctions) && physicalFunctions + virtualFunctions <= 8)
    self.bus = bus
    self.physicalFunctions = physicalFunctions
    self.virtualFunctions = virtualFunctions
    self.streamID = streamID
    self.mmioBase = mmioBase
    self.lockFlags = lockFlags
    self.supportedLockFlags = supportedLockFlags
    self.reportTweaks = reportTweaks
    self.compatibility = compatibility
  }

  /// The functions' Requester IDs: PFs at functions 0…, then VFs (same device number, for a
  /// compact non-ARI layout).
  public var functionIDs: [RequesterID] {
    (0..<(physicalFunctions + virtualFunctions)).map {
      BDF(bus: bus, device: 0, function: UInt8($0)).requesterID
    }
  }

  public var rootPortID: RequesterID { BDF(bus: 0, device: 1, function: 0).requesterID }

  /// The built device, its root port, and the TSM configuration that drives them.
  public func build(identity: SPDMResponderConfiguration, entropy: any EntropySource) throws -> (
    device: TDISPDevice, rootPort: IDERootPort, tsm: TSMDeviceConfiguration
  ) {
    let ids = functionIDs
    var next = mmioBase
    var functions: [TDISPFunctionDescription] = []
    for (index, id) in ids.enumerated() {
      var builder = PCIeConfigSpaceBuilder(vendorID: 0x1B36, deviceID: 0x0C0E, classCode: 0x08_8000)
      builder.multiFunction = ids.count > 1
      builder.add(.pciExpress(PCIExpressCapability()), at: 0x40)
      let isVF = index >= physicalFunctions
      if index == 0 {
        builder.bars[0] = .memory64(size: 0x1_0000)
        builder.bars[2] = .memory64(size: 0x10_0000)
        builder.add(
          .msix(
            MSIXCapability(tableSize: 16, tableBIR: 0, tableOffset: 0xE000, pbaBIR: 0, pbaOffset: 0xF000)),
          at: 0x80)
        builder.add(.doe(DOECapability()), at: 0x100)
        builder.add(.ide(IDECapability(selectiveStreamAddressBlocks: [1])), at: 0x118)
      } else {
        builder.bars[0] = .memory64(size: isVF ? 0x4000 : 0x1_0000)
      }
      // After the DSM's DOE and IDE capabilities; the extended list starts at 0x100 otherwise.
      var extended = index == 0 ? 0x200 : 0x100
      if pasidWidth > 0 {
        builder.add(.pasid(PASIDCapability(maxWidth: pasidWidth)), at: extended)
        extended += 0x10
      }
      if acs { builder.add(.acs(ACSCapability(capabilities: 0x1F)), at: extended) }
      var space = try builder.build()
      for (bar, definition) in space.layout.bars.enumerated() {
        guard let definition else { continue }
        // A BAR decodes a naturally aligned window of its size.
        let alignment = max(definition.size, 0x1000)
        let address = (next + alignment - 1) & ~(alignment - 1)
        next = address + alignment
        _ = space.write(
          offset: PCIHeaderRegister.bar0 + 4 * bar, size: 4, value: UInt32(truncatingIfNeeded: address))
        _ = space.write(offset: PCIHeaderRegister.bar0 + 4 * bar + 4, size: 4, value: UInt32(address >> 32))
      }
      _ = space.write(offset: PCIHeaderRegister.command, size: 2, value: 0x0006)  // MSE | BME
      functions.append(
        TDISPFunctionDescription(
          requesterID: id, configSpace: space, physicalFunction: isVF ? ids[0] : nil,
          capabilities: TDISPCapabilities(
            supportedRequests: TDISPRequestCode.allKnown, lockInterfaceFlagsSupported: supportedLockFlags,
            deviceAddressWidth: 52),
          reportTweaks: reportTweaks, compatibility: compatibility))
    }
    let port = IDEKMPort(
      deviceFunction: ids[0].rawValue.lowByte, bus: bus,
      capability: IDECapabilityRegister(linkStreams: 0, selectiveStreams: 1), selectiveBlocks: [.init()],
      streams: [streamID: .selective])
    let device = try TDISPDevice(
      functions: functions, responder: identity, idePorts: [port], entropy: entropy)
    let rootPort = IDERootPort(requesterID: rootPortID, streams: [streamID: .selective])
    let tsm = TSMDeviceConfiguration(
      dsmFunction: ids[0], interfaces: ids, streamID: streamID, lockFlags: lockFlags)
    return (device, rootPort, tsm)
  }
}

extension UInt16 {
  fileprivate var lowByte: UInt8 { UInt8(truncatingIfNeeded: self) }
}
