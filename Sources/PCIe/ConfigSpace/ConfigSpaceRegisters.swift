/// Capability IDs of the standard (PCI-compatible) capability list, PCIe 6.x §7.5.3 / PCI Code and ID
/// Assignment §2. A RawRepresentable struct so an ID Cove does not model still survives a list walk.
public struct PCICapabilityID: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// PCI Express Capability (PCIe 6.x §7.5.3).
  public static let pciExpress = PCICapabilityID(rawValue: 0x10)
  /// MSI-X Capability (PCIe 6.x §7.7.2).
  public static let msix = PCICapabilityID(rawValue: 0x11)
}

/// Extended capability IDs, header bits 15:0 (PCIe 6.x §7.6.3, PCI Code and ID Assignment §3).
public struct PCIExtendedCapabilityID: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// Access Control Services (PCIe 6.x §7.7.11).
  public static let acs = PCIExtendedCapabilityID(rawValue: 0x000D)
  /// Address Translation Services (PCIe 6.x §10.5.1).
  public static let ats = PCIExtendedCapabilityID(rawValue: 0x000F)
  /// Page Request Interface (PCIe 6.x §10.5.2).
  public static let pri = PCIExtendedCapabilityID(rawValue: 0x0013)
  /// Process Address Space ID (PCIe 6.x §7.8.9).
  public static let pasid = PCIExtendedCapabilityID(rawValue: 0x001B)
  /// Data Object Exchange (PCIe 6.x §7.9.24); same value as ``DOERegister/capabilityID``.
  public static let doe = PCIExtendedCapabilityID(rawValue: DOERegister.capabilityID)
  /// Integrity and Data Encryption (PCIe 6.x §7.9.26).
  public static let ide = PCIExtendedCapabilityID(rawValue: 0x0030)
}

/// Type 0 configuration header register offsets (PCIe 6.x §7.5.1.1, §7.5.1.2).
public enum PCIHeaderRegister {
  public static let vendorID = 0x00
  public static let deviceID = 0x02
  public static let command = 0x04
  public static let status = 0x06
  public static let revisionID = 0x08
  /// Class code: programming interface (0x09), sub-class (0x0A), base class (0x0B).
  public static let classCode = 0x09
  public static let cacheLineSize = 0x0C
  public static let latencyTimer = 0x0D
  public static let headerType = 0x0E
  public static let bist = 0x0F
  /// BAR n is at `bar0 + 4 * n`, n in 0...5.
  public static let bar0 = 0x10
  public static let subsystemVendorID = 0x2C
  public static let subsystemID = 0x2E
  public static let expansionROM = 0x30
  public static let capabilitiesPointer = 0x34
  public static let interruptLine = 0x3C
  public static let interruptPin = 0x3D
  /// First byte after the type 0 header: where standard capabilities may start.
  public static let end = 0x40
  /// Where the extended capability list starts (PCIe 6.x §7.6).
  public static let extendedCapabilitiesStart = 0x100

  /// Header type bit 7: the device has more than one function.
  public static let headerTypeMultiFunction: UInt8 = 0x80
}

/// Command register bits (PCIe 6.x §7.5.1.1.3).
public struct PCICommand: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// I/O Space Enable; hardwired to 0 unless the function has an I/O BAR.
  public static let ioSpace = PCICommand(rawValue: 1 << 0)
  /// Memory Space Enable. Clearing it while a TDI is locked is a TDISP ERROR (PCIe 6.x §11.2.6).
  public static let memorySpace = PCICommand(rawValue: 1 << 1)
  /// Bus Master Enable. Clearing it while a TDI is locked is a TDISP ERROR.
  public static let busMaster = PCICommand(rawValue: 1 << 2)
  /// Parity Error Response.
  public static let parityErrorResponse = PCICommand(rawValue: 1 << 6)
  /// SERR# Enable.
  public static let serr = PCICommand(rawValue: 1 << 8)
  /// Interrupt Disable (INTx).
  public static let interruptDisable = PCICommand(rawValue: 1 << 10)
}

/// Status register bits (PCIe 6.x §7.5.1.1.4).
public struct PCIStatus: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// Interrupt Status (RO): an INTx is asserted.
  public static let interruptAsserted = PCIStatus(rawValue: 1 << 3)
  /// Capabilities List (RO, hardwired to 1 in PCIe).
  public static let capabilitiesList = PCIStatus(rawValue: 1 << 4)
  /// Master Data Parity Error (RW1C).
  public static let masterDataParityError = PCIStatus(rawValue: 1 << 8)
  /// Signaled Target Abort (RW1C).
  public static let signaledTargetAbort = PCIStatus(rawValue: 1 << 11)
  /// Received Target Abort (RW1C).
  public static let receivedTargetAbort = PCIStatus(rawValue: 1 << 12)
  /// Received Master Abort (RW1C).
  public static let receivedMasterAbort = PCIStatus(rawValue: 1 << 13)
  /// Signaled System Error (RW1C).
  public static let signaledSystemError = PCIStatus(rawValue: 1 << 14)
  /// Detected Parity Error (RW1C).
  public static let detectedParityError = PCIStatus(rawValue: 1 << 15)

  /// Every RW1C bit of the register.
  public static let writeOneToClear: PCIStatus = [
    .masterDataParityError, .signaledTargetAbort, .receivedTargetAbort, .receivedMasterAbort,
    .signaledSystemError, .detectedParityError,
  ]
}

/// PCI Express Capability register offsets, relative to the capability (PCIe 6.x §7.5.3).
public enum PCIExpressCapabilityRegister {
  public static let capabilities = 0x02
  public static let deviceCapabilities = 0x04
  public static let deviceControl = 0x08
  public static let deviceStatus = 0x0A
  public static let linkCapabilities = 0x0C
  public static let linkControl = 0x10
  public static let linkStatus = 0x12
  public static let deviceCapabilities2 = 0x24
  public static let deviceControl2 = 0x28
  /// Size of the endpoint (version 2) capability structure: through Link Status 2 at 0x32.
  public static let size = 0x3C

  /// Device Capabilities bit 28: Function Level Reset Capability.
  public static let deviceCapabilitiesFLR: UInt32 = 1 << 28
  /// Device Capabilities bit 15: Role-Based Error Reporting, must be 1 (PCIe 6.x §7.5.3.3).
  public static let deviceCapabilitiesRoleBasedErrorReporting: UInt32 = 1 << 15
  /// Device Control bit 15: Initiate Function Level Reset; always reads 0 (PCIe 6.x §7.5.3.4).
  public static let deviceControlInitiateFLR: UInt16 = 1 << 15
}

/// MSI-X Capability register offsets, relative to the capability (PCIe 6.x §7.7.2).
public enum MSIXCapabilityRegister {
  public static let messageControl = 0x02
  public static let tableOffsetBIR = 0x04
  public static let pbaOffsetBIR = 0x08
  public static let size = 0x0C

  /// Message Control bit 15: MSI-X Enable.
  public static let enable: UInt16 = 1 << 15
  /// Message Control bit 14: Function Mask.
  public static let functionMask: UInt16 = 1 << 14
  /// Message Control bits 10:0: Table Size, encoded as N-1.
  public static let tableSizeMask: UInt16 = 0x07FF
}

/// ACS Extended Capability register offsets (PCIe 6.x §7.7.11).
public enum ACSCapabilityRegister {
  /// ACS Capability Register, 16 bits.
  public static let capability = 0x04
  /// ACS Control Register, 16 bits; bit n enables the feature of capability bit n (bits 6:0).
  public static let control = 0x06
  /// Size without an egress control vector.
  public static let size = 0x08
}

/// ATS Extended Capability register offsets (PCIe 6.x §10.5.1).
public enum ATSCapabilityRegister {
  /// ATS Capability Register, 16 bits: Invalidate Queue Depth 4:0, Page Aligned Request 5,
  /// Global Invalidate Supported 6, Relaxed Ordering 7.
  public static let capability = 0x04
  /// ATS Control Register, 16 bits: Smallest Translation Unit 4:0, Enable 15.
  public static let control = 0x06
  public static let size = 0x08
  public static let enable: UInt16 = 1 << 15
}

/// Page Request Extended Capability register offsets (PCIe 6.x §10.5.2).
public enum PRICapabilityRegister {
  /// Page Request Control, 16 bits: Enable 0, Reset 1 (reads 0).
  public static let control = 0x04
  /// Page Request Status, 16 bits: Response Failure 0 (RW1C), Unexpected Page Request Group Index 1
  /// (RW1C), Stopped 8 (RO), PRG Response PASID Required 15 (RO).
  public static let status = 0x06
  public static let outstandingRequestCapacity = 0x08
  public static let outstandingRequestAllocation = 0x0C
  public static let size = 0x10

  public static let enable: UInt16 = 1 << 0
  public static let reset: UInt16 = 1 << 1
  public static let statusStopped: UInt16 = 1 << 8
  public static let statusPASIDRequired: UInt16 = 1 << 15
}

/// PASID Extended Capability register offsets (PCIe 6.x §7.8.9).
public enum PASIDCapabilityRegister {
  /// PASID Capability, 16 bits: Execute Permission Supported 1, Privileged Mode Supported 2,
  /// Max PASID Width 12:8.
  public static let capability = 0x04
  /// PASID Control, 16 bits: PASID Enable 0, Execute Permission Enable 1, Privileged Mode Enable 2.
  public static let control = 0x06
  public static let size = 0x08
  public static let enable: UInt16 = 1 << 0
}

/// IDE Extended Capability register offsets (PCIe 6.x §7.9.26).
///
/// Cove models Selective IDE Streams only (no Link IDE Stream register blocks, Capability bit 0
/// clear), so the first Selective IDE Stream register block starts right after the IDE Control
/// register, at 0x0C. Each block is ``selectiveStreamBlockHeaderSize`` bytes followed by
/// ``addressAssociationBlockSize`` bytes per address association block.
public enum IDECapabilityRegister {
  /// IDE Capability Register (RO): Link IDE Supported 0, Selective IDE Supported 1, IDE_KM
  /// Supported 6, Supported Algorithms 12:8, Number of Link IDE TCs 15:13 (N-1), Number of
  /// Selective IDE Streams 23:16 (N-1).
  public static let capability = 0x04
  /// IDE Control Register: Flow-Through IDE Stream Enabled bit 2 (hardwired 0 here).
  public static let control = 0x08
  /// Offset of the first Selective IDE Stream register block when there are no Link IDE blocks.
  public static let firstSelectiveStream = 0x0C

  public static let capabilitySelectiveSupported: UInt32 = 1 << 1
  public static let capabilityIDEKMSupported: UInt32 = 1 << 6

  /// Register offsets inside a Selective IDE Stream register block.
  public static let streamCapability = 0x00
  public static let streamControl = 0x04
  public static let streamStatus = 0x08
  public static let streamRIDAssociation1 = 0x0C
  public static let streamRIDAssociation2 = 0x10
  public static let selectiveStreamBlockHeaderSize = 0x14
  /// Three registers per address association block: base/limit low + valid, limit high, base high.
  public static let addressAssociationBlockSize = 0x0C

  /// Selective IDE Stream Control writable bits: Enable 0, Tx aggregation modes 7:2, PCRC Enable 8,
  /// Selective IDE for Configuration Requests 9, Selected Algorithm 18:14, TC 21:19, Default Stream
  /// 22, Stream ID 31:24. Bits 1, 13:10 and 23 are treated as reserved.
  public static let streamControlWritable: UInt32 = 0xFF7F_C3FD
  /// Selective IDE Stream Control bit 0.
  public static let streamControlEnable: UInt32 = 1 << 0
  /// Selective IDE Stream Status bits 3:0: IDE Stream State (0 Insecure, 2 Secure).
  public static let streamStatusStateMask: UInt32 = 0xF
  /// Selective IDE Stream Status bit 31: Received Integrity Check Fail Message (RW1C).
  public static let streamStatusIntegrityCheckFail: UInt32 = 1 << 31
  /// RID Association 1: RID Limit 23:8.
  public static let ridAssociation1Writable: UInt32 = 0x00FF_FF00
  /// RID Association 2: Valid 0, RID Base 23:8, Segment Base 31:24 (PCIe 6.1+).
  public static let ridAssociation2Writable: UInt32 = 0xFFFF_FF01
  /// Address Association 1: Valid 0, Memory Base Lower 19:8, Memory Limit Lower 31:20.
  public static let addressAssociation1Writable: UInt32 = 0xFFFF_FF01
}
