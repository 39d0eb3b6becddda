/// The flush queue of a DMA-FQ (lazy) domain — Linux dma-iommu's `iova_fq`: an unmapped IOVA is not
/// reused at once, because the IOTLB may still hold a translation for it; it waits in a bounded ring,
/// tagged with the flush *start* count at queue time, and goes back to the allocator only once the
/// flush *finish* count has passed that tag — i.e. a flush that began after it was queued has finished
/// (`fq_flush_start_cnt` / `fq_flush_finish_cnt`, `fq_ring_free`). SEMANTICS.md §2: "reused only after a
/// flush that started after they were queued has finished".
///
/// A flush that was already in progress when the IOVA was queued does not count: it may have
/// invalidated the IOTLB *before* the unmap, and a walk racing with the unmap could have re-filled a
/// translation since. The counters are explicit so tests can construct that race.
///
/// The queue does no invalidation itself (it has no I/O, like a NIO state machine): the owner calls
/// `beginFlush`, invalidates, calls `finishFlush`, then drains `releasable` entries.
public struct IOVAFlushQueue: Sendable {
  /// One queued IOVA: what to give back to the allocator, and the start count when it was queued.
  public struct Entry: Sendable, Hashable {
    public var iova: IOVA
    public var size: UInt64
    public var flushStartCount: UInt64
  }

  /// Entries held at most (Linux IOVA_DEFAULT_FQ_SIZE is 256 per CPU).
  public let capacity: Int
  private var ring: [Entry]
  private var head = 0
  public private(set) var count = 0

  /// Flushes begun (`fq_flush_start_cnt`).
  public private(set) var flushStartCount: UInt64 = 0
  /// Flushes finished (`fq_flush_finish_cnt`).
  public private(set) var flushFinishCount: UInt64 = 0
  /// Entries handed back so far.
  public private(set) var released = 0

  /// - Throws: EINVAL for a capacity below 1 or above 2^20.
  public init(capacity: Int) throws(IOMMUError) {
    guard capacity >= 1, capacity <= 1 << 20 else {
      throw IOMMUError(.EINVAL, "flush queue capacity \(capacity) outside 1...2^20")
    }
    self.capacity = capacity
    ring = []
    ring.reserveCapacity(capacity)
  }

  public var isFull: Bool { count == capacity }
  public var isEmpty: Bool { count == 0 }
  /// A flush has begun and not finished.
  public var flushInProgress: Bool { flushStartCount > flushFinishCount }

  /// Queues an unmapped IOVA, tagged with the current start count. Returns false (nothing queued) when
  /// the queue is full: the owner must flush and drain first.
  public mutating func enqueue(_ iova: IOVA, size: UInt64) -> Bool {
    guard count < capacity else { return false }
    let entry = Entry(iova: iova, size: size, flushStartCount: flushStartCount)
    var tail = head + count  // head < capacity and count < capacity: one subtraction wraps it
    if tail >= capacity { tail -= capacity }
    if tail == ring.count { ring.append(entry) } else { ring[tail] = entry }
    count += 1
    return true
  }

  /// A flush begins (the invalidation is about to be issued).
  public mutating func beginFlush() {
    flushStartCount += 1
  }

  /// The oldest flush in progress has finished (its invalidation completed).
  /// - Throws: EINVAL when no flush is in progress.
  public mutating func finishFlush() throws(IOMMUError) {
    guard flushInProgress else { throw IOMMUError(.EINVAL, "finishing a flush that never began") }
    flushFinishCount += 1
  }

  /// Removes and returns, oldest first, every entry a finished flush has covered: its tag is below the
  /// finish count, so a flush numbered above its tag both began after it was queued and has finished.
  public mutating func drainReleasable() -> [Entry] {
    var out: [Entry] = []
    drainReleasable { out.append($0) }
    return out
  }

  /// `drainReleasable`, handing each entry to `body` instead of collecting an array.
  mutating func drainReleasable(_ body: (Entry) -> Void) {
    while count > 0 && ring[head].flushStartCount < flushFinishCount {
      body(ring[head])
      head += 1
      if head == capacity { head = 0 }
      count -= 1
      released += 1
    }
  }

  /// Whether `drainReleasable` would hand anything back.
  var hasReleasable: Bool { count > 0 && ring[head].flushStartCount < flushFinishCount }

  /// The queued entries, oldest first.
  public var entries: [Entry] {
    (0..<count).map { ring[(head + $0) % capacity] }
  }
}
