public import IOMMU

// What the vIOMMU needs from the platform's memory, and no more: the platform-owned stage 2 and the
// access-checked read of one guest word. The platform implements both over its memory model; the vIOMMU
// never reaches host memory another way (ARCHITECTURE.md, "Two boundaries that matter").
//
// Guest-physical and host-physical addresses are both `PhysicalAddress` here, as in the IOMMU core
// (whose stage-1 walk produces guest-physical output); argument labels say which is which.

/// Stage 2 of a nested translation: guest-physical → host-physical, owned and kept by the platform.
///
/// The vIOMMU asks it for every table page its stage-1 walk reads, for every command descriptor it
/// fetches, and for the output of every translation — cached stage-1 results included, so a change the
/// platform makes to stage 2 (a page converted, reclaimed or moved) takes effect on the next access
/// without any guest invalidation. The guest cannot see or change stage 2.
public protocol GuestPhysicalMap {
  /// The host-physical address backing guest-physical address `gpa` of `guest` (same offset in its
  /// page), or nil when `gpa` has no stage-2 mapping: the access faults.
  func hostAddress(of gpa: PhysicalAddress, for guest: GuestID) -> PhysicalAddress?
}

/// Reads guest memory on the vIOMMU's behalf through the same access checks as any other read of the
/// platform's memory (page owned by `guest`, integrity intact, …). The vIOMMU reads the guest's stage-1
/// tables and its command queue only through this.
public protocol GuestMemoryReader {
  /// The 64-bit little-endian word at the 8-byte-aligned host-physical `address`, read for `guest`;
  /// nil when the platform refuses the read. A refused read is never retried or worked around: the
  /// walk or the command fetch that needed it fails and says where.
  func readWord(at address: PhysicalAddress, for guest: GuestID) -> UInt64?
}
