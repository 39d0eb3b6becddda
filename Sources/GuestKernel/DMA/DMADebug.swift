public import PCIe

/// One DMA API misuse found by `DMADebug`: what kind, on which mapping, where the mapping was made and
/// which call was wrong. Linux prints these as `DMA-API: <driver> <device>: <message>` warnings
/// followed by the mapping's stack (kernel/dma/debug.c `err_printk`).
public struct DMADebugReport: Hashable, Sendable, CustomStringConvertible {
  public enum Kind: Hashable, Sendable {
    /// Unmap or sync of a DMA address with no live mapping ("has not allocated").
    case notMapped
    /// Unmap of a mapping that was unmapped recently (found in the unmap history).
    case doubleUnmap
    /// Unmap with a size other than the mapping's.
    case wrongSize
    /// Unmap with a direction other than the mapping's.
    case wrongDirection
    /// Unmap through the wrong function (e.g. unmap_single of a map_page mapping).
    case wrongKind
    /// Sync of a range that does not lie inside the mapping it starts in.
    case syncOutOfRange
    /// Sync with a direction other than the (not bidirectional) mapping's.
    case syncWrongDirection
    /// The CPU touched a buffer while the device owned it.
    case cpuAccessWhileDeviceOwned
    /// A mapping still live when its driver was removed.
    case leaked
    /// unmap_sg with another entry count than map_sg was given.
    case wrongSGCount
  }

  public var kind: Kind
  public var device: RequesterID
  /// The DMA address the report is about: the call's, or the mapping's when the call named a CPU
  /// address or none.
  public var dmaAddress: UInt64
  /// Where the mapping was made (nil when there is none).
  public var mappingOrigin: DMAOrigin?
  /// The offending call (nil for leaks, found at driver removal rather than by a call).
  public var callOrigin: DMAOrigin?
  /// Linux's words where Linux has a check (kernel/dma/debug.c), so reports can be compared.
  public var message: String

  public init(
    kind: Kind, device: RequesterID, dmaAddress: UInt64, mappingOrigin: DMAOrigin?, callOrigin: DMAOrigin?,
    message: String
  ) {
    self.kind = kind
    self.device = device
    self.dmaAddress = dmaAddress
    self.mappingOrigin = mappingOrigin
    self.callOrigin = callOrigin
    self.message = message
  }

  /// Like Linux's warning: `DMA-API: <driver> <device>: <message>`, then where it was called and
  /// where the mapping was made.
  public var description: String {
    let driver = callOrigin?.driver ?? mappingOrigin?.driver
    var text = "DMA-API: " + (driver.map { $0 + " " } ?? "") + "\(device): " + message
    if let callOrigin { text += "; called \(callOrigin)" }
    if let mappingOrigin { text += "; mapped \(mappingOrigin)" }
    return text
  }
}

/// The guest kernel's DMA API debugging (CONFIG_DMA_API_DEBUG, kernel/dma/debug.c, formerly
/// lib/dma-debug.c): it records every live mapping and checks each unmap, sync and CPU access
/// against it, so driver bugs that real hardware turns into silent corruption become reports that
/// name the mapping's origin. It does no memory access itself; the DMA API calls it.
///
/// Live mappings are kept in a dictionary keyed by (device, DMA address), as Linux hashes them by DMA
/// address, so a map/unmap pair costs O(1). The sync-containment and CPU-access checks scan when the
/// exact key does not match; they are debugging paths.
///
/// Beyond Linux, it also tracks who owns each streaming buffer (the device from map and
/// sync-for-device, the CPU from sync-for-CPU), reports CPU accesses to device-owned buffers (as
/// `debug_dma_assert_idle` did for CoW faults, v3.19–v5.8), and keeps a ring of recent unmaps so a
/// double unmap names the first one instead of "has not allocated".
///
/// Single-threaded like the rest of the simulation core (STYLE.md rule 8).
public final class DMADebug {
  /// A live mapping as dma-debug records it (`struct dma_debug_entry`).
  public struct Entry: Hashable, Sendable {
    /// Who may touch the buffer now. Streaming DMA hands a buffer back and forth: the device owns it
    /// after map and sync-for-device, the CPU after sync-for-CPU (Documentation/core-api/dma-api-howto.rst).
    public enum Owner: Hashable, Sendable {
      case device
      case cpu
    }

    public var device: RequesterID
    public var dmaAddress: UInt64
    /// The guest-physical address of the buffer the driver mapped (`paddr`).
    public var cpuAddress: UInt64
    public var size: Int
    public var direction: DMADirection
    public var kind: DMAMappingKind
    /// For scatter-gather, the entry count the driver passed to map_sg (`sg_call_ents`); 0 otherwise.
    public var sgCount: Int
    public var origin: DMAOrigin
    public var owner: Owner

    public init(
      device: RequesterID, dmaAddress: UInt64, cpuAddress: UInt64, size: Int, direction: DMADirection,
      kind: DMAMappingKind, sgCount: Int, origin: DMAOrigin, owner: Owner
    ) {
      self.device = device
      self.dmaAddress = dmaAddress
      self.cpuAddress = cpuAddress
      self.size = size
      self.direction = direction
      self.kind = kind
      self.sgCount = sgCount
      self.origin = origin
      self.owner = owner
    }
  }

  private struct Key: Hashable {
    var device: RequesterID
    var dmaAddress: UInt64
  }

  /// The mappings at one key. Without an IOMMU the same buffer mapped twice gets the same DMA address
  /// twice, so Linux keeps duplicates in its hash bucket; `.many` is that rare case, `.one` keeps the
  /// common case free of a per-mapping array.
  private enum Bucket {
    case one(Entry)
    case many([Entry])

    var entries: [Entry] {
      switch self {
      case .one(let entry): [entry]
      case .many(let entries): entries
      }
    }

    /// Visits the entries without building an array for the common `.one` case (the scans run on
    /// every CPU-access check).
    func visit(_ body: (Entry) -> Void) {
      switch self {
      case .one(let entry): body(entry)
      case .many(let entries): entries.forEach(body)
      }
    }

    init?(_ entries: [Entry]) {
      switch entries.count {
      case 0: return nil
      case 1: self = .one(entries[0])
      default: self = .many(entries)
      }
    }
  }

  /// A recent unmap, so a second unmap of the same mapping can name the first.
  private struct UnmapRecord {
    var key: Key
    var mappingOrigin: DMAOrigin
    var unmapOrigin: DMAOrigin
  }

  /// When false every check returns [] and nothing is recorded (dma-debug's `global_disable`).
  public var enabled: Bool
  /// Everything reported, oldest first (Linux's kernel log, and debugfs `error_count` as its count).
  public private(set) var reports: [DMADebugReport] = []

  private var live: [Key: Bucket] = [:]
  private var liveCount = 0
  /// A ring of the last `unmapHistory` unmaps; `historyNext` is where the next one goes.
  private var history: [UnmapRecord?]
  private var historyNext = 0

  /// - Parameters:
  ///   - enabled: whether to record and check (Linux: `dma_debug=off` on the command line disables).
  ///   - unmapHistory: how many recent unmaps to remember for double-unmap reports; 0 keeps none.
  public init(enabled: Bool = true, unmapHistory: Int = 64) {
    precondition(unmapHistory >= 0, "unmapHistory must not be negative")
    self.enabled = enabled
    history = Array(repeating: nil, count: unmapHistory)
  }

  /// Live mappings, of all devices.
  public var liveMappingCount: Int { liveCount }

  /// Returns the reports so far and forgets them.
  public func drainReports() -> [DMADebugReport] {
    defer { reports.removeAll() }
    return reports
  }

  /// The live mappings of `device`, by DMA address (Linux `debug_dma_dump_mappings`).
  public func liveMappings(of device: RequesterID) -> [Entry] {
    var entries: [Entry] = []
    for (key, bucket) in live where key.device == device {
      bucket.visit { entries.append($0) }
    }
    return entries.sorted { $0.dmaAddress < $1.dmaAddress }
  }

  /// Records a new mapping (Linux `add_dma_entry`, from `debug_dma_map_phys`, `debug_dma_map_sg` and
  /// `debug_dma_alloc_coherent`). The device owns the buffer from here.
  /// - Parameter sgCount: for `.scatterGather`, the entry count the driver passed to map_sg.
  public func recordMap(
    device: RequesterID, dmaAddress: UInt64, cpuAddress: UInt64, size: Int, direction: DMADirection,
    kind: DMAMappingKind, sgCount: Int = 0, origin: DMAOrigin
  ) {
    guard enabled else { return }
    let entry = Entry(
      device: device, dmaAddress: dmaAddress, cpuAddress: cpuAddress, size: size, direction: direction,
      kind: kind, sgCount: sgCount, origin: origin, owner: .device)
    let key = Key(device: device, dmaAddress: dmaAddress)
    switch live[key] {
    case nil: live[key] = .one(entry)
    case .one(let existing): live[key] = .many([existing, entry])
    case .many(let existing): live[key] = .many(existing + [entry])
    }
    liveCount += 1
  }

  /// Checks an unmap (or free_coherent) against its mapping and forgets the mapping (Linux
  /// `check_unmap`). Size, kind, scatter-gather count and direction are each compared, in Linux's
  /// order, and the entry is removed even when they differ, as Linux does.
  /// - Returns: the reports this call made (also appended to `reports`).
  @discardableResult
  public func checkUnmap(
    device: RequesterID, dmaAddress: UInt64, size: Int, direction: DMADirection, kind: DMAMappingKind,
    sgCount: Int = 0, origin: DMAOrigin
  ) -> [DMADebugReport] {
    guard enabled else { return [] }
    let key = Key(device: device, dmaAddress: dmaAddress)
    guard let (entry, position) = bestFit(key, size: size, kind: kind, direction: direction, sgCount: sgCount)
    else {
      if live[key] == nil, let previous = lastUnmap(of: key) {
        return report(
          .doubleUnmap, device, dmaAddress, mapped: previous.mappingOrigin, call: origin,
          "device driver tries to free DMA memory it has already freed [device address=\(hex(dmaAddress))] "
            + "[size=\(size) bytes] [first unmapped \(previous.unmapOrigin)]")
      }
      return report(
        .notMapped, device, dmaAddress, mapped: nil, call: origin,
        "device driver tries to free DMA memory it has not allocated [device address=\(hex(dmaAddress))] "
          + "[size=\(size) bytes]")
    }
    remove(key, at: position)
    remember(UnmapRecord(key: key, mappingOrigin: entry.origin, unmapOrigin: origin))

    var found: [DMADebugReport] = []
    var address: String { "[device address=\(hex(dmaAddress))]" }
    func add(_ kind: DMADebugReport.Kind, _ message: String) {
      found += report(kind, device, dmaAddress, mapped: entry.origin, call: origin, message)
    }
    if size != entry.size {
      add(
        .wrongSize,
        "device driver frees DMA memory with different size \(address) [map size=\(entry.size) bytes] "
          + "[unmap size=\(size) bytes]")
    }
    if kind != entry.kind {
      add(
        .wrongKind,
        "device driver frees DMA memory with wrong function \(address) [size=\(size) bytes] "
          + "[mapped as \(entry.kind)] [unmapped as \(kind)]")
    }
    if sgCount != 0, kind == .scatterGather, sgCount != entry.sgCount {
      add(
        .wrongSGCount,
        "device driver frees DMA sg list with different entry count [map count=\(entry.sgCount)] "
          + "[unmap count=\(sgCount)]")
    }
    if direction != entry.direction {
      add(
        .wrongDirection,
        "device driver frees DMA memory with different direction \(address) [size=\(size) bytes] "
          + "[mapped with \(entry.direction)] [unmapped with \(direction)]")
    }
    return found
  }

  /// Checks a sync (`dma_sync_single_for_cpu`/`_for_device`, and their range and sg forms) and hands
  /// the buffer over: to the CPU if `forCPU`, else to the device (Linux `check_sync`).
  ///
  /// The range [dmaAddress, dmaAddress + size) must lie inside one live mapping of `device`: a sync
  /// starting in a mapping but running past its end is `.syncOutOfRange`; one that starts in no
  /// mapping is `.notMapped`. The direction must be the mapping's unless the mapping is
  /// bidirectional. Ownership changes whenever the mapping is found, even with a report, because
  /// the sync itself was carried out.
  /// - Returns: the reports this call made (also appended to `reports`).
  @discardableResult
  public func checkSync(
    device: RequesterID, dmaAddress: UInt64, size: Int, direction: DMADirection, forCPU: Bool,
    origin: DMAOrigin
  ) -> [DMADebugReport] {
    guard enabled else { return [] }
    let syncEnd = end(dmaAddress, size)
    guard let (key, position, entry) = containing(device, dmaAddress, end: syncEnd, direction: direction)
    else {
      return report(
        .notMapped, device, dmaAddress, mapped: nil, call: origin,
        "device driver tries to sync DMA memory it has not allocated [device address=\(hex(dmaAddress))] "
          + "[size=\(size) bytes]")
    }
    update(key, at: position) { $0.owner = forCPU ? .cpu : .device }

    var found: [DMADebugReport] = []
    if syncEnd > end(entry.dmaAddress, entry.size) {
      // Linux's "sync offset+size" is the end of the sync relative to the mapping's start.
      let offsetPlusSize = (dmaAddress - entry.dmaAddress) + UInt64(max(size, 0))
      found += report(
        .syncOutOfRange, device, dmaAddress, mapped: entry.origin, call: origin,
        "device driver syncs DMA memory outside allocated range [device address=\(hex(entry.dmaAddress))] "
          + "[allocation size=\(entry.size) bytes] [sync offset+size=\(offsetPlusSize)]")
    }
    if entry.direction != .bidirectional, direction != entry.direction {
      found += report(
        .syncWrongDirection, device, dmaAddress, mapped: entry.origin, call: origin,
        "device driver syncs DMA memory with different direction [device address=\(hex(dmaAddress))] "
          + "[size=\(entry.size) bytes] [mapped with \(entry.direction)] [synced with \(direction)]")
    }
    return found
  }

  /// Checks a CPU access to guest memory: touching a streaming buffer the device owns is a race with
  /// the device, except reading a `.toDevice` buffer, which the device only reads too. Coherent
  /// mappings are shared by design and never reported.
  /// - Returns: one report per device-owned mapping the access overlaps (also appended to `reports`).
  @discardableResult
  public func checkCPUAccess(cpuAddress: UInt64, size: Int, write: Bool, origin: DMAOrigin)
    -> [DMADebugReport]
  {
    guard enabled, size > 0 else { return [] }
    let accessEnd = end(cpuAddress, size)
    var overlapping: [Entry] = []
    for bucket in live.values {
      bucket.visit { entry in
        if entry.owner == .device && entry.kind != .coherent && (write || entry.direction != .toDevice)
          && cpuAddress < end(entry.cpuAddress, entry.size) && entry.cpuAddress < accessEnd
        {
          overlapping.append(entry)
        }
      }
    }
    overlapping.sort { ($0.device.rawValue, $0.dmaAddress) < ($1.device.rawValue, $1.dmaAddress) }
    var found: [DMADebugReport] = []
    for entry in overlapping {
      found += report(
        .cpuAccessWhileDeviceOwned, entry.device, entry.dmaAddress, mapped: entry.origin, call: origin,
        "cpu \(write ? "writes" : "reads") DMA memory owned by the device [cpu address=\(hex(cpuAddress))] "
          + "[size=\(size) bytes] [device address=\(hex(entry.dmaAddress))] [mapped with \(entry.direction)]")
    }
    return found
  }

  /// Reports every mapping `device` still has when its driver is removed, and forgets them (Linux
  /// `dma_debug_device_change` on BUS_NOTIFY_UNBOUND_DRIVER). Linux prints one warning with a count
  /// and one example; Cove reports each leaked mapping with its origin.
  ///
  /// All of the device's mappings are leaks at that point, whoever made them; `driver` names the
  /// driver being removed in the message.
  /// - Returns: the reports this call made, by DMA address (also appended to `reports`).
  @discardableResult
  public func checkLeaks(device: RequesterID, driver: String?) -> [DMADebugReport] {
    guard enabled else { return [] }
    let leaked = liveMappings(of: device)
    guard !leaked.isEmpty else { return [] }
    for entry in leaked {
      live[Key(device: device, dmaAddress: entry.dmaAddress)] = nil
    }
    liveCount -= leaked.count
    let who = driver.map { "[driver=\($0)] " } ?? ""
    var found: [DMADebugReport] = []
    for entry in leaked {
      found += report(
        .leaked, device, entry.dmaAddress, mapped: entry.origin, call: nil,
        "device driver has pending DMA allocations while released from device \(who)[count=\(leaked.count)] "
          + "[device address=\(hex(entry.dmaAddress))] [size=\(entry.size) bytes] "
          + "[mapped with \(entry.direction)] [mapped as \(entry.kind)]")
    }
    return found
  }

  // MARK: - Lookup

  /// Linux `__hash_bucket_find` with `exact_match`: a lone mapping at `key` matches whatever the call
  /// says (the differences are then reported); among several, the one that agrees with the call on
  /// size, kind, direction and sg count. Several and no perfect fit is no match, as in Linux: it
  /// cannot tell which one was meant.
  private func bestFit(
    _ key: Key, size: Int, kind: DMAMappingKind, direction: DMADirection, sgCount: Int
  ) -> (Entry, Int)? {
    switch live[key] {
    case nil:
      return nil
    case .one(let entry):
      return (entry, 0)
    case .many(let entries):
      for (position, entry) in entries.enumerated()
      where entry.size == size && entry.kind == kind && entry.direction == direction
        && entry.sgCount == sgCount
      {
        return (entry, position)
      }
      return nil
    }
  }

  /// The mapping of `device` that a sync starting at `start` refers to: the one starting there if
  /// any, else one containing `start` (Linux `bucket_find_contain`). Among several, one that also
  /// contains the end of the sync and has its direction is preferred.
  private func containing(
    _ device: RequesterID, _ start: UInt64, end syncEnd: UInt64, direction: DMADirection
  ) -> (Key, Int, Entry)? {
    func fits(_ entry: Entry) -> Bool {
      syncEnd <= end(entry.dmaAddress, entry.size)
        && (entry.direction == direction || entry.direction == .bidirectional)
    }
    var candidates: [(Key, Int, Entry)] = []
    let exact = Key(device: device, dmaAddress: start)
    if let bucket = live[exact] {
      for (position, entry) in bucket.entries.enumerated() {
        if fits(entry) { return (exact, position, entry) }
        candidates.append((exact, position, entry))
      }
    } else {
      for (key, bucket) in live where key.device == device && key.dmaAddress < start {
        for (position, entry) in bucket.entries.enumerated() where start < end(entry.dmaAddress, entry.size) {
          if fits(entry) { return (key, position, entry) }
          candidates.append((key, position, entry))
        }
      }
    }
    // Deterministic whatever the dictionary's order: the nearest start.
    return candidates.max { $0.0.dmaAddress < $1.0.dmaAddress }
  }

  private func update(_ key: Key, at position: Int, _ change: (inout Entry) -> Void) {
    switch live[key] {
    case nil:
      preconditionFailure("dma-debug: updating a mapping that is not live")
    case .one(var entry):
      change(&entry)
      live[key] = .one(entry)
    case .many(var entries):
      change(&entries[position])
      live[key] = .many(entries)
    }
  }

  private func remove(_ key: Key, at position: Int) {
    guard case .many(var entries) = live[key] else {
      live[key] = nil
      liveCount -= 1
      return
    }
    entries.remove(at: position)
    live[key] = Bucket(entries)
    liveCount -= 1
  }

  // MARK: - Unmap history

  private func remember(_ record: UnmapRecord) {
    guard !history.isEmpty else { return }
    history[historyNext] = record
    historyNext = (historyNext + 1) % history.count
  }

  /// The most recent remembered unmap of `key`.
  private func lastUnmap(of key: Key) -> UnmapRecord? {
    let count = history.count
    for back in stride(from: 1, through: count, by: 1) {
      guard let record = history[(historyNext - back + count) % count] else { return nil }
      if record.key == key { return record }
    }
    return nil
  }

  // MARK: - Reporting

  private func report(
    _ kind: DMADebugReport.Kind, _ device: RequesterID, _ dmaAddress: UInt64, mapped: DMAOrigin?,
    call: DMAOrigin?, _ message: String
  ) -> [DMADebugReport] {
    let made = DMADebugReport(
      kind: kind, device: device, dmaAddress: dmaAddress, mappingOrigin: mapped, callOrigin: call,
      message: message)
    reports.append(made)
    return [made]
  }

  /// The first address past [start, start + size), saturating at the top of the address space.
  private func end(_ start: UInt64, _ size: Int) -> UInt64 {
    let (sum, overflow) = start.addingReportingOverflow(UInt64(max(size, 0)))
    return overflow ? .max : sum
  }

  /// `0x%016llx`, as dma-debug prints device addresses.
  private func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits
  }
}
