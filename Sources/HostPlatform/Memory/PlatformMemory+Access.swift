import CoveCrypto
public import IOMMU

/// Reads, writes and copies, through the memory encryption engine model (see `PlatformMemory`).
///
/// Every access first checks all the pages it touches and throws before acting, so a refused access
/// changes nothing and returns nothing. The buffer forms move bytes without intermediate arrays; an
/// authorised access (or any access to pages that are not private) is one `memcpy` / `memmove`.
extension PlatformMemory {
  /// `count` bytes at `address`, as `accessor` sees them.
  ///
  /// - Throws: `invalidArgument` (EINVAL) for a negative count; `outOfRange` (EFAULT) when the range
  ///   leaves host memory; for `.owner(guest)`, `notOwner` (EPERM) when any page is not the guest's and
  ///   `integrityFailure` (EIO) when any page is poisoned.
  public func read(_ address: PhysicalAddress, count: Int, as accessor: Accessor) throws(MemoryError)
    -> [UInt8]
  {
    // Validate before allocating, so a hostile count never sizes an allocation.
    let span = try checkedSpan(address, count: count)
    try checkRead(span, as: accessor)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { copyOut(span, into: $0, as: accessor) }
    return bytes
  }

  /// Fills `destination` with the bytes at `address`, as `accessor` sees them; errors as for
  /// `read(_:count:as:)`, and `destination` is untouched on an error.
  public func read(
    _ address: PhysicalAddress, into destination: UnsafeMutableRawBufferPointer, as accessor: Accessor
  ) throws(MemoryError) {
    let span = try checkedSpan(address, count: destination.count)
    try checkRead(span, as: accessor)
    copyOut(span, into: destination, as: accessor)
  }

  /// Writes `bytes` at `address` as `accessor`.
  ///
  /// `.owner(guest)` writes plaintext, and a write covering a whole page clears that page's poison.
  /// `.untrusted` writes shared and hypervisor pages as they are, and overlays private pages'
  /// ciphertext, poisoning them (see `PlatformMemory`).
  ///
  /// - Throws: `outOfRange` (EFAULT) when the range leaves host memory; for `.owner(guest)`,
  ///   `notOwner` (EPERM) when any page is not the guest's and `integrityFailure` (EIO) when a poisoned
  ///   page is only partly written. Nothing is written on an error.
  public func write(_ bytes: [UInt8], at address: PhysicalAddress, as accessor: Accessor) throws(MemoryError)
  {
    try bytes.withUnsafeBufferPointer { (source) throws(MemoryError) in
      try write(UnsafeRawBufferPointer(source), at: address, as: accessor)
    }
  }

  /// Writes the bytes of `source` at `address` as `accessor`; as `write(_:at:as:)`.
  public func write(_ source: UnsafeRawBufferPointer, at address: PhysicalAddress, as accessor: Accessor)
    throws(MemoryError)
  {
    let span = try checkedSpan(address, count: source.count)
    try checkWrite(span, as: accessor)
    copyIn(span, from: source, as: accessor)
  }

  /// Copies `count` bytes from `source`, read as `reader`, to `destination`, written as `writer` (a DMA
  /// engine's copy; the ranges may overlap). The result is that of reading then writing, with the
  /// same errors; when both sides see plaintext it is a single `memmove` with no intermediate buffer.
  /// Nothing is written on an error.
  public func copy(
    _ count: Int, from source: PhysicalAddress, as reader: Accessor, to destination: PhysicalAddress,
    as writer: Accessor
  ) throws(MemoryError) {
    let from = try checkedSpan(source, count: count)
    let to = try checkedSpan(destination, count: count)
    try checkRead(from, as: reader)
    try checkWrite(to, as: writer)
    guard count > 0 else { return }
    if seesPlaintext(from, reader) && seesPlaintext(to, writer) {
      (storage + to.offset).copyMemory(from: storage + from.offset, byteCount: count)
      if case .owner = writer { clearPoison(to) }
      return
    }
    let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
    defer { bounce.deallocate() }
    copyOut(from, into: bounce, as: reader)
    copyIn(to, from: UnsafeRawBufferPointer(bounce), as: writer)
  }
}

// MARK: - Range checks and the encryption engine

/// A validated byte range of host memory: its offset from `base` and length.
private struct MemorySpan {
  var offset: Int
  var count: Int
  /// The page numbers the range touches (empty for an empty range).
  var pages: Range<Int> {
    count == 0
      ? offset / PlatformMemory.pageSize..<offset / PlatformMemory.pageSize
      : offset / PlatformMemory.pageSize..<(offset + count - 1) / PlatformMemory.pageSize + 1
  }
}

extension PlatformMemory {
  /// The span of `[address, address + count)`, or EINVAL / EFAULT. Never traps on hostile input.
  private func checkedSpan(_ address: PhysicalAddress, count: Int) throws(MemoryError) -> MemorySpan {
    guard count >= 0 else { throw MemoryError(.invalidArgument("negative byte count \(count)")) }
    guard address >= base else { throw MemoryError(.outOfRange(address, count: count)) }
    let offset = address.rawValue - base.rawValue
    let size = UInt64(byteCount)
    guard offset <= size, UInt64(count) <= size - offset else {
      throw MemoryError(.outOfRange(address, count: count))
    }
    return MemorySpan(offset: Int(offset), count: count)
  }

  private func checkRead(_ span: MemorySpan, as accessor: Accessor) throws(MemoryError) {
    guard case .owner(let guest) = accessor else { return }
    for number in span.pages {
      let page = table[number]
      guard page.owner == guest else {
        throw MemoryError(.notOwner(page: address(ofPage: number), owner: page.owner))
      }
      if page.poisoned { throw MemoryError(.integrityFailure(page: address(ofPage: number))) }
    }
  }

  private func checkWrite(_ span: MemorySpan, as accessor: Accessor) throws(MemoryError) {
    guard case .owner(let guest) = accessor else { return }
    for number in span.pages {
      let page = table[number]
      guard page.owner == guest else {
        throw MemoryError(.notOwner(page: address(ofPage: number), owner: page.owner))
      }
      // A partial write reads the rest of the damaged page (read-modify-write): it fails like a read.
      if page.poisoned && !covers(span, wholePage: number) {
        throw MemoryError(.integrityFailure(page: address(ofPage: number)))
      }
    }
  }

  /// Whether `accessor` sees the plaintext of every page of `span` (owners, checked beforehand, always
  /// do; others do unless a page is private).
  private func seesPlaintext(_ span: MemorySpan, _ accessor: Accessor) -> Bool {
    if case .owner = accessor { return true }
    for number in span.pages where table[number].state == .private { return false }
    return true
  }

  /// Copies a checked span out to `destination` (of `span.count` bytes), encrypting private pages for
  /// an untrusted reader.
  private func copyOut(
    _ span: MemorySpan, into destination: UnsafeMutableRawBufferPointer, as accessor: Accessor
  ) {
    guard span.count > 0, let target = destination.baseAddress else { return }
    if seesPlaintext(span, accessor) {
      target.copyMemory(from: storage + span.offset, byteCount: span.count)
      return
    }
    forEachPiece(of: span) { number, pageOffset, pieceOffset, length in
      let piece = UnsafeMutableRawBufferPointer(start: target + pieceOffset, count: length)
      let page = table[number]
      guard page.state == .private, let owner = page.owner else {
        piece.copyMemory(
          from: UnsafeRawBufferPointer(rebasing: pageBytes(number)[pageOffset..<pageOffset + length]))
        return
      }
      if length == Self.pageSize {
        encrypt(number, owner: owner, into: piece)
      } else {
        encrypt(number, owner: owner, into: scratch)
        piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[pageOffset..<pageOffset + length]))
      }
    }
  }

  /// Copies `source` (of `span.count` bytes) into a checked span: plaintext for the owner (clearing
  /// the poison of whole pages), the DRAM overlay on private pages for anyone else.
  private func copyIn(_ span: MemorySpan, from source: UnsafeRawBufferPointer, as accessor: Accessor) {
    guard span.count > 0, let origin = source.baseAddress else { return }
    if seesPlaintext(span, accessor) {
      (storage + span.offset).copyMemory(from: origin, byteCount: span.count)
      if case .owner = accessor { clearPoison(span) }
      return
    }
    forEachPiece(of: span) { number, pageOffset, pieceOffset, length in
      let piece = UnsafeRawBufferPointer(start: origin + pieceOffset, count: length)
      let page = table[number]
      guard page.state == .private, let owner = page.owner else {
        (storage + number * Self.pageSize + pageOffset).copyMemory(
          from: origin + pieceOffset, byteCount: length)
        return
      }
      // The page's ciphertext with the written bytes over it is what DRAM now holds; its plaintext is
      // whatever that decrypts to, and the integrity check no longer matches.
      encrypt(number, owner: owner, into: scratch)
      UnsafeMutableRawBufferPointer(rebasing: scratch[pageOffset..<pageOffset + length]).copyMemory(
        from: piece)
      decrypt(scratch, intoPage: number, owner: owner)
      table[number].poisoned = true
      sharedFile?.poison[number] = 1
    }
  }

  /// Clears the poison of every page `span` covers entirely (the owner rewrote all of it).
  private func clearPoison(_ span: MemorySpan) {
    for number in span.pages where table[number].poisoned && covers(span, wholePage: number) {
      table[number].poisoned = false
      sharedFile?.poison[number] = 0
    }
  }

  private func covers(_ span: MemorySpan, wholePage number: Int) -> Bool {
    span.offset <= number * Self.pageSize && span.offset + span.count >= (number + 1) * Self.pageSize
  }

  /// Calls `body(page number, offset in the page, offset in the span, length)` for each page's part of
  /// the span, in order.
  private func forEachPiece(of span: MemorySpan, _ body: (Int, Int, Int, Int) -> Void) {
    var position = span.offset
    let end = span.offset + span.count
    while position < end {
      let number = position / Self.pageSize
      let pageOffset = position - number * Self.pageSize
      let length = min(Self.pageSize - pageOffset, end - position)
      body(number, pageOffset, position - span.offset, length)
      position += length
    }
  }

  /// The XTS tweak of a page: its host physical address, 16 bytes little-endian.
  private func tweak(ofPage number: Int) -> [UInt8] {
    AES256XTS.tweak(dataUnit: address(ofPage: number).rawValue)
  }

  /// The ciphertext DRAM holds for private page `number`.
  private func encrypt(_ number: Int, owner: GuestID, into destination: UnsafeMutableRawBufferPointer) {
    guard let key = keys[owner] else { preconditionFailure("private page \(number) of \(owner) has no key") }
    do {
      try key.encrypt(
        UnsafeRawBufferPointer(pageBytes(number)), into: destination, tweak: tweak(ofPage: number))
    } catch {
      fatalError("memory encryption failed: \(error)")
    }
  }

  /// Replaces private page `number`'s plaintext with the decryption of `ciphertext`.
  private func decrypt(_ ciphertext: UnsafeMutableRawBufferPointer, intoPage number: Int, owner: GuestID) {
    guard let key = keys[owner] else { preconditionFailure("private page \(number) of \(owner) has no key") }
    do {
      try key.decrypt(
        UnsafeRawBufferPointer(ciphertext), into: pageBytes(number), tweak: tweak(ofPage: number))
    } catch {
      fatalError("memory decryption failed: \(error)")
    }
  }
}
