public import CoveWire
public import GuestABI
public import IOMMU

/// A command-queue error in full, for the platform's logs and tests; the guest sees its code and
/// detail in the registers.
public struct VIOMMUCommandQueueError: Error, Hashable, Sendable, CustomStringConvertible {
  public enum Cause: Hashable, Sendable {
    case invalidDescriptor(WireError)
    /// The guest-physical address of the word that could not be read.
    case fetchFailed(PhysicalAddress)
    case commandRefused(VIOMMUCommand, IOMMUError)
    case tailOutOfRange(UInt64)
    case notConfigured
  }

  /// The descriptor index HEAD pointed at.
  public var head: UInt64
  public var cause: Cause

  public init(head: UInt64, cause: Cause) {
    self.head = head
    self.cause = cause
  }

  public var code: VIOMMUCommandQueueErrorCode {
    switch cause {
    case .invalidDescriptor: .invalidDescriptor
    case .fetchFailed: .fetchFailed
    case .commandRefused: .commandRefused
    case .tailOutOfRange: .tailOutOfRange
    case .notConfigured: .notConfigured
    }
  }

  /// The CQ_ERROR_DETAIL register's value.
  public var detail: UInt64 {
    switch cause {
    case .invalidDescriptor(let error): UInt64(error.offset)
    case .fetchFailed(let gpa): gpa.rawValue
    case .commandRefused(_, let error): UInt64(UInt32(bitPattern: error.errno.rawValue))
    case .tailOutOfRange(let tail): tail
    case .notConfigured: 0
    }
  }

  public var description: String {
    let what: String
    switch cause {
    case .invalidDescriptor(let error): what = "invalid descriptor: \(error)"
    case .fetchFailed(let gpa): what = "descriptor fetch failed at gpa 0x\(String(gpa.rawValue, radix: 16))"
    case .commandRefused(let command, let error): what = "\(command) refused: \(error)"
    case .tailOutOfRange(let tail): what = "tail \(tail) beyond the queue"
    case .notConfigured: what = "tail written before the queue base"
    }
    return "command queue at head \(head): \(what)"
  }
}

/// The command queue's registers.
struct CommandQueueState {
  /// CQ_BASE as written (reserved bits cleared); nil until the guest writes it.
  var base: UInt64?
  var head: UInt64 = 0
  var tail: UInt64 = 0
  /// Set while CQE is: the queue executes nothing until the guest clears CQE.
  var error: VIOMMUCommandQueueError?

  static let baseMask: UInt64 = 0x000F_FFFF_FFFF_F000
  static let sizeMask: UInt64 = 0x7
  static let descriptorsPerPage: UInt64 = 4096 / UInt64(VIOMMUCommand.descriptorSize)

  /// Descriptors the queue holds.
  var entries: UInt64 { Self.descriptorsPerPage << ((base ?? 0) & Self.sizeMask) }
}

extension VIOMMU {
  /// The interface version in CAP bits 7:0.
  public static let interfaceVersion: UInt64 = 1

  /// The last command-queue error, while CQE is set.
  public var commandQueueError: VIOMMUCommandQueueError? { commandQueue.error }

  /// A 64-bit register read (README.md, "Registers").
  public func readRegister(_ register: VIOMMURegister) -> UInt64 {
    switch register {
    case .capabilities:
      return Self.interfaceVersion | 1 << 8 | 1 << 9 | UInt64(faultQueue.capacity) << 16 | 20 << 32 | 7 << 40
    case .commandQueueBase: return commandQueue.base ?? 0
    case .commandQueueHead: return commandQueue.head
    case .commandQueueTail: return commandQueue.tail
    case .status:
      var value: UInt64 = 0
      if let error = commandQueue.error {
        value |= VIOMMUStatus.commandQueueError | UInt64(error.code.rawValue) << VIOMMUStatus.errorCodeShift
      }
      if faultQueue.count > 0 { value |= VIOMMUStatus.faultPending }
      if faultQueue.overflowed { value |= VIOMMUStatus.faultOverflow }
      return value
    case .commandQueueErrorDetail: return commandQueue.error?.detail ?? 0
    case .faultCount: return UInt64(faultQueue.count)
    default:
      let offset = register.rawValue
      guard (0x38...0x50).contains(offset), offset % 8 == 0, let oldest = faultQueue.oldest else { return 0 }
      return oldest.words[Int((offset - 0x38) / 8)]
    }
  }

  /// A 64-bit register write (README.md, "Registers"). Writes to read-only or reserved registers are
  /// ignored, as MMIO writes are; nothing a guest writes can crash the platform.
  public func writeRegister(_ register: VIOMMURegister, _ value: UInt64) {
    switch register {
    case .commandQueueBase:
      commandQueue.base = value & (CommandQueueState.baseMask | CommandQueueState.sizeMask)
      commandQueue.head = 0
      commandQueue.tail = 0
      commandQueue.error = nil
    case .commandQueueTail:
      guard commandQueue.error == nil else {
        // Stopped: a new tail is taken (if it fits) and acted on when CQE is cleared.
        if commandQueue.base != nil, value < commandQueue.entries { commandQueue.tail = value }
        return
      }
      guard commandQueue.base != nil else {
        commandQueue.error = VIOMMUCommandQueueError(head: commandQueue.head, cause: .notConfigured)
        return
      }
      guard value < commandQueue.entries else {
        commandQueue.error = VIOMMUCommandQueueError(head: commandQueue.head, cause: .tailOutOfRange(value))
        return
      }
      commandQueue.tail = value
      runCommandQueue()
    case .status:
      if value & VIOMMUStatus.faultOverflow != 0 { faultQueue.clearOverflow() }
      if value & VIOMMUStatus.commandQueueError != 0, commandQueue.error != nil {
        commandQueue.error = nil
        runCommandQueue()
      }
    case .faultPop:
      faultQueue.pop()
    default:
      return
    }
  }

  /// Executes descriptors HEAD..<TAIL; stops at the first error with HEAD on the failing descriptor
  /// (descriptors before it have taken effect, none after it has).
  private func runCommandQueue() {
    guard let base = commandQueue.base else { return }
    let ring = base & CommandQueueState.baseMask
    while commandQueue.head != commandQueue.tail {
      let head = commandQueue.head
      let descriptor = ring + head * UInt64(VIOMMUCommand.descriptorSize)
      var bytes: [UInt8] = []
      bytes.reserveCapacity(VIOMMUCommand.descriptorSize)
      for word in 0..<UInt64(VIOMMUCommand.descriptorSize / 8) {
        let gpa = PhysicalAddress(descriptor + word * 8)
        guard let host = stage2Map.hostAddress(of: gpa, for: guest),
          let value = memory.readWord(at: host, for: guest)
        else {
          commandQueue.error = VIOMMUCommandQueueError(head: head, cause: .fetchFailed(gpa))
          return
        }
        for byte in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte)))) }
      }
      let command: VIOMMUCommand
      do {
        command = try VIOMMUCommand(parsing: bytes)
      } catch {
        commandQueue.error = VIOMMUCommandQueueError(head: head, cause: .invalidDescriptor(error))
        return
      }
      do {
        try execute(command)
      } catch {
        commandQueue.error = VIOMMUCommandQueueError(head: head, cause: .commandRefused(command, error))
        return
      }
      commandQueue.head = (head + 1) % commandQueue.entries
    }
  }
}
