/// Vocabulary shared by the guest kernel's DMA API and its bookkeeping (SWIOTLBPool, DMADebug).

/// Which way data moves in a streaming mapping: Linux `enum dma_data_direction`
/// (include/linux/dma-direction.h). The direction decides which bounces a sync performs and which
/// CPU accesses are safe while the device owns the buffer.
public enum DMADirection: Hashable, Sendable, CustomStringConvertible {
  /// DMA_BIDIRECTIONAL: the device may read and write the buffer.
  case bidirectional
  /// DMA_TO_DEVICE: the device only reads the buffer.
  case toDevice
  /// DMA_FROM_DEVICE: the device only writes the buffer.
  case fromDevice
  /// DMA_NONE: no data moves; a debugging value Linux refuses to map with.
  case none

  /// Linux's spelling (kernel/dma/debug.c `dir2name`), so reports read like the kernel's.
  public var description: String {
    switch self {
    case .bidirectional: "DMA_BIDIRECTIONAL"
    case .toDevice: "DMA_TO_DEVICE"
    case .fromDevice: "DMA_FROM_DEVICE"
    case .none: "DMA_NONE"
    }
  }
}

/// Where a DMA API call came from, so debug reports can name the mapping's origin (dma-debug prints
/// the driver and a stack).
///
/// Linux stores a five-frame stack trace per entry (kernel/dma/debug.c `stack_entries`); Swift has no
/// cheap portable unwinder, so the call site is captured with `#fileID`/`#line`/`#function` defaults
/// instead, which the DMA API forwards from its own callers.
public struct DMAOrigin: Hashable, Sendable, CustomStringConvertible {
  /// The driver that made the call, when known (dma-debug prints `dev_driver_string(dev)`).
  public var driver: String?
  public var file: String
  public var line: Int
  public var function: String

  public init(driver: String? = nil, file: String = #fileID, line: Int = #line, function: String = #function)
  {
    self.driver = driver
    self.file = file
    self.line = line
    self.function = function
  }

  /// E.g. `nvme at CoveGuestDrivers/Queue.swift:42 in submit()`.
  public var description: String {
    (driver.map { $0 + " " } ?? "") + "at \(file):\(line) in \(function)"
  }
}

/// What kind of call made a mapping (dma-debug's type check: unmap_single on a map_page mapping is
/// reported).
///
/// Linux today folds single and page into one type (`dma_debug_single`); older kernels kept
/// `dma_debug_page` apart, and Cove keeps them apart because mixing `dma_map_page` with
/// `dma_unmap_single` is still a driver bug on architectures where the two differ.
public enum DMAMappingKind: Hashable, Sendable, CustomStringConvertible {
  /// dma_map_single / dma_unmap_single.
  case single
  /// dma_map_page / dma_unmap_page.
  case page
  /// dma_map_sg / dma_unmap_sg.
  case scatterGather
  /// dma_alloc_coherent / dma_free_coherent.
  case coherent

  /// Linux's spelling (kernel/dma/debug.c `type2name`).
  public var description: String {
    switch self {
    case .single: "single"
    case .page: "page"
    case .scatterGather: "scatter-gather"
    case .coherent: "coherent"
    }
  }
}
