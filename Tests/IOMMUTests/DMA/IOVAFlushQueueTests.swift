import IOMMU
import Testing

@Suite struct IOVAFlushQueueTests {
  /// `#expect` cannot call a mutating method on a local; this wrapper can.
  func enqueue(_ queue: inout IOVAFlushQueue, _ iova: IOVA) -> Bool {
    queue.enqueue(iova, size: 4096)
  }

  @Test func anEntryWaitsForAFlushThatBeganAfterIt() throws {
    var queue = try IOVAFlushQueue(capacity: 8)
    #expect(enqueue(&queue, IOVA(0x1000)))
    do {
      let drained = queue.drainReleasable()
      #expect(drained.isEmpty)
    }
    // A flush begun after the entry, finished: releases it.
    queue.beginFlush()
    do {
      let drained = queue.drainReleasable()
      #expect(drained.isEmpty)  // begun, not finished
    }
    try queue.finishFlush()
    do {
      let drained = queue.drainReleasable()
      #expect(drained.map(\.iova) == [IOVA(0x1000)])
    }
  }

  @Test func aFlushAlreadyInProgressDoesNotCover() throws {
    var queue = try IOVAFlushQueue(capacity: 8)
    _ = queue.enqueue(IOVA(0x1000), size: 4096)
    queue.beginFlush()  // in progress…
    _ = queue.enqueue(IOVA(0x2000), size: 4096)  // …when this is queued
    try queue.finishFlush()
    do {
      let drained = queue.drainReleasable()
      #expect(drained.map(\.iova) == [IOVA(0x1000)])
    }
    #expect(queue.entries.map(\.iova) == [IOVA(0x2000)])
    queue.beginFlush()
    try queue.finishFlush()
    do {
      let drained = queue.drainReleasable()
      #expect(drained.map(\.iova) == [IOVA(0x2000)])
    }
    #expect(queue.released == 2 && queue.isEmpty)
    #expect(queue.flushStartCount == 2 && queue.flushFinishCount == 2)
  }

  @Test func orderIsFIFOAndTheQueueIsBounded() throws {
    var queue = try IOVAFlushQueue(capacity: 3)
    for page: UInt64 in 1...3 { #expect(enqueue(&queue, IOVA(page << 12))) }
    #expect(queue.isFull)
    #expect(!enqueue(&queue, IOVA(0x9000)))
    queue.beginFlush()
    try queue.finishFlush()
    do {
      let drained = queue.drainReleasable()
      #expect(drained.map(\.iova) == [IOVA(0x1000), IOVA(0x2000), IOVA(0x3000)])
    }
    // Wrap around the ring.
    for page: UInt64 in 4...6 { #expect(enqueue(&queue, IOVA(page << 12))) }
    #expect(queue.entries.map(\.iova) == [IOVA(0x4000), IOVA(0x5000), IOVA(0x6000)])
  }

  @Test func misuseIsEINVAL() {
    #expect(throws: IOMMUError.self) { _ = try IOVAFlushQueue(capacity: 0) }
    do {
      var queue = try IOVAFlushQueue(capacity: 1)
      try queue.finishFlush()
      Issue.record("finished a flush that never began")
    } catch {
      #expect(error.errno == .EINVAL)
    }
  }
}
