/// The offsets of the vIOMMU's 64-bit registers (HostPlatform/VIOMMU/README.md, "Registers"). Reserved offsets read as
/// zero and ignore writes.
public struct VIOMMURegister: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// RO. Bits 7:0 interface version (1); bit 8: 39-bit tables; bit 9: 48-bit tables; bits 31:16 fault
  /// queue capacity; bits 36:32 PASID width (20); bits 42:40 largest command-queue size QS (7).
  public static let capabilities = VIOMMURegister(rawValue: 0x00)
  /// RW. Bits 51:12 guest-physical base of the command queue; bits 2:0 QS, the queue is 2^QS 4 KiB
  /// pages of 128 descriptors. Other bits read as zero. Writing resets HEAD and TAIL to 0, clears CQE
  /// and enables the queue.
  public static let commandQueueBase = VIOMMURegister(rawValue: 0x08)
  /// RO. Index of the next descriptor the vIOMMU executes.
  public static let commandQueueHead = VIOMMURegister(rawValue: 0x10)
  /// RW. Index one past the last descriptor the guest wrote. A write executes HEAD..<TAIL in order
  /// before it returns, so the guest needs no wait descriptor.
  public static let commandQueueTail = VIOMMURegister(rawValue: 0x18)
  /// Bit 0 CQE (RW1C): the command queue stopped on an error; bit 1 FPP (RO): fault records pending;
  /// bit 2 FO (RW1C): fault overflow, no fault is recorded while it is set; bits 15:8 (RO) the
  /// command-queue error code while CQE is set.
  public static let status = VIOMMURegister(rawValue: 0x20)
  /// RO. While CQE is set: for an invalid descriptor, the byte offset of the offending field; for a
  /// refused command, its errno; for a failed fetch, the guest-physical address of the word; for a
  /// tail out of range, the tail written.
  public static let commandQueueErrorDetail = VIOMMURegister(rawValue: 0x28)
  /// RO. Fault records pending.
  public static let faultCount = VIOMMURegister(rawValue: 0x30)
  /// RO, four registers 0x38, 0x40, 0x48, 0x50: the oldest pending fault record's 32 bytes as
  /// little-endian words; zero when none is pending.
  public static let faultRecord = VIOMMURegister(rawValue: 0x38)
  /// WO. Any write removes the oldest pending fault record.
  public static let faultPop = VIOMMURegister(rawValue: 0x58)

  public var description: String {
    switch self {
    case .capabilities: "CAP"
    case .commandQueueBase: "CQ_BASE"
    case .commandQueueHead: "CQ_HEAD"
    case .commandQueueTail: "CQ_TAIL"
    case .status: "STATUS"
    case .commandQueueErrorDetail: "CQ_ERROR_DETAIL"
    case .faultCount: "FAULT_COUNT"
    case .faultPop: "FAULT_POP"
    default:
      (0x38...0x50).contains(rawValue) && rawValue % 8 == 0
        ? "FAULT_RECORD[\((rawValue - 0x38) / 8)]" : "register 0x" + String(rawValue, radix: 16)
    }
  }
}

/// The STATUS register's bits.
public enum VIOMMUStatus {
  public static let commandQueueError: UInt64 = 1 << 0
  public static let faultPending: UInt64 = 1 << 1
  public static let faultOverflow: UInt64 = 1 << 2
  /// Bits 15:8: the command-queue error code.
  public static let errorCodeShift: UInt64 = 8
}

/// Why the command queue stopped (STATUS bits 15:8). A struct (STYLE.md rule 3).
public struct VIOMMUCommandQueueErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// The descriptor at HEAD does not decode (VT-d: invalid descriptor, IQE).
  public static let invalidDescriptor = VIOMMUCommandQueueErrorCode(rawValue: 0x01)
  /// A word of the descriptor at HEAD could not be read: its page has no stage-2 mapping or the
  /// platform refused the read (VT-d: error fetching a descriptor, IQE).
  public static let fetchFailed = VIOMMUCommandQueueErrorCode(rawValue: 0x02)
  /// The descriptor at HEAD decoded but the command was refused (its errno is the detail).
  public static let commandRefused = VIOMMUCommandQueueErrorCode(rawValue: 0x03)
  /// TAIL was written with an index beyond the queue; TAIL keeps its old value.
  public static let tailOutOfRange = VIOMMUCommandQueueErrorCode(rawValue: 0x04)
  /// TAIL was written before CQ_BASE.
  public static let notConfigured = VIOMMUCommandQueueErrorCode(rawValue: 0x05)

  public var description: String {
    switch self {
    case .invalidDescriptor: "invalid descriptor"
    case .fetchFailed: "descriptor fetch failed"
    case .commandRefused: "command refused"
    case .tailOutOfRange: "tail out of range"
    case .notConfigured: "queue not configured"
    default: "error 0x" + String(rawValue, radix: 16)
    }
  }
}
