import CoveCrypto
import HostPlatform
import IOMMU
import Testing

/// Platform memory for confidential guests (issue 5, SEMANTICS.md §5): the ownership table, the
/// memory encryption engine as each accessor sees it, conversion, assignment and release, isolation.
@Suite struct PlatformMemoryTests {
  static let base = PhysicalAddress(0x8000_0000)
  static let seed: UInt64 = 0x5eed
  static let pageSize = PlatformMemory.pageSize
  let guestA = GuestID(1)
  let guestB = GuestID(2)

  /// 8 pages at 0x8000_0000, keys drawn from `SeededEntropy(seed:)`.
  func makeMemory(pages: Int = 8) -> PlatformMemory {
    PlatformMemory(base: Self.base, pages: pages, entropy: SeededEntropy(seed: Self.seed))
  }

  /// The keys the memory draws, in order: the same seeded stream, 64 bytes per key.
  func expectedKeys(_ count: Int) throws -> [AES256XTS] {
    let twin = SeededEntropy(seed: Self.seed)
    return try (0..<count).map { _ in try AES256XTS(key: twin.bytes(count: 64)) }
  }

  func page(_ number: Int) -> PhysicalAddress {
    Self.base.advanced(by: UInt64(number * Self.pageSize))
  }

  func pattern(_ count: Int, _ salt: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(salt)) }
  }

  func ciphertext(_ plaintext: [UInt8], key: AES256XTS, at address: PhysicalAddress) throws -> [UInt8] {
    try key.encrypt(plaintext, tweak: AES256XTS.tweak(dataUnit: address.rawValue))
  }

  func zeros(_ count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }

  // MARK: - Layout and assignment

  @Test func newMemoryIsZeroedHypervisorPages() throws {
    let memory = makeMemory()
    #expect(memory.base == Self.base)
    #expect(memory.pageCount == 8)
    #expect(memory.end == PhysicalAddress(0x8000_8000))
    #expect(memory.freePageCount == 8)
    for number in 0..<8 {
      #expect(memory.page(at: page(number)) == PlatformMemory.Page(owner: nil, state: .hypervisor))
      #expect(memory.page(at: page(number).advanced(by: 4095))?.state == .hypervisor)
    }
    #expect(memory.page(at: memory.end) == nil)
    #expect(memory.page(at: PhysicalAddress(Self.base.rawValue - 1)) == nil)
    #expect(try memory.read(Self.base, count: 8 * Self.pageSize, as: .untrusted) == zeros(8 * Self.pageSize))
  }

  @Test func defaultBaseIsZero() throws {
    let memory = PlatformMemory(pages: 2, entropy: SeededEntropy(seed: 1))
    #expect(memory.base == PhysicalAddress(0))
    #expect(memory.end == PhysicalAddress(0x2000))
    #expect(try memory.assign(pages: 2, to: guestA) == [PhysicalAddress(0), PhysicalAddress(0x1000)])
  }

  @Test func assignHandsOutTheLowestFreePagesPrivateAndZeroed() throws {
    let memory = makeMemory()
    // The host leaves data in a free page; the guest gets it zeroed.
    try memory.write(pattern(Self.pageSize, 1), at: page(1), as: .untrusted)
    #expect(try memory.assign(pages: 3, to: guestA) == [page(0), page(1), page(2)])
    #expect(try memory.assign(pages: 2, to: guestB) == [page(3), page(4)])
    #expect(memory.freePageCount == 3)
    for number in 0..<3 {
      #expect(memory.page(at: page(number)) == PlatformMemory.Page(owner: guestA, state: .private))
    }
    #expect(memory.page(at: page(4)) == PlatformMemory.Page(owner: guestB, state: .private))
    #expect(memory.page(at: page(5)) == PlatformMemory.Page(owner: nil, state: .hypervisor))
    #expect(try memory.read(page(1), count: Self.pageSize, as: .owner(guestA)) == zeros(Self.pageSize))
    #expect(try memory.assign(pages: 0, to: guestB) == [])
  }

  @Test func assignBeyondTheFreePagesIsRefusedWithNothingAssigned() throws {
    let memory = makeMemory(pages: 4)
    _ = try memory.assign(pages: 3, to: guestA)
    #expect(throws: MemoryError(.exhausted(requested: 2, free: 1))) {
      try memory.assign(pages: 2, to: guestB)
    }
    #expect(MemoryError(.exhausted(requested: 2, free: 1)).errno == .ENOMEM)
    #expect(memory.freePageCount == 1)
    #expect(memory.page(at: page(3)) == PlatformMemory.Page(owner: nil, state: .hypervisor))
    #expect(throws: MemoryError(.invalidArgument("negative page count -1"))) {
      try memory.assign(pages: -1, to: guestB)
    }
    #expect(try memory.assign(pages: 1, to: guestB) == [page(3)])
    #expect(throws: MemoryError(.exhausted(requested: 1, free: 0))) {
      try memory.assign(pages: 1, to: guestB)
    }
  }

  @Test func releaseScrubsAndReturnsEveryPageOfTheGuest() throws {
    let memory = makeMemory(pages: 4)
    let pagesA = try memory.assign(pages: 2, to: guestA)
    let pagesB = try memory.assign(pages: 1, to: guestB)
    try memory.convert(pagesA[1], to: .shared, by: guestA)
    try memory.write(pattern(Self.pageSize, 2), at: pagesA[0], as: .owner(guestA))
    try memory.write(pattern(Self.pageSize, 3), at: pagesA[1], as: .owner(guestA))
    try memory.write(pattern(16, 4), at: pagesB[0], as: .owner(guestB))
    try memory.write(pattern(16, 5), at: pagesA[0], as: .untrusted)  // poisons it

    #expect(memory.release(guestA) == 2)
    #expect(memory.freePageCount == 3)
    for address in pagesA {
      #expect(memory.page(at: address) == PlatformMemory.Page(owner: nil, state: .hypervisor))
      #expect(try memory.read(address, count: Self.pageSize, as: .untrusted) == zeros(Self.pageSize))
    }
    // Guest B is untouched.
    #expect(try memory.read(pagesB[0], count: 16, as: .owner(guestB)) == pattern(16, 4))
    #expect(memory.release(guestA) == 0)
    // The freed pages go out again, lowest first.
    #expect(try memory.assign(pages: 3, to: guestA) == [page(0), page(1), page(3)])
  }

  @Test func releaseDestroysTheKeyAndTheNextAssignmentGetsANewOne() throws {
    let memory = makeMemory(pages: 2)
    let keys = try expectedKeys(2)
    let plaintext = pattern(Self.pageSize, 9)

    let first = try memory.assign(pages: 1, to: guestA)[0]
    try memory.write(plaintext, at: first, as: .owner(guestA))
    let before = try memory.read(first, count: Self.pageSize, as: .untrusted)
    #expect(before == (try ciphertext(plaintext, key: keys[0], at: first)))

    memory.release(guestA)
    let second = try memory.assign(pages: 1, to: guestA)[0]
    #expect(second == first)
    try memory.write(plaintext, at: second, as: .owner(guestA))
    let after = try memory.read(second, count: Self.pageSize, as: .untrusted)
    #expect(after != before)
    #expect(after == (try ciphertext(plaintext, key: keys[1], at: second)))
  }

  @Test func aGuestKeepsItsKeyAcrossAssignmentsAndGuestsHaveDistinctKeys() throws {
    let memory = makeMemory()
    let keys = try expectedKeys(2)
    let a0 = try memory.assign(pages: 1, to: guestA)[0]
    let b0 = try memory.assign(pages: 1, to: guestB)[0]
    let a1 = try memory.assign(pages: 1, to: guestA)[0]
    let plaintext = pattern(Self.pageSize, 7)
    for (address, guest) in [(a0, guestA), (b0, guestB), (a1, guestA)] {
      try memory.write(plaintext, at: address, as: .owner(guest))
    }
    #expect(
      try memory.read(a0, count: Self.pageSize, as: .untrusted) == ciphertext(plaintext, key: keys[0], at: a0)
    )
    #expect(
      try memory.read(b0, count: Self.pageSize, as: .untrusted) == ciphertext(plaintext, key: keys[1], at: b0)
    )
    #expect(
      try memory.read(a1, count: Self.pageSize, as: .untrusted) == ciphertext(plaintext, key: keys[0], at: a1)
    )
  }

  // MARK: - What each accessor sees

  @Test func theOwnerReadsAndWritesPlaintextOfItsPrivateAndSharedPages() throws {
    let memory = makeMemory()
    let pages = try memory.assign(pages: 2, to: guestA)
    try memory.convert(pages[1], to: .shared, by: guestA)
    let data = pattern(300, 11)
    try memory.write(data, at: pages[0].advanced(by: 100), as: .owner(guestA))
    try memory.write(data, at: pages[1].advanced(by: 200), as: .owner(guestA))
    #expect(try memory.read(pages[0].advanced(by: 100), count: 300, as: .owner(guestA)) == data)
    #expect(try memory.read(pages[1].advanced(by: 200), count: 300, as: .owner(guestA)) == data)
    #expect(try memory.read(pages[0], count: 100, as: .owner(guestA)) == zeros(100))
    // The untrusted view of the shared page is the same plaintext.
    #expect(try memory.read(pages[1].advanced(by: 200), count: 300, as: .untrusted) == data)
  }

  @Test func anUntrustedReadOfAPrivatePageIsItsXTSCiphertextUnderTheGuestKeyAndAddress() throws {
    let memory = makeMemory()
    let key = try expectedKeys(1)[0]
    let pages = try memory.assign(pages: 2, to: guestA)
    let plaintext = pattern(Self.pageSize, 21)
    try memory.write(plaintext, at: pages[0], as: .owner(guestA))
    try memory.write(plaintext, at: pages[1], as: .owner(guestA))

    let seen = try memory.read(pages[0], count: Self.pageSize, as: .untrusted)
    #expect(seen == (try ciphertext(plaintext, key: key, at: pages[0])))
    #expect(seen != plaintext)
    #expect(try key.decrypt(seen, tweak: AES256XTS.tweak(dataUnit: pages[0].rawValue)) == plaintext)
    // The tweak is the address: the same plaintext one page up encrypts differently.
    let seenAbove = try memory.read(pages[1], count: Self.pageSize, as: .untrusted)
    #expect(seenAbove == (try ciphertext(plaintext, key: key, at: pages[1])))
    #expect(seenAbove != seen)
    // Part of a page is the matching part of the page's ciphertext; across both pages, both parts.
    #expect(
      try memory.read(pages[0].advanced(by: 1000), count: 24, as: .untrusted) == Array(seen[1000..<1024]))
    #expect(
      try memory.read(pages[0].advanced(by: 4000), count: 200, as: .untrusted)
        == Array(seen[4000...]) + Array(seenAbove[0..<104]))
  }

  @Test func anUntrustedReadOfSharedAndHypervisorPagesIsPlaintext() throws {
    let memory = makeMemory()
    let shared = try memory.assign(pages: 1, to: guestA)[0]
    try memory.convert(shared, to: .shared, by: guestA)
    try memory.write(pattern(64, 1), at: shared, as: .owner(guestA))
    #expect(try memory.read(shared, count: 64, as: .untrusted) == pattern(64, 1))
    try memory.write(pattern(64, 2), at: page(5), as: .untrusted)
    #expect(try memory.read(page(5), count: 64, as: .untrusted) == pattern(64, 2))
    // An untrusted write to a shared page is a plain write the owner reads back.
    try memory.write(pattern(64, 3), at: shared, as: .untrusted)
    #expect(try memory.read(shared, count: 64, as: .owner(guestA)) == pattern(64, 3))
    #expect(memory.page(at: shared)?.poisoned == false)
  }

  // MARK: - Isolation

  @Test func aGuestReachesNoPageOfAnotherGuestOrOfTheHypervisor() throws {
    let memory = makeMemory()
    let pageA = try memory.assign(pages: 1, to: guestA)[0]
    let pagesB = try memory.assign(pages: 2, to: guestB)
    try memory.convert(pagesB[1], to: .shared, by: guestB)
    try memory.write(pattern(Self.pageSize, 1), at: pagesB[0], as: .owner(guestB))
    try memory.write(pattern(Self.pageSize, 2), at: pagesB[1], as: .owner(guestB))
    let hypervisorPage = page(6)
    try memory.write(pattern(32, 3), at: hypervisorPage, as: .untrusted)

    for target in pagesB {
      #expect(throws: MemoryError(.notOwner(page: target, owner: guestB))) {
        try memory.read(target, count: 1, as: .owner(guestA))
      }
      #expect(throws: MemoryError(.notOwner(page: target, owner: guestB))) {
        try memory.write([0xff], at: target.advanced(by: 10), as: .owner(guestA))
      }
    }
    #expect(throws: MemoryError(.notOwner(page: hypervisorPage, owner: nil))) {
      try memory.read(hypervisorPage, count: 32, as: .owner(guestA))
    }
    #expect(throws: MemoryError(.notOwner(page: hypervisorPage, owner: nil))) {
      try memory.write([1], at: hypervisorPage, as: .owner(guestA))
    }
    #expect(MemoryError(.notOwner(page: hypervisorPage, owner: nil)).errno == .EPERM)
    // Nothing changed.
    #expect(try memory.read(pagesB[0], count: Self.pageSize, as: .owner(guestB)) == pattern(Self.pageSize, 1))
    #expect(try memory.read(pagesB[1], count: Self.pageSize, as: .owner(guestB)) == pattern(Self.pageSize, 2))
    #expect(try memory.read(hypervisorPage, count: 32, as: .untrusted) == pattern(32, 3))
    #expect(memory.page(at: pagesB[0]) == PlatformMemory.Page(owner: guestB, state: .private))
    #expect(try memory.read(pageA, count: 16, as: .owner(guestA)) == zeros(16))
  }

  @Test func anAccessSpanningPagesIsCheckedAsAWhole() throws {
    let memory = makeMemory()
    let pageA = try memory.assign(pages: 1, to: guestA)[0]
    let pageB = try memory.assign(pages: 1, to: guestB)[0]
    #expect(pageB == pageA.advanced(by: 4096))
    try memory.write(pattern(Self.pageSize, 1), at: pageA, as: .owner(guestA))
    try memory.write(pattern(Self.pageSize, 2), at: pageB, as: .owner(guestB))

    // A's own page, then B's: refused as a whole, nothing read and nothing written.
    #expect(throws: MemoryError(.notOwner(page: pageB, owner: guestB))) {
      try memory.read(pageA.advanced(by: 4000), count: 200, as: .owner(guestA))
    }
    #expect(throws: MemoryError(.notOwner(page: pageB, owner: guestB))) {
      try memory.write(zeros(200), at: pageA.advanced(by: 4000), as: .owner(guestA))
    }
    var buffer = [UInt8](repeating: 0xee, count: 200)
    #expect(throws: MemoryError(.notOwner(page: pageB, owner: guestB))) {
      try buffer.withUnsafeMutableBytes {
        try memory.read(pageA.advanced(by: 4000), into: $0, as: .owner(guestA))
      }
    }
    #expect(buffer == [UInt8](repeating: 0xee, count: 200))
    #expect(try memory.read(pageA, count: Self.pageSize, as: .owner(guestA)) == pattern(Self.pageSize, 1))
    #expect(try memory.read(pageB, count: Self.pageSize, as: .owner(guestB)) == pattern(Self.pageSize, 2))

    // A's private page then A's shared page: one plaintext access.
    let pagesA = try memory.assign(pages: 2, to: guestA)
    try memory.convert(pagesA[1], to: .shared, by: guestA)
    try memory.write(pattern(5000, 3), at: pagesA[0].advanced(by: 1000), as: .owner(guestA))
    #expect(
      try memory.read(pagesA[0].advanced(by: 1000), count: 5000, as: .owner(guestA)) == pattern(5000, 3))
    // Untrusted across them: the private part is ciphertext, the shared part plaintext.
    let key = try expectedKeys(1)[0]
    var privatePlaintext = zeros(1000)
    privatePlaintext += Array(pattern(5000, 3)[0..<3096])
    let seen = try memory.read(pagesA[0].advanced(by: 1000), count: 5000, as: .untrusted)
    #expect(
      Array(seen[0..<3096]) == Array(try ciphertext(privatePlaintext, key: key, at: pagesA[0])[1000...]))
    #expect(Array(seen[3096...]) == Array(pattern(5000, 3)[3096...]))
  }

  // MARK: - Untrusted writes and integrity

  @Test func anUntrustedWriteToAPrivatePageOverlaysItsCiphertextAndPoisonsIt() throws {
    let memory = makeMemory()
    let pages = try memory.assign(pages: 2, to: guestA)
    let target = pages[0]
    let plaintext = pattern(Self.pageSize, 41)
    try memory.write(plaintext, at: target, as: .owner(guestA))
    let before = try memory.read(target, count: Self.pageSize, as: .untrusted)

    let written: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x11]
    try memory.write(written, at: target.advanced(by: 100), as: .untrusted)
    #expect(memory.page(at: target) == PlatformMemory.Page(owner: guestA, state: .private, poisoned: true))
    #expect(memory.page(at: pages[1])?.poisoned == false)

    // The host sees DRAM: its bytes where it wrote them, the old ciphertext everywhere else.
    var expected = before
    expected.replaceSubrange(100..<106, with: written)
    #expect(try memory.read(target, count: Self.pageSize, as: .untrusted) == expected)

    // The owner's next read, or a partial write (read-modify-write), fails the integrity check.
    #expect(throws: MemoryError(.integrityFailure(page: target))) {
      try memory.read(target.advanced(by: 2000), count: 1, as: .owner(guestA))
    }
    #expect(MemoryError(.integrityFailure(page: target)).errno == .EIO)
    #expect(throws: MemoryError(.integrityFailure(page: target))) {
      try memory.write(zeros(Self.pageSize - 1), at: target, as: .owner(guestA))
    }
    // A read spanning a clean page and the poisoned one fails whole.
    #expect(throws: MemoryError(.integrityFailure(page: target))) {
      try memory.read(target.advanced(by: 4000), count: 200, as: .owner(guestA))
    }
    #expect(try memory.read(pages[1], count: 16, as: .owner(guestA)) == zeros(16))

    // Rewriting the whole page as its owner clears the poison.
    try memory.write(pattern(Self.pageSize, 42), at: target, as: .owner(guestA))
    #expect(memory.page(at: target)?.poisoned == false)
    #expect(try memory.read(target, count: Self.pageSize, as: .owner(guestA)) == pattern(Self.pageSize, 42))
  }

  @Test func anUntrustedWriteAcrossAPrivateAndAHypervisorPageActsOnEachAsItIs() throws {
    let memory = makeMemory(pages: 2)
    let privatePage = try memory.assign(pages: 1, to: guestA)[0]
    let hypervisorPage = page(1)
    let ciphertextBefore = try memory.read(privatePage, count: Self.pageSize, as: .untrusted)
    let written = pattern(300, 50)
    try memory.write(written, at: privatePage.advanced(by: 3946), as: .untrusted)
    #expect(memory.page(at: privatePage)?.poisoned == true)
    #expect(memory.page(at: hypervisorPage) == PlatformMemory.Page(owner: nil, state: .hypervisor))
    #expect(
      try memory.read(privatePage, count: Self.pageSize, as: .untrusted)
        == Array(ciphertextBefore[0..<3946]) + Array(written[0..<150]))
    #expect(try memory.read(hypervisorPage, count: 150, as: .untrusted) == Array(written[150...]))
  }

  // MARK: - Conversion

  @Test func conversionScrubsThePageAndChangesItsState() throws {
    let memory = makeMemory()
    let key = try expectedKeys(1)[0]
    let target = try memory.assign(pages: 1, to: guestA)[0]
    try memory.write(pattern(Self.pageSize, 61), at: target, as: .owner(guestA))

    try memory.convert(target, to: .shared, by: guestA)
    #expect(memory.page(at: target) == PlatformMemory.Page(owner: guestA, state: .shared))
    #expect(try memory.read(target, count: Self.pageSize, as: .owner(guestA)) == zeros(Self.pageSize))
    #expect(try memory.read(target, count: Self.pageSize, as: .untrusted) == zeros(Self.pageSize))

    try memory.write(pattern(Self.pageSize, 62), at: target, as: .untrusted)
    try memory.convert(target, to: .private, by: guestA)
    #expect(memory.page(at: target) == PlatformMemory.Page(owner: guestA, state: .private))
    #expect(try memory.read(target, count: Self.pageSize, as: .owner(guestA)) == zeros(Self.pageSize))
    #expect(
      try memory.read(target, count: Self.pageSize, as: .untrusted)
        == (try ciphertext(zeros(Self.pageSize), key: key, at: target)))
  }

  @Test func conversionIsRefusedForTheWrongGuestStateOrAddressWithNothingChanged() throws {
    let memory = makeMemory()
    let target = try memory.assign(pages: 1, to: guestA)[0]
    try memory.write(pattern(64, 71), at: target, as: .owner(guestA))
    let untouched = PlatformMemory.Page(owner: guestA, state: .private)

    #expect(throws: MemoryError(.notOwner(page: target, owner: guestA))) {
      try memory.convert(target, to: .shared, by: guestB)
    }
    #expect(throws: MemoryError(.wrongState(page: target, state: .private))) {
      try memory.convert(target, to: .private, by: guestA)
    }
    #expect(MemoryError(.wrongState(page: target, state: .private)).errno == .EINVAL)
    #expect(throws: MemoryError(.notOwner(page: page(7), owner: nil))) {
      try memory.convert(page(7), to: .shared, by: guestA)
    }
    #expect(throws: MemoryError.self) { try memory.convert(target, to: .hypervisor, by: guestA) }
    let unaligned = #expect(throws: MemoryError.self) {
      try memory.convert(target.advanced(by: 8), to: .shared, by: guestA)
    }
    #expect(unaligned?.errno == .EINVAL)
    #expect(throws: MemoryError(.outOfRange(memory.end, count: 4096))) {
      try memory.convert(memory.end, to: .shared, by: guestA)
    }
    #expect(throws: MemoryError(.outOfRange(PhysicalAddress(UInt64.max & ~0xfff), count: 4096))) {
      try memory.convert(PhysicalAddress(UInt64.max & ~0xfff), to: .shared, by: guestA)
    }
    #expect(memory.page(at: target) == untouched)
    #expect(try memory.read(target, count: 64, as: .owner(guestA)) == pattern(64, 71))

    try memory.convert(target, to: .shared, by: guestA)
    #expect(throws: MemoryError(.wrongState(page: target, state: .shared))) {
      try memory.convert(target, to: .shared, by: guestA)
    }
  }

  @Test func convertingAPoisonedPageScrubsThePoisonAway() throws {
    let memory = makeMemory()
    let target = try memory.assign(pages: 1, to: guestA)[0]
    try memory.write([1, 2, 3], at: target, as: .untrusted)
    #expect(memory.page(at: target)?.poisoned == true)
    try memory.convert(target, to: .shared, by: guestA)
    #expect(memory.page(at: target) == PlatformMemory.Page(owner: guestA, state: .shared))
    #expect(try memory.read(target, count: Self.pageSize, as: .owner(guestA)) == zeros(Self.pageSize))
  }

  // MARK: - Copies and buffer forms

  @Test func copiesMoveBytesAsReadThenWrittenByEachAccessor() throws {
    let memory = makeMemory()
    let key = try expectedKeys(1)[0]
    let pages = try memory.assign(pages: 3, to: guestA)
    try memory.convert(pages[2], to: .shared, by: guestA)
    let data = pattern(Self.pageSize, 81)
    try memory.write(data, at: pages[0], as: .owner(guestA))

    // Trusted: private to private, overlapping (memmove semantics).
    try memory.copy(
      6000, from: pages[0], as: .owner(guestA), to: pages[0].advanced(by: 100), as: .owner(guestA))
    #expect(try memory.read(pages[0].advanced(by: 100), count: 4096, as: .owner(guestA)) == data)

    // A T=0 engine copying private to shared moves ciphertext.
    try memory.write(data, at: pages[0], as: .owner(guestA))
    try memory.copy(Self.pageSize, from: pages[0], as: .untrusted, to: pages[2], as: .untrusted)
    #expect(
      try memory.read(pages[2], count: Self.pageSize, as: .owner(guestA))
        == (try ciphertext(data, key: key, at: pages[0])))

    // A trusted device copying from the shared bounce page into private memory moves plaintext.
    try memory.write(pattern(256, 82), at: pages[2], as: .untrusted)
    try memory.copy(256, from: pages[2], as: .untrusted, to: pages[1].advanced(by: 8), as: .owner(guestA))
    #expect(try memory.read(pages[1].advanced(by: 8), count: 256, as: .owner(guestA)) == pattern(256, 82))

    // An untrusted copy into private memory poisons it.
    try memory.copy(16, from: pages[2], as: .untrusted, to: pages[1], as: .untrusted)
    #expect(memory.page(at: pages[1])?.poisoned == true)
    // Refusals write nothing.
    let other = try memory.assign(pages: 1, to: guestB)[0]
    #expect(throws: MemoryError(.notOwner(page: other, owner: guestB))) {
      try memory.copy(16, from: other, as: .owner(guestA), to: pages[2], as: .owner(guestA))
    }
    #expect(throws: MemoryError(.notOwner(page: other, owner: guestB))) {
      try memory.copy(16, from: pages[2], as: .owner(guestA), to: other, as: .owner(guestA))
    }
    #expect(try memory.read(pages[2], count: 256, as: .owner(guestA)) == pattern(256, 82))
    #expect(try memory.read(other, count: 16, as: .owner(guestB)) == zeros(16))
  }

  @Test func bufferFormsMatchTheArrayForms() throws {
    let memory = makeMemory()
    let pages = try memory.assign(pages: 2, to: guestA)
    let data = pattern(6000, 91)
    try data.withUnsafeBytes { try memory.write($0, at: pages[0].advanced(by: 50), as: .owner(guestA)) }
    var back = zeros(6000)
    try back.withUnsafeMutableBytes {
      try memory.read(pages[0].advanced(by: 50), into: $0, as: .owner(guestA))
    }
    #expect(back == data)
    var seen = zeros(6000)
    try seen.withUnsafeMutableBytes { try memory.read(pages[0].advanced(by: 50), into: $0, as: .untrusted) }
    #expect(seen == (try memory.read(pages[0].advanced(by: 50), count: 6000, as: .untrusted)))
    #expect(seen != data)
  }

  // MARK: - Hostile input

  @Test func hostileAddressesAndCountsAreErrorsNeverTraps() throws {
    let memory = makeMemory()
    let target = try memory.assign(pages: 1, to: guestA)[0]
    let end = memory.end
    let below = PhysicalAddress(Self.base.rawValue - 1)
    let top = PhysicalAddress(UInt64.max)

    #expect(throws: MemoryError(.invalidArgument("negative byte count -1"))) {
      try memory.read(target, count: -1, as: .owner(guestA))
    }
    #expect(throws: MemoryError.self) { try memory.read(target, count: Int.min, as: .untrusted) }
    #expect(throws: MemoryError(.outOfRange(below, count: 1))) {
      try memory.read(below, count: 1, as: .untrusted)
    }
    #expect(throws: MemoryError(.outOfRange(end, count: 1))) {
      try memory.read(end, count: 1, as: .untrusted)
    }
    #expect(throws: MemoryError(.outOfRange(top, count: 1))) {
      try memory.read(top, count: 1, as: .untrusted)
    }
    #expect(throws: MemoryError(.outOfRange(target, count: Int.max))) {
      try memory.read(target, count: Int.max, as: .owner(guestA))
    }
    #expect(MemoryError(.outOfRange(top, count: 1)).errno == .EFAULT)
    #expect(throws: MemoryError(.outOfRange(PhysicalAddress(0), count: 16))) {
      try memory.read(PhysicalAddress(0), count: 16, as: .untrusted)
    }
    // Empty accesses at the very end are fine; one byte past it is not.
    #expect(try memory.read(end, count: 0, as: .untrusted) == [])
    try memory.write([], at: end, as: .owner(guestA))
    let last = PhysicalAddress(end.rawValue - 2)
    #expect(throws: MemoryError(.outOfRange(last, count: 4))) {
      try memory.write([1, 2, 3, 4], at: last, as: .untrusted)
    }
    #expect(try memory.read(last, count: 2, as: .untrusted) == [0, 0])
    #expect(throws: MemoryError(.outOfRange(top, count: 16))) {
      try memory.write(zeros(16), at: top, as: .untrusted)
    }
    #expect(throws: MemoryError.self) {
      try memory.copy(-5, from: target, as: .owner(guestA), to: target, as: .owner(guestA))
    }
    #expect(throws: MemoryError(.outOfRange(top, count: 8))) {
      try memory.copy(8, from: target, as: .owner(guestA), to: top, as: .owner(guestA))
    }
    #expect(memory.page(at: top) == nil)
    #expect(memory.page(at: below) == nil)
  }

  @Test func errorsDescribeThemselvesWithTheirErrno() {
    #expect(
      MemoryError(.notOwner(page: PhysicalAddress(0x1000), owner: GuestID(2))).description
        == "EPERM: page pa 0x1000 belongs to guest 2")
    #expect(
      MemoryError(.notOwner(page: PhysicalAddress(0x1000), owner: nil)).description
        == "EPERM: page pa 0x1000 belongs to the hypervisor")
    #expect(
      MemoryError(.integrityFailure(page: PhysicalAddress(0x2000))).description
        == "EIO: integrity check failed on page pa 0x2000")
    #expect(MemoryError(.exhausted(requested: 3, free: 1)).description == "ENOMEM: 3 pages asked for, 1 free")
  }
}
