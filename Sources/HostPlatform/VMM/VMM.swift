public import GuestABI
public import IOMMU
public import PCIe
import TDISP

/// A guest as the VMM creates it.
public struct GuestConfiguration: Hashable, Sendable {
  /// Guest memory, a whole number of 4 KiB pages.
  public var memoryBytes: UInt64
  /// The IOVA boundary X without a vIOMMU (SEMANTICS.md §5): IOVA < X is private (GPA = IOVA),
  /// IOVA ≥ X shared (GPA = IOVA − X). `UInt64.max` means all private. Default: half the 48-bit
  /// address width, 2^47.
  public var boundary: UInt64
  /// Whether the guest's IOMMU domain may map host-contiguous runs with 2 MiB / 1 GiB leaves; false
  /// maps every page with a 4 KiB leaf.
  public var largeIOMMUPages: Bool
  /// A paravirtual vIOMMU (Sources/HostPlatform/VIOMMU/README.md): the guest keeps stage-1 tables in
  /// its private memory and the platform walks them nested; the boundary X then plays no part.
  public var viommu: Bool

  public static let defaultBoundary: UInt64 = 1 << 47

  public init(
    memoryBytes: UInt64, boundary: UInt64 = GuestConfiguration.defaultBoundary, largeIOMMUPages: Bool = true,
    viommu: Bool = false
  ) {
    self.memoryBytes = memoryBytes
    self.boundary = boundary
    self.largeIOMMUPages = largeIOMMUPages
    self.viommu = viommu
  }
}

/// A refused VMM request, with the errno a guest's hypercall returns.
public struct VMMError: Error, Hashable, Sendable, CustomStringConvertible {
  public var errno: Errno
  public var message: String
  public init(_ errno: Errno, _ message: String) {
    self.errno = errno
    self.message = message
  }
  public var description: String { "\(errno): \(message)" }
}

/// One running confidential guest: its pages (GPA page n is `pages[n]`), its IOMMU domain (the
/// boundary split of SEMANTICS.md §5), and the interrupts delivered to it.
public final class VMMGuest {
  public let id: GuestID
  public let configuration: GuestConfiguration
  /// Stage 2: host page of each guest-physical page.
  public let pages: [PhysicalAddress]
  /// The host IOMMU domain the guest's devices DMA through.
  public let domain: IOMMUDomain
  /// MSI-X messages delivered, oldest first.
  public internal(set) var interrupts: [(function: RequesterID, vector: UInt16)] = []
  /// Each assigned function's TDI state as last told to the guest (``VMM/notifications(for:)``).
  var lastTDIStates: [RequesterID: TDIState] = [:]
  /// The platform memory the pages live in: the one record of which are private and which shared.
  let memory: PlatformMemory

  /// Guest-physical page numbers currently shared (read from the ownership table, not kept twice).
  public var sharedPages: Set<UInt64> {
    Set(pages.indices.filter { isShared(page: $0) }.map { UInt64($0) })
  }

  /// Whether guest-physical page `index` is shared now.
  func isShared(page index: Int) -> Bool { memory.page(at: pages[index])?.state == .shared }
  /// The guest's vIOMMU, when it has one.
  public internal(set) var viommu: VIOMMU?

  init(
    id: GuestID, configuration: GuestConfiguration, pages: [PhysicalAddress], domain: IOMMUDomain,
    memory: PlatformMemory
  ) {
    self.memory = memory
    self.id = id
    self.configuration = configuration
    self.pages = pages
    self.domain = domain
  }

  public var memoryBytes: UInt64 { UInt64(pages.count) * UInt64(PlatformMemory.pageSize) }

  /// The host page behind a guest-physical address, or nil outside guest memory.
  public func hostAddress(of gpa: UInt64) -> PhysicalAddress? {
    let page = gpa / UInt64(PlatformMemory.pageSize)
    guard page < UInt64(pages.count) else { return nil }
    return PhysicalAddress(pages[Int(page)].rawValue + gpa % UInt64(PlatformMemory.pageSize))
  }
}

/// The virtual machine monitor: creates guests (memory, boundary X), assigns devices to them,
/// handles their hypercalls (page conversion, guest requests to the TSM), forwards their MMIO and
/// delivers interrupts. Everything the guest side needs crosses this one interface
/// (ARCHITECTURE.md, "two boundaries").
public final class VMM {
  public let memory: PlatformMemory
  public let iommu: PlatformIOMMU
  public private(set) var guests: [GuestID: VMMGuest] = [:]
  /// Devices by function, and the TSM that drives each device.
  public private(set) var devices: [RequesterID: CoveDMADevice] = [:]
  private var tsms: [ObjectIdentifier: any TSMStanding] = [:]
  private var nextGuest: UInt32 = 1
  /// Everything that happened, in order (see ``PlatformEvent``).
  public private(set) var events: [PlatformEvent] = []
  public static let eventLogLimit = 1 << 16
  /// Events beyond the log's limit: counted, never silently lost.
  public private(set) var eventsNotLogged = 0

  func record(_ event: PlatformEvent) {
    if events.count < Self.eventLogLimit { events.append(event) } else { eventsNotLogged += 1 }
  }

  public init(memory: PlatformMemory, iommu: PlatformIOMMU) {
    self.memory = memory
    self.iommu = iommu
    iommu.standing = { [unowned self] requester in self.standing(of: requester) }
    iommu.interruptSink = { [unowned self] function, vector in self.deliver(function, vector) }
    iommu.faultSink = { [unowned self] fault in self.record(.dmaBlocked(fault)) }
  }

  // MARK: Guests

  /// Creates a guest: its pages (private), its IOMMU domain with the private alias IOVA = GPA mapped
  /// (large pages where the host pages allow). ENOMEM when host memory runs out.
  public func createGuest(_ configuration: GuestConfiguration) throws(VMMError) -> VMMGuest {
    let pageSize = UInt64(PlatformMemory.pageSize)
    guard configuration.memoryBytes > 0, configuration.memoryBytes % pageSize == 0 else {
      throw VMMError(.EINVAL, "guest memory must be a positive multiple of 4 KiB")
    }
    guard configuration.boundary == .max || configuration.boundary >= configuration.memoryBytes else {
      throw VMMError(.EINVAL, "boundary X below the top of guest memory would alias private and shared")
    }
    // The shared alias [X, X + memory) must be page-aligned and fit the domain's 48-bit IOVA space.
    let iovaLimit: UInt64 = 1 << 48
    guard
      configuration.viommu || configuration.boundary == .max
        || (configuration.boundary % pageSize == 0
          && configuration.boundary <= iovaLimit - configuration.memoryBytes)
    else {
      throw VMMError(
        .EINVAL,
        "boundary X 0x\(String(configuration.boundary, radix: 16)) must be all ones, or page-aligned with X + memory ≤ 2^48"
      )
    }
    let id = GuestID(nextGuest)
    let pages: [PhysicalAddress]
    do { pages = try memory.assign(pages: Int(configuration.memoryBytes / pageSize), to: id) } catch {
      throw VMMError(.ENOMEM, "\(error)")
    }
    let domain: IOMMUDomain
    do {
      domain = try iommu.core.allocateDomain(.paging)
      try mapRuns(
        domain, pages: pages, from: 0, iovaBase: 0, protection: [.read, .write],
        coalesce: configuration.largeIOMMUPages)
    } catch {
      _ = memory.release(id)
      throw VMMError(error.errno, error.reason)
    }
    nextGuest += 1
    let guest = VMMGuest(id: id, configuration: configuration, pages: pages, domain: domain, memory: memory)
    if configuration.viommu {
      let viommu = VIOMMU(
        guest: id, stage2: GuestStage2(pages: pages), memory: CheckedGuestReads(memory: memory))
      guest.viommu = viommu
      iommu.viommus[id] = viommu
    }
    guests[id] = guest
    record(
      .guestCreated(
        id, memoryBytes: configuration.memoryBytes, boundary: configuration.boundary,
        viommu: configuration.viommu))
    return guest
  }

  /// Destroys a guest whose VM is gone (its process died or disconnected mid-flow, or it shut down):
  /// every TDI bound to it is stopped (STOP_INTERFACE) and released by its TSM, its functions are
  /// taken back into blocking domains, its vIOMMU is dropped, every mapping of its IOMMU domain is
  /// torn down, and its pages are scrubbed and returned with its memory key destroyed. Then nothing of
  /// it is left: the returned account says what was done and names anything that was not undone
  /// (`leaks`, empty when all went), so a host serving other guests can tell.
  @discardableResult
  public func destroyGuest(_ id: GuestID) throws(VMMError) -> GuestTeardown {
    guard let vm = guests[id] else { throw VMMError(.ENODEV, "no \(id)") }
    var account = GuestTeardown(guest: id)
    let functions = assignedFunctions(of: id)
    for function in functions {
      if let device = devices[function], let tsm = tsms[ObjectIdentifier(device)],
        tsm.owner(of: function) == id
      {
        let running = device.tdisp.tdi(function).map { $0.state != .configUnlocked } ?? false
        do throws(TSMError) {
          try tsm.guestRelease(function, from: id)
          account.tdisReleased += 1
          if running { account.tdisStopped += 1 }
        } catch {
          account.leaks.append("\(function)'s TDI could not be released: \(error)")
        }
      }
    }
    for function in functions where iommu.assignments[function] == id {
      do { try iommu.unassign(function) } catch {
        account.leaks.append("\(function) could not be unassigned: \(error.reason)")
      }
      account.functionsUnassigned += 1
    }
    iommu.viommus[id] = nil
    vm.viommu = nil
    let leaves = (vm.domain.pageTable as? RadixIOPageTable)?.mappings() ?? []
    for mapping in leaves {
      do {
        _ = try vm.domain.unmap(mapping.iova, size: mapping.pageSize.bytes)
        account.mappingsRemoved += 1
      } catch {
        account.leaks.append("mapping at \(mapping.iova) could not be removed: \(error.reason)")
      }
    }
    account.pagesScrubbed = memory.release(id)
    guests[id] = nil
    // What must be gone is checked, not assumed.
    for function in functions {
      if let device = devices[function], let tsm = tsms[ObjectIdentifier(device)],
        tsm.owner(of: function) == id
      {
        account.leaks.append("\(function)'s TDI is still bound to \(id)")
      }
      if iommu.assignments[function] == id { account.leaks.append("\(function) is still assigned to \(id)") }
    }
    let left = vm.domain.pageTable?.mappedBytes ?? 0
    if left > 0 { account.leaks.append("\(left) bytes still mapped in \(id)'s IOMMU domain") }
    let owned = memory.pages(ownedBy: id)
    if owned > 0 { account.leaks.append("\(owned) page(s) still owned by \(id)") }
    record(.guestDestroyed(id, account))
    return account
  }

  /// Maps guest pages [from, from + count) at `iovaBase + gpa`, coalescing host-contiguous runs so
  /// the page table can use 2 MiB leaves where alignment allows.
  private func mapRuns(
    _ domain: IOMMUDomain, pages: [PhysicalAddress], from: Int, count: Int? = nil, iovaBase: UInt64,
    protection: IOProtection, coalesce: Bool
  ) throws(IOMMUError) {
    let pageSize = UInt64(PlatformMemory.pageSize)
    let end = from + (count ?? pages.count - from)
    var start = from
    while start < end {
      var next = start + 1
      while coalesce, next < end, pages[next].rawValue == pages[next - 1].rawValue + pageSize { next += 1 }
      try domain.map(
        IOVA(iovaBase + UInt64(start) * pageSize), to: pages[start], size: UInt64(next - start) * pageSize,
        protection: protection)
      start = next
    }
  }

  // MARK: Hypercalls

  /// Page conversion (set_memory_decrypted / set_memory_encrypted): the pages' contents are scrubbed,
  /// the alias that mapped them in the guest's IOMMU domain is unmapped (which invalidates the
  /// IOTLB) and the other alias mapped. Pages already in the asked state are an error (EINVAL); a page
  /// outside guest memory too; a page a trusted device maps private through the vIOMMU EBUSY. A
  /// refused conversion leaves every page in the state it had (pages already converted are converted
  /// back); their contents are scrubbed either way, as any conversion scrubs. Every outcome is an event.
  public func convert(_ guest: GuestID, gpa: UInt64, pages count: Int, toShared: Bool) throws(VMMError) {
    do { try convertPages(guest, gpa: gpa, pages: count, toShared: toShared) } catch {
      record(.conversionRefused(guest, gpa: gpa, errno: error.errno))
      throw error
    }
    record(.pagesConverted(guest, gpa: gpa, pages: count, toShared: toShared))
  }

  private func convertPages(_ guest: GuestID, gpa: UInt64, pages count: Int, toShared: Bool) throws(VMMError)
  {
    guard let vm = guests[guest] else { throw VMMError(.ENODEV, "no \(guest)") }
    let pageSize = UInt64(PlatformMemory.pageSize)
    guard gpa % pageSize == 0, count > 0, count <= vm.pages.count,
      gpa / pageSize <= UInt64(vm.pages.count - count)
    else {
      throw VMMError(.EINVAL, "conversion range outside guest memory or unaligned")
    }
    let first = Int(gpa / pageSize)
    let indices = first..<(first + count)
    // Every page is checked before any is touched: a refused range changes nothing.
    for index in indices where vm.isShared(page: index) == toShared {
      throw VMMError(
        .EINVAL,
        "GPA 0x\(String(UInt64(index) * pageSize, radix: 16)) is already \(toShared ? "shared" : "private")")
    }
    let usesAliases = vm.viommu == nil
    // A page a trusted or about-to-be-trusted device (its TDI locked or in RUN, bound to this guest)
    // has mapped private through the guest's vIOMMU cannot become shared under it: EBUSY until the
    // guest unmaps it and invalidates.
    if toShared, let viommu = vm.viommu {
      let trusted = Set(
        iommu.assignments.filter { $0.value == guest }.keys.filter {
          let standing = standing(of: $0)
          return [.configLocked, .run].contains(standing.tdiState) && standing.boundGuest == guest
        })
      if viommu.mapsPrivately(UInt64(first)..<UInt64(first + count), for: trusted) {
        throw VMMError(.EBUSY, "a trusted device has GPA 0x\(String(gpa, radix: 16)) mapped private")
      }
    }
    if toShared, usesAliases, vm.configuration.boundary == .max {
      throw VMMError(.EINVAL, "boundary X is all ones: the guest has no shared alias")
    }
    var done: [Int] = []
    for index in indices {
      do {
        try convertOne(vm, index: index, toShared: toShared, aliases: usesAliases)
        done.append(index)
      } catch {
        // Put the pages already converted back (scrubbed, as any conversion leaves them).
        for undone in done.reversed() {
          // Undoing a conversion this call just made needs no new table memory (the old alias's
          // tables were just released); should it still fail, the page is left as converted and
          // the error below still reports the refusal.
          try? convertOne(vm, index: undone, toShared: !toShared, aliases: usesAliases)
        }
        throw error
      }
    }
  }

  /// One page: the new alias is mapped first, then memory changes state (scrubbing it), then the old
  /// alias is unmapped (which invalidates the IOTLB); a failure undoes the steps before it. A vIOMMU
  /// guest has no aliases: its stage 2 is checked page by page on every access, so nothing cached
  /// can outlive the conversion.
  private func convertOne(_ vm: VMMGuest, index: Int, toShared: Bool, aliases: Bool) throws(VMMError) {
    let pageSize = UInt64(PlatformMemory.pageSize)
    let page = UInt64(index)
    let privateIOVA = IOVA(page * pageSize)
    let sharedIOVA = IOVA(vm.configuration.boundary &+ page * pageSize)
    let (newIOVA, oldIOVA) = toShared ? (sharedIOVA, privateIOVA) : (privateIOVA, sharedIOVA)
    let protection: IOProtection = toShared ? [.read, .write, .shared] : [.read, .write]
    if aliases {
      do { try vm.domain.map(newIOVA, to: vm.pages[index], size: pageSize, protection: protection) } catch {
        throw VMMError(error.errno, error.reason)
      }
    }
    do { try memory.convert(vm.pages[index], to: toShared ? .shared : .private, by: vm.id) } catch {
      if aliases { _ = try? vm.domain.unmap(newIOVA, size: pageSize) }
      throw VMMError(error.errno, "\(error)")
    }
    if aliases {
      do { _ = try vm.domain.unmapSplitting(oldIOVA) } catch {
        _ = try? memory.convert(vm.pages[index], to: toShared ? .private : .shared, by: vm.id)
        _ = try? vm.domain.unmap(newIOVA, size: pageSize)
        throw VMMError(error.errno, error.reason)
      }
    }
  }

  /// A vIOMMU command from the guest (the hypercall form of its command queue): attach, detach,
  /// invalidate. ENODEV when the guest has no vIOMMU; the command's own errors as the vIOMMU reports them.
  public func viommuCommand(_ guest: GuestID, _ command: VIOMMUCommand) throws(VMMError) {
    guard let viommu = guests[guest]?.viommu else { throw VMMError(.ENODEV, "\(guest) has no vIOMMU") }
    do { try viommu.execute(command) } catch { throw VMMError(error.errno, error.reason) }
  }

  /// The guest's MMIO to its vIOMMU's registers (Sources/HostPlatform/VIOMMU/README.md), trapped and
  /// forwarded. ENODEV when the guest has no vIOMMU.
  public func viommuRead(_ guest: GuestID, _ register: VIOMMURegister) throws(VMMError) -> UInt64 {
    guard let viommu = guests[guest]?.viommu else { throw VMMError(.ENODEV, "\(guest) has no vIOMMU") }
    return viommu.readRegister(register)
  }

  public func viommuWrite(_ guest: GuestID, _ register: VIOMMURegister, _ value: UInt64) throws(VMMError) {
    guard let viommu = guests[guest]?.viommu else { throw VMMError(.ENODEV, "\(guest) has no vIOMMU") }
    viommu.writeRegister(register, value)
  }

  // MARK: Devices

  /// Plugs a cove-dma device into the platform: its engines DMA through the IOMMU model, the TSM
  /// (through `standing`) tells the IOMMU which of its TDIs may send T=1.
  public func plug(_ device: CoveDMADevice, tsm: any TSMStanding) throws(VMMError) {
    for function in device.tdisp.functionIDs {
      do { try iommu.probe(function, description: device.description(of: function)) } catch {
        throw VMMError(error.errno, error.reason)
      }
    }
    device.attach(to: iommu)
    for function in device.tdisp.functionIDs { devices[function] = device }
    tsms[ObjectIdentifier(device)] = tsm
  }

  /// Routes `function`'s DMA into the guest's domain.
  public func assign(_ function: RequesterID, to guest: GuestID) throws(VMMError) {
    guard let vm = guests[guest] else { throw VMMError(.ENODEV, "no \(guest)") }
    guard devices[function] != nil else { throw VMMError(.ENODEV, "no device function \(function)") }
    if let owner = iommu.assignments[function], owner != guest {
      throw VMMError(.EBUSY, "\(function) is assigned to \(owner)")
    }
    // The whole group goes (functions without ACS cannot be separated): none of its TDIs may be
    // bound to another guest.
    let members = iommu.groupMembers(of: function)
    for member in members {
      if let device = devices[member], let owner = tsms[ObjectIdentifier(device)]?.owner(of: member),
        owner != guest
      {
        throw VMMError(.EBUSY, "\(member)'s TDI is bound to \(owner)")
      }
    }
    let before = Set(members.filter { iommu.assignments[$0] == guest })
    do { try iommu.assign(function, to: guest, domain: vm.domain) } catch {
      throw VMMError(error.errno, error.reason)
    }
    for member in members where !before.contains(member) {
      record(.deviceAssigned(member, guest, boundary: vm.viommu == nil ? vm.configuration.boundary : nil))
    }
  }

  /// A guest's configuration write to an assigned function, trapped by the VMM and forwarded: the
  /// device's own rules apply, so a write that changes a locked TDI's configuration takes it to ERROR
  /// (SEMANTICS.md §7). EPERM for a function not assigned to the guest.
  @discardableResult
  public func configWrite(
    _ guest: GuestID, function: RequesterID, offset: Int, size: Int, value: UInt32
  ) throws(VMMError) -> [ConfigSpaceEvent] {
    guard let device = devices[function], iommu.assignments[function] == guest else {
      throw VMMError(.EPERM, "\(function) is not assigned to \(guest)")
    }
    return device.tdisp.configWrite(function, offset: offset, size: size, value: value)
  }

  public func configRead(_ guest: GuestID, function: RequesterID, offset: Int, size: Int) throws(VMMError)
    -> UInt32
  {
    guard let device = devices[function], iommu.assignments[function] == guest else {
      throw VMMError(.EPERM, "\(function) is not assigned to \(guest)")
    }
    return device.tdisp.configRead(function, offset: offset, size: size)
  }

  /// A guest's MMIO access to an assigned function's BAR, trapped by the VMM. The guest's accesses
  /// to a TDI it accepted (RUN, bound to it) carry T=1; all others T=0 (SEMANTICS.md §5: MMIO marked
  /// private is served only to T=1 accesses from the owning guest in RUN).
  public func mmio(
    _ guest: GuestID, function: RequesterID, address: UInt64, write value: UInt32? = nil
  ) throws(VMMError) -> UInt32 {
    guard let device = devices[function], iommu.assignments[function] == guest else {
      throw VMMError(.EPERM, "\(function) is not assigned to \(guest)")
    }
    let standing = standing(of: function)
    let tBit = standing.tdiState == .run && standing.boundGuest == guest && standing.streamSecure
    let kind: TLP.Kind = value == nil ? .memoryRead(length: 4) : .memoryWrite(length: 4)
    return device.mmio(
      TLP(requesterID: function, address: address, tBit: tBit, kind: kind), at: function, value: value ?? 0)
  }

  // MARK: Guest and host views of memory

  /// The guest's CPU reading its own memory (plaintext of its pages), page by page through stage 2.
  public func guestRead(_ guest: GuestID, gpa: UInt64, count: Int) throws(VMMError) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(max(0, count))
    try forEachPage(guest, gpa: gpa, count: count) { (hpa, offset, length) throws(VMMError) in
      do throws(MemoryError) { bytes += try memory.read(hpa, count: length, as: .owner(guest)) } catch {
        throw VMMError(error.errno, "\(error)")
      }
    }
    return bytes
  }

  /// The guest's CPU writing its own memory. Every page is checked first, so a refused write writes
  /// nothing.
  public func guestWrite(_ guest: GuestID, gpa: UInt64, bytes: [UInt8]) throws(VMMError) {
    var pieces: [(PhysicalAddress, Int, Int)] = []
    try forEachPage(guest, gpa: gpa, count: bytes.count) { hpa, offset, length in
      pieces.append((hpa, offset, length))
    }
    for (hpa, _, _) in pieces {
      if let page = memory.page(at: hpa), page.owner != guest {
        throw VMMError(.EPERM, "GPA page at \(hpa) is not \(guest)'s")
      }
    }
    for (hpa, offset, length) in pieces {
      do { try memory.write(Array(bytes[offset..<(offset + length)]), at: hpa, as: .owner(guest)) } catch {
        throw VMMError(error.errno, "\(error)")
      }
    }
  }

  /// The guest's CPU copying within its own memory: every page of both ranges is checked first (a
  /// refused copy copies nothing), then each piece that lies in one page on both sides moves with
  /// one copy in platform memory.
  public func guestCopy(_ guest: GuestID, from source: UInt64, to destination: UInt64, count: Int)
    throws(VMMError)
  {
    var from: [(PhysicalAddress, Int, Int)] = []
    var to: [(PhysicalAddress, Int, Int)] = []
    try forEachPage(guest, gpa: source, count: count) { from.append(($0, $1, $2)) }
    try forEachPage(guest, gpa: destination, count: count) { to.append(($0, $1, $2)) }
    for (hpa, _, _) in from + to {
      if let page = memory.page(at: hpa), page.owner != guest {
        throw VMMError(.EPERM, "GPA page at \(hpa) is not \(guest)'s")
      }
    }
    var (i, j, done) = (0, 0, 0)
    while done < count {
      let (sourceHPA, sourceOffset, sourceLength) = from[i]
      let (destinationHPA, destinationOffset, destinationLength) = to[j]
      let intoSource = done - sourceOffset
      let intoDestination = done - destinationOffset
      let length = min(sourceLength - intoSource, destinationLength - intoDestination)
      do throws(MemoryError) {
        try memory.copy(
          length, from: sourceHPA.advanced(by: UInt64(intoSource)), as: .owner(guest),
          to: destinationHPA.advanced(by: UInt64(intoDestination)), as: .owner(guest))
      } catch { throw VMMError(error.errno, "\(error)") }
      done += length
      if intoSource + length == sourceLength { i += 1 }
      if intoDestination + length == destinationLength { j += 1 }
    }
  }

  /// Splits [gpa, gpa + count) at guest page boundaries and hands each piece's host address, its
  /// offset in the access and its length to `body`. EFAULT outside guest memory.
  private func forEachPage(
    _ guest: GuestID, gpa: UInt64, count: Int, _ body: (PhysicalAddress, Int, Int) throws(VMMError) -> Void
  ) throws(VMMError) {
    guard let vm = guests[guest] else { throw VMMError(.ENODEV, "no \(guest)") }
    guard count >= 0, gpa <= vm.memoryBytes, UInt64(count) <= vm.memoryBytes - gpa else {
      throw VMMError(.EFAULT, "GPA range outside guest memory")
    }
    let pageSize = UInt64(PlatformMemory.pageSize)
    var done = 0
    while done < count {
      let address = gpa + UInt64(done)
      let length = min(count - done, Int(pageSize - address % pageSize))
      guard let hpa = vm.hostAddress(of: address) else { throw VMMError(.EFAULT, "GPA outside guest memory") }
      try body(hpa, done, length)
      done += length
    }
  }

  // MARK: Guest requests and notifications

  /// A guest request to the TSM of one of its functions (the guest-request hypercall). EPERM for a
  /// function not assigned to the guest; the TSM's own refusals keep their errno.
  public func guestRequest(_ guest: GuestID, _ request: GuestTSMRequest) throws(VMMError) -> GuestTSMResponse
  {
    let function = request.function
    guard let device = devices[function], iommu.assignments[function] == guest,
      let tsm = tsms[ObjectIdentifier(device)]
    else { throw VMMError(.EPERM, "\(function) is not assigned to \(guest)") }
    do throws(TSMError) {
      switch request {
      case .lock: try tsm.guestLock(function, for: guest)
      case .evidence(_, let nonce):
        return .evidence(try tsm.guestEvidence(function, for: guest, nonce: nonce))
      case .accept: try tsm.guestAccept(function, for: guest)
      case .unlock: try tsm.guestUnlock(function, for: guest)
      }
    } catch { throw VMMError(error.errno, "\(request): \(error)") }
    noteStateTheGuestKnows(function, guest)
    return .done
  }

  /// The TDI's state after a guest's state change succeeded is what the guest asked for: only later
  /// changes are news to it.
  private func noteStateTheGuestKnows(_ function: RequesterID, _ guest: GuestID) {
    guard let state = devices[function]?.tdisp.tdi(function)?.state else { return }
    guests[guest]?.lastTDIStates[function] = state
  }

  /// What the host has to tell `guest` since the last call: the interrupts delivered to it, then
  /// every assigned function whose TDI changed state on the device since the guest last heard or
  /// last changed it itself (a successful lock, accept or unlock).
  public func notifications(for guest: GuestID) -> [HostNotification] {
    guard let vm = guests[guest] else { return [] }
    var out = vm.interrupts.map { HostNotification.interrupt($0.function, vector: $0.vector) }
    vm.interrupts.removeAll()
    for function in assignedFunctions(of: guest) {
      guard let state = devices[function]?.tdisp.tdi(function)?.state else { continue }
      let last = vm.lastTDIStates[function] ?? .configUnlocked
      if state != last { out.append(.tdiStateChanged(function, from: last, to: state)) }
      vm.lastTDIStates[function] = state
    }
    return out
  }

  /// The functions assigned to `guest`, in requester-ID order.
  public func assignedFunctions(of guest: GuestID) -> [RequesterID] {
    iommu.assignments.filter { $0.value == guest }.keys.sorted { $0.rawValue < $1.rawValue }
  }

  /// The memory BARs a function decodes, by index, at their assigned addresses.
  public func bars(of function: RequesterID) -> [Int: Range<UInt64>] {
    guard let space = devices[function]?.tdisp.configSpaces[function] else { return [:] }
    var bars: [Int: Range<UInt64>] = [:]
    for (index, bar) in space.layout.bars.enumerated() {
      guard let size = bar?.size, let base = space.barAddress(index) else { continue }
      let (end, overflow) = base.addingReportingOverflow(size)
      if !overflow { bars[index] = base..<end }
    }
    return bars
  }

  /// A configuration write by the host itself (not trapped from a guest): what a host that clears
  /// bus mastering under a running TDI does. The device's rules apply as for any write.
  @discardableResult
  public func hostConfigWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32) throws(VMMError)
    -> [ConfigSpaceEvent]
  {
    guard let device = devices[function] else { throw VMMError(.ENODEV, "no device function \(function)") }
    return device.tdisp.configWrite(function, offset: offset, size: size, value: value)
  }

  // MARK: Internals

  private func standing(of requester: RequesterID) -> TEEStanding {
    guard let device = devices[requester], let tsm = tsms[ObjectIdentifier(device)],
      let tdi = device.tdisp.tdi(requester)
    else { return .untrusted }
    return TEEStanding(
      tdiState: tdi.state, boundGuest: tsm.owner(of: requester), streamSecure: device.streamSecure())
  }

  private func deliver(_ function: RequesterID, _ vector: UInt16) {
    guard let guest = iommu.assignments[function], let vm = guests[guest] else { return }
    vm.interrupts.append((function, vector))
    record(.interrupt(function, guest, vector: vector))
  }
}

/// What the VMM asks of a device's TSM: which guest a TDI is bound to, and the guest requests it
/// forwards (SEMANTICS.md §8: each checked against the TDI's owner by the TSM).
public protocol TSMStanding: AnyObject {
  func owner(of function: RequesterID) -> GuestID?
  /// Binds the TDI to `guest` (if it is not already) and locks it; the TSM fetches the report.
  func guestLock(_ function: RequesterID, for guest: GuestID) throws(TSMError)
  /// Evidence for the guest, over its nonce, in the form that crosses to the guest.
  func guestEvidence(_ function: RequesterID, for guest: GuestID, nonce: [UInt8]) throws(TSMError)
    -> DeviceEvidence
  /// START_INTERFACE: the guest accepted the TDI.
  func guestAccept(_ function: RequesterID, for guest: GuestID) throws(TSMError)
  /// STOP_INTERFACE: the guest gives the TDI's trust up.
  func guestUnlock(_ function: RequesterID, for guest: GuestID) throws(TSMError)
  /// The guest is gone: the TDI is stopped if it is not unlocked, and no longer bound to it.
  func guestRelease(_ function: RequesterID, from guest: GuestID) throws(TSMError)
}

extension HostTSM: TSMStanding {
  public func owner(of function: RequesterID) -> GuestID? { interface(function)?.owner }

  public func guestLock(_ function: RequesterID, for guest: GuestID) throws(TSMError) {
    if interface(function)?.owner == nil { try bind(function, to: guest) }
    try lock(function, for: guest)
  }

  public func guestEvidence(_ function: RequesterID, for guest: GuestID, nonce: [UInt8]) throws(TSMError)
    -> DeviceEvidence
  {
    try evidence(for: function, guest: guest, nonce: nonce).crossingToGuest(
      mmioReportingOffset: configuration.mmioReportingOffset)
  }

  public func guestAccept(_ function: RequesterID, for guest: GuestID) throws(TSMError) {
    try start(function, for: guest)
  }

  public func guestUnlock(_ function: RequesterID, for guest: GuestID) throws(TSMError) {
    try stop(function, for: guest)
  }

  public func guestRelease(_ function: RequesterID, from guest: GuestID) throws(TSMError) {
    try unbind(function, from: guest)
  }
}

/// What ``VMM/destroyGuest(_:)`` did, and anything it could not undo.
public struct GuestTeardown: Hashable, Sendable, CustomStringConvertible {
  public var guest: GuestID
  /// TDIs that were locked, running or in ERROR and were stopped (STOP_INTERFACE).
  public var tdisStopped = 0
  /// TDIs released by their TSM (no longer bound to the guest).
  public var tdisReleased = 0
  public var functionsUnassigned = 0
  /// Leaf mappings torn down in the guest's IOMMU domain.
  public var mappingsRemoved = 0
  /// Pages scrubbed and returned to the host.
  public var pagesScrubbed = 0
  /// What was not undone; empty when nothing of the guest is left.
  public var leaks: [String] = []

  public init(guest: GuestID) { self.guest = guest }

  public var description: String {
    "\(guest) torn down: \(tdisStopped) TDI(s) stopped, \(tdisReleased) released, \(functionsUnassigned) function(s) unassigned, \(mappingsRemoved) IOMMU mapping(s) removed, \(pagesScrubbed) page(s) scrubbed; "
      + (leaks.isEmpty ? "nothing left" : "LEFT: " + leaks.joined(separator: "; "))
  }
}

extension IOMMUDomain {
  /// Unmaps the 4 KiB page at `iova`, first splitting a large leaf that covers it into 4 KiB leaves
  /// (remapping the rest), since conversion works page by page.
  func unmapSplitting(_ iova: IOVA) throws(IOMMUError) -> UInt64 {
    let pageSize = UInt64(PlatformMemory.pageSize)
    guard let translation = translation(of: iova) else { return 0 }
    if translation.pageSize != .size4K {
      let leafBytes = translation.pageSize.bytes
      let leafIOVA = iova.rawValue & ~(leafBytes - 1)
      let leafPhysical = translation.physical.rawValue - (iova.rawValue - leafIOVA)
      _ = try unmap(IOVA(leafIOVA), size: leafBytes)
      var offset: UInt64 = 0
      while offset < leafBytes {
        do {
          try map(
            IOVA(leafIOVA + offset), to: PhysicalAddress(leafPhysical + offset), size: pageSize,
            protection: translation.protection)
        } catch {
          // Out of table memory part-way: put the large leaf back as it was, then report.
          _ = try? unmap(IOVA(leafIOVA), size: offset)
          try? map(
            IOVA(leafIOVA), to: PhysicalAddress(leafPhysical), size: leafBytes,
            protection: translation.protection)
          throw error
        }
        offset += pageSize
      }
    }
    return try unmap(iova, size: pageSize)
  }
}

/// Stage 2 of a vIOMMU guest: its GPA → HPA map, which the platform owns and the guest cannot change.
struct GuestStage2: GuestPhysicalMap {
  let pages: [PhysicalAddress]

  func hostAddress(of gpa: PhysicalAddress, for guest: GuestID) -> PhysicalAddress? {
    let pageSize = UInt64(PlatformMemory.pageSize)
    let page = gpa.rawValue / pageSize
    guard page < UInt64(pages.count) else { return nil }
    return PhysicalAddress(pages[Int(page)].rawValue + gpa.rawValue % pageSize)
  }
}

/// The vIOMMU's reads of guest tables and command queues, through the same checks as the guest's own
/// reads (its page, integrity intact): a table the guest placed in another guest's or the host's
/// page, or one the host corrupted, cannot be walked.
struct CheckedGuestReads: GuestMemoryReader {
  let memory: PlatformMemory

  func readWord(at address: PhysicalAddress, for guest: GuestID) -> UInt64? {
    guard let bytes = try? memory.read(address, count: 8, as: .owner(guest)) else { return nil }
    return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
  }
}
