/// The sparse radix of segment trees behind `IOVAAllocator`. A struct driven through `mutating`
/// methods so that one exclusive access covers a whole operation (class stored properties would pay a
/// dynamic exclusivity check on every element access).
///
/// Each node at level `l` has `2^bits` slots. A slot of the leaf level is one granule; a slot of an
/// upper level is a child node, or — when that whole subtree is free or whole in use (reserved/out of
/// range) — no node at all. Inside a node, heap position `p` at height `h` summarises a span of
/// `2^(slotOrder + h)` granules with `order + 1` of the largest free size-aligned block in it, so a
/// top-down search descends right-first and prunes every subtree whose summary is too small or which
/// starts at or above the limit, like iova.c's rbtree walk from `cached_node` downward but without one
/// node per allocation.
struct IOVARadix {
  /// Per level (0 = leaf chunks): log2 of the fan-out of one node.
  var levelBits: [Int] = []
  /// Per level: log2 (in granules) of the span of one slot of a node at that level.
  var slotOrder: [Int] = []
  /// Per level: the implicit segment trees of every node, `2 << bits` bytes per node (index 0 unused,
  /// root at 1, leaves at `1 << bits ..< 2 << bits`). Value = order + 1 of the largest free aligned
  /// block below, 0 = none.
  var trees: [ContiguousArray<UInt8>] = []
  /// Per upper level: the child of every slot: a node index, `freeChild` or `fullChild`.
  var children: [ContiguousArray<Int32>] = []
  /// Per level: nodes released back when a subtree collapsed to wholly free or wholly reserved.
  var spareNodes: [[Int32]] = []
  /// Leaf level: head-of-allocation and cached-in-magazine bits, `headWordsPerNode` words per node.
  var headBits = ContiguousArray<UInt64>()
  var cachedBits = ContiguousArray<UInt64>()
  var headWordsPerNode = 1
  var nodeCount: [Int] = []
  /// log2 of the granules of one leaf chunk (`levelBits[0]`).
  var leafBits = 0
  /// The leaf chunk last found by `setHead`/`setCached` (chunk number = granule >> leafBits) and its
  /// node: the granule a magazine pop clears the cached bit of is the one an unmap checks and a free
  /// sets it again on, so the walk down the radix is done once, not three times. Forgotten by `mark`,
  /// the only thing that moves leaf chunks.
  var lastChunk = UInt64.max
  var lastChunkNode: Int32 = -1

  static let freeChild: Int32 = -1
  static let fullChild: Int32 = -2
  /// Fan-out of a chunk: 2^12 granules (16 MiB of IOVA at 4 KiB) per leaf chunk, 2^12 slots above.
  static let chunkBits = 12

  /// A radix over [0, 2^totalBits) granules, all free.
  init(totalBits: Int) {
    var remaining = totalBits
    var order = 0
    while remaining > 0 {
      let bits = min(Self.chunkBits, remaining)
      levelBits.append(bits)
      slotOrder.append(order)
      order += bits
      remaining -= bits
      trees.append([])
      children.append([])
      spareNodes.append([])
      nodeCount.append(0)
    }
    headWordsPerNode = max(1, (1 << levelBits[0]) / 64)
    leafBits = levelBits[0]
    let root = newNode(level: levelBits.count - 1, full: false)
    precondition(root == 0, "the root is the first node of the top level")
  }

  var memoryFootprint: Int {
    var bytes = headBits.capacity * 8 + cachedBits.capacity * 8
    for tree in trees { bytes += tree.capacity }
    for child in children { bytes += child.capacity * 4 }
    for spare in spareNodes { bytes += spare.capacity * 4 }
    return bytes
  }

  /// Marks granules [lo, hi) in use or free (see `markRange`).
  mutating func mark(_ lo: UInt64, _ hi: UInt64, used: Bool, collapse: Bool) {
    lastChunk = UInt64.max
    _ = markRange(
      level: levelBits.count - 1, node: 0, nodeBase: 0, lo: lo, hi: hi, used: used, collapse: collapse)
  }

  mutating func setHead(_ g: UInt64, _ value: Bool) {
    guard let (word, mask) = rememberingBitLocation(g) else { return }
    if value { headBits[word] |= mask } else { headBits[word] &= ~mask }
  }

  mutating func setCached(_ g: UInt64, _ value: Bool) {
    guard let (word, mask) = rememberingBitLocation(g) else { return }
    if value { cachedBits[word] |= mask } else { cachedBits[word] &= ~mask }
  }

  /// `bitLocation`, remembering the leaf chunk found for the next lookup.
  @inline(__always)
  mutating func rememberingBitLocation(_ g: UInt64) -> (word: Int, mask: UInt64)? {
    let node = leafNode(g)
    guard node >= 0 else { return nil }
    lastChunk = g >> UInt64(leafBits)
    lastChunkNode = node
    let slot = Int(g & ((1 << UInt64(leafBits)) - 1))
    return (Int(node) * headWordsPerNode + slot >> 6, UInt64(1) << UInt64(slot & 63))
  }

  /// The summary of a wholly free span of `2^(slotOrder[level] + height)` granules.
  @inline(__always)
  func fullValue(_ level: Int, _ height: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: slotOrder[level] + height + 1)
  }

  /// A node whose slots are all free or all in use.
  mutating func newNode(level: Int, full: Bool) -> Int32 {
    let bits = levelBits[level]
    let stride = 2 << bits
    let node: Int32
    if let spare = spareNodes[level].popLast() {
      node = spare
    } else {
      node = Int32(nodeCount[level])
      nodeCount[level] += 1
      trees[level].append(contentsOf: repeatElement(0, count: stride))
      if level > 0 {
        children[level].append(contentsOf: repeatElement(Self.freeChild, count: 1 << bits))
      } else {
        headBits.append(contentsOf: repeatElement(0, count: headWordsPerNode))
        cachedBits.append(contentsOf: repeatElement(0, count: headWordsPerNode))
      }
    }
    let base = Int(node) * stride
    for height in 0...bits {
      let value = full ? 0 : fullValue(level, height)
      let first = 1 << (bits - height)
      for p in first..<(2 * first) { trees[level][base + p] = value }
    }
    if level > 0 {
      let childBase = Int(node) << bits
      for s in 0..<(1 << bits) { children[level][childBase + s] = full ? Self.fullChild : Self.freeChild }
    } else {
      let wordBase = Int(node) * headWordsPerNode
      for w in 0..<headWordsPerNode {
        headBits[wordBase + w] = 0
        cachedBits[wordBase + w] = 0
      }
    }
    return node
  }

  /// Returns a subtree's nodes to the spare lists.
  mutating func releaseSubtree(level: Int, node: Int32) {
    if level > 0 {
      let childBase = Int(node) << levelBits[level]
      for s in 0..<(1 << levelBits[level]) {
        let child = children[level][childBase + s]
        if child >= 0 { releaseSubtree(level: level - 1, node: child) }
      }
    }
    spareNodes[level].append(node)
  }

  /// Marks granules [lo, hi) (inside the node's span) in use or free and returns the node's new root
  /// summary. With `collapse`, slots wholly covered become unmaterialised free/full subtrees; without it
  /// (allocations, whose head bit must live in a leaf chunk) the path down to the leaves is built.
  mutating func markRange(
    level: Int, node: Int32, nodeBase: UInt64, lo: UInt64, hi: UInt64, used: Bool, collapse: Bool
  ) -> UInt8 {
    let bits = levelBits[level]
    let order = UInt64(slotOrder[level])
    let stride = 2 << bits
    let base = Int(node) * stride
    let leaves = 1 << bits
    let slotLo = Int((lo - nodeBase) >> order)
    let slotHi = Int((hi - 1 - nodeBase) >> order) + 1
    if level == 0 {
      let value: UInt8 = used ? 0 : 1
      for s in slotLo..<slotHi { trees[0][base + leaves + s] = value }
    } else {
      let childBase = Int(node) << bits
      for s in slotLo..<slotHi {
        let childLo = nodeBase + (UInt64(s) << order)
        let childHi = childLo + (UInt64(1) << order)
        let child = children[level][childBase + s]
        let covered = lo <= childLo && childHi <= hi
        let newValue: UInt8
        if covered && (collapse || !used) {
          if child >= 0 { releaseSubtree(level: level - 1, node: child) }
          children[level][childBase + s] = used ? Self.fullChild : Self.freeChild
          newValue = used ? 0 : fullValue(level, 0)
        } else if !covered && ((child == Self.fullChild && used) || (child == Self.freeChild && !used)) {
          continue
        } else {
          var target = child
          if target < 0 {
            target = newNode(level: level - 1, full: child == Self.fullChild)
            children[level][childBase + s] = target
          }
          newValue = markRange(
            level: level - 1, node: target, nodeBase: childLo, lo: max(lo, childLo), hi: min(hi, childHi),
            used: used, collapse: collapse)
        }
        trees[level][base + leaves + s] = newValue
      }
    }
    // Recompute the summaries above the touched slots, height by height.
    var first = leaves + slotLo
    var last = leaves + slotHi - 1
    for height in 1...max(bits, 1) where bits > 0 {
      first >>= 1
      last >>= 1
      let childFull = fullValue(level, height - 1)
      for p in first...last {
        let left = trees[level][base + 2 * p]
        let right = trees[level][base + 2 * p + 1]
        trees[level][base + p] = (left == childFull && right == childFull) ? childFull + 1 : max(left, right)
      }
    }
    return trees[level][base + 1]
  }

  /// The highest free block of `2^order` granules, aligned to its size, ending at or below `limit`.
  func searchTree(order: Int, limitGranule: UInt64) -> UInt64? {
    let top = levelBits.count - 1
    return search(
      level: top, node: 0, nodeBase: 0, position: 1, height: levelBits[top], order: order, limit: limitGranule
    )
  }

  private func search(
    level: Int, node: Int32, nodeBase: UInt64, position: Int, height: Int, order: Int, limit: UInt64
  ) -> UInt64? {
    let bits = levelBits[level]
    let value = trees[level][Int(node) * (2 << bits) + position]
    if Int(value) < order + 1 { return nil }
    let spanOrder = UInt64(slotOrder[level] + height)
    let index = position - (1 << (bits - height))
    let lo = nodeBase + (UInt64(index) << spanOrder)
    if lo >= limit { return nil }
    if UInt64(value) == spanOrder + 1 {
      // Wholly free: the highest aligned block of the span that ends below the limit.
      let size = UInt64(1) << UInt64(order)
      let hi = spanOrder >= 64 ? limit : min(lo + (UInt64(1) << spanOrder), limit)
      guard hi - lo >= size else { return nil }
      return (hi - size) & ~(size - 1)
    }
    if height == 0 {
      // An upper-level slot that is neither wholly free nor wholly used has a node below it.
      let child = children[level][(Int(node) << bits) + index]
      guard child >= 0 else { return nil }
      return search(
        level: level - 1, node: child, nodeBase: lo, position: 1, height: levelBits[level - 1], order: order,
        limit: limit)
    }
    if let found = search(
      level: level, node: node, nodeBase: nodeBase, position: 2 * position + 1, height: height - 1,
      order: order, limit: limit)
    {
      return found
    }
    return search(
      level: level, node: node, nodeBase: nodeBase, position: 2 * position, height: height - 1, order: order,
      limit: limit)
  }

  /// Whether every granule of [lo, hi) is free.
  func rangeIsFree(_ lo: UInt64, _ hi: UInt64) -> Bool {
    let top = levelBits.count - 1
    return rangeIsFree(
      level: top, node: 0, nodeBase: 0, position: 1, height: levelBits[top], lo: lo, hi: hi)
  }

  private func rangeIsFree(
    level: Int, node: Int32, nodeBase: UInt64, position: Int, height: Int, lo: UInt64, hi: UInt64
  ) -> Bool {
    let bits = levelBits[level]
    let spanOrder = UInt64(slotOrder[level] + height)
    let index = position - (1 << (bits - height))
    let spanLo = nodeBase + (UInt64(index) << spanOrder)
    let spanHi = spanLo + (UInt64(1) << spanOrder)
    if spanHi <= lo || spanLo >= hi { return true }
    let value = trees[level][Int(node) * (2 << bits) + position]
    if UInt64(value) == spanOrder + 1 { return true }
    if value == 0 { return false }
    if height == 0 {
      let child = children[level][(Int(node) << bits) + index]
      guard child >= 0 else { return child == Self.freeChild }
      return rangeIsFree(
        level: level - 1, node: child, nodeBase: spanLo, position: 1, height: levelBits[level - 1], lo: lo,
        hi: hi)
    }
    return rangeIsFree(
      level: level, node: node, nodeBase: nodeBase, position: 2 * position, height: height - 1, lo: lo, hi: hi
    )
      && rangeIsFree(
        level: level, node: node, nodeBase: nodeBase, position: 2 * position + 1, height: height - 1, lo: lo,
        hi: hi)
  }

  /// The leaf chunk holding granule `g`, or the state of the unmaterialised subtree that covers it.
  @inline(__always)
  func leafNode(_ g: UInt64) -> Int32 {
    if g >> UInt64(leafBits) == lastChunk { return lastChunkNode }
    var level = levelBits.count - 1
    var node: Int32 = 0
    while level > 0 {
      let slot = Int((g >> UInt64(slotOrder[level])) & ((1 << UInt64(levelBits[level])) - 1))
      node = children[level][(Int(node) << levelBits[level]) + slot]
      if node < 0 { return node }
      level -= 1
    }
    return node
  }

  /// In use, head of an allocation, sitting in a magazine.
  func granuleInfo(_ g: UInt64) -> (used: Bool, head: Bool, cached: Bool) {
    let node = leafNode(g)
    if node < 0 { return (node == Self.fullChild, false, false) }
    return granuleInfo(g, inLeaf: node)
  }

  /// `granuleInfo` for a granule of the materialised leaf chunk `node`.
  @inline(__always)
  func granuleInfo(_ g: UInt64, inLeaf node: Int32) -> (used: Bool, head: Bool, cached: Bool) {
    let bits = levelBits[0]
    let slot = Int(g & ((1 << UInt64(bits)) - 1))
    let used = trees[0][Int(node) * (2 << bits) + (1 << bits) + slot] == 0
    let word = Int(node) * headWordsPerNode + slot >> 6
    let mask = UInt64(1) << UInt64(slot & 63)
    return (used, headBits[word] & mask != 0, cachedBits[word] & mask != 0)
  }

  /// The word and mask of granule `g`'s head/cached bits; nil if its chunk is not materialised
  /// (every allocated granule's is).
  @inline(__always)
  func bitLocation(_ g: UInt64) -> (word: Int, mask: UInt64)? {
    let node = leafNode(g)
    guard node >= 0 else { return nil }
    let slot = Int(g & ((1 << UInt64(levelBits[0])) - 1))
    return (Int(node) * headWordsPerNode + slot >> 6, UInt64(1) << UInt64(slot & 63))
  }
}
