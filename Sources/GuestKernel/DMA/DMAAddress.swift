/// A bus address a device is told to use (Linux dma_addr_t): an IOVA with a vIOMMU, otherwise a
/// guest-physical address or its shared alias above the boundary X (SEMANTICS.md §5).
public struct DMAAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ rawValue: UInt64) { self.rawValue = rawValue }
  public static func < (lhs: DMAAddress, rhs: DMAAddress) -> Bool { lhs.rawValue < rhs.rawValue }
  public var description: String { "dma 0x" + String(rawValue, radix: 16) }
}

/// DMA attributes (Linux DMA_ATTR_*).
public struct DMAAttributes: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  /// DMA_ATTR_CC_SHARED: the buffer is already shared with the host, so the device reaches it with
  /// T=0 directly and nothing is bounced.
  public static let ccShared = DMAAttributes(rawValue: 1 << 0)
  /// DMA_ATTR_SKIP_CPU_SYNC: no bounce copy at map and unmap; the driver syncs explicitly.
  public static let skipCPUSync = DMAAttributes(rawValue: 1 << 1)
}

/// One entry of a scatter-gather list (struct scatterlist): a buffer piece in guest memory.
public struct ScatterEntry: Hashable, Sendable {
  public var gpa: UInt64
  public var length: Int
  public init(gpa: UInt64, length: Int) {
    self.gpa = gpa
    self.length = length
  }
}

/// One segment the device is given (sg_dma_address / sg_dma_len): adjacent pieces merged up to the
/// device's maximum segment size.
public struct DMASegment: Hashable, Sendable {
  public var address: DMAAddress
  public var length: Int
  public init(address: DMAAddress, length: Int) {
    self.address = address
    self.length = length
  }
}

/// A mapped scatter-gather list: the entries, each one's bus address (what dma_unmap_sg needs), and
/// the merged segments to program into the device.
public struct MappedScatterList: Hashable, Sendable {
  public var entries: [ScatterEntry]
  public var entryAddresses: [DMAAddress]
  public var segments: [DMASegment]
  public var direction: DMADirection
}
