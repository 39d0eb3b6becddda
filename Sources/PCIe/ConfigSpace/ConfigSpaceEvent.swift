/// What a configuration write did that the device model or the TDISP layer must react to.
///
/// PCIe 6.x §11.2.6 (SEMANTICS.md §7) moves a locked TDI to ERROR on changes to locked
/// configuration; the events name exactly those changes so the TDISP layer needs no register
/// knowledge: MSE/BME cleared, a BAR written, FLR, PASID/ATS/PRI/ACS/MSI-X control changed, an IDE
/// register written. Control-change events fire only when the register's value actually changed;
/// ``barWritten(index:)`` and ``ideRegisterWritten(offset:)`` fire on every write, because the write
/// itself is the trigger.
public enum ConfigSpaceEvent: Hashable, Sendable {
  /// The access was dropped: nothing changed. Reads of the same shape return 0.
  case ignoredAccess(offset: Int, size: Int, reason: IgnoredAccessReason)
  /// Command.Memory Space Enable went 1 → 0.
  case memorySpaceDisabled
  /// Command.Bus Master Enable went 1 → 0.
  case busMasterDisabled
  /// A write touched BAR register `index` (0...5; for a 64-bit BAR the upper half is `index + 1`).
  case barWritten(index: Int)
  /// Initiate FLR was written as 1 on an FLR-capable function. The configuration space has already
  /// reset its RW state (command, BARs, control registers) to the reset values; the owner resets
  /// the rest of the function (DOE mailbox, MSI-X table, TDI state). No separate MSE/BME events are
  /// reported for the reset.
  case functionLevelReset
  /// MSI-X Message Control (Enable, Function Mask) changed.
  case msixControlChanged(old: UInt16, new: UInt16)
  /// ATS Control (Enable, STU) changed.
  case atsControlChanged(old: UInt16, new: UInt16)
  /// Page Request Control changed (Enable; Reset is reported as a change only if Enable changed).
  case priControlChanged(old: UInt16, new: UInt16)
  /// PASID Control changed.
  case pasidControlChanged(old: UInt16, new: UInt16)
  /// ACS Control changed.
  case acsControlChanged(old: UInt16, new: UInt16)
  /// A write landed in the IDE capability; `offset` is the access's offset relative to the
  /// capability.
  case ideRegisterWritten(offset: Int)
  /// A DW write inside the DOE capability, for the owner's ``DOEMailbox``: `offset` is relative to
  /// the capability (``DOERegister``), ready for ``DOEMailbox/writeRegister(offset:value:)``.
  case doe(offset: Int, value: UInt32)
}

/// Why an access was ignored.
public enum IgnoredAccessReason: Hashable, Sendable {
  /// Size is not 1, 2 or 4 bytes.
  case invalidSize
  /// Offset negative or the access runs past 4 KiB.
  case outOfRange
  /// Not naturally aligned (a configuration request cannot express it; PCIe 6.x §2.2.7).
  case misaligned
  /// A byte or word write inside the DOE capability: the mailbox registers are DW registers.
  case doeRequiresDWordAccess
}
