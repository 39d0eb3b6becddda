public import GuestABI
public import IOMMU
import PCIe

/// The guest's IOMMU driver for the paravirtual vIOMMU, on the shared IOMMU core: groups, DMA
/// ownership, DMA domains (strict or lazy), the IOVA allocator and page tables are the core's; the
/// tables live in the guest's private memory and every change the devices must see reaches the vIOMMU
/// as a command (HostPlatform/VIOMMU/README.md): an ATTACH when a group or PASID changes domain, an
/// INVALIDATE for every invalidation the core asks of its IOTLB. The core's IOTLB is the driver's
/// own view; the vIOMMU's cache is the one devices use, so a missing invalidation shows up as a stale
/// translation exactly as on hardware.
public final class GuestIOMMU {
  public let core: IOMMUCore
  let host: any GuestHostInterface
  let tables: GuestTableMemory
  /// What each (requester, PASID) is attached to at the vIOMMU now.
  private var attached: [AttachmentKey: DomainID] = [:]
  /// SVA domains have no I/O page table of their own (they share a process's CPU page tables), but
  /// the vIOMMU walks tables in the core's format: each gets a mirror, filled as IO page faults are
  /// resolved and emptied by the invalidations the process's changes cause.
  private var mirrors: [DomainID: SVAMirror] = [:]
  /// vIOMMU commands sent, and the ones the vIOMMU refused (each also fails the call that sent it,
  /// where the call can fail; an invalidation cannot, so it is only recorded here).
  public private(set) var commandsSent = 0
  public private(set) var refusedCommands: [(VIOMMUCommand, KernelError)] = []
  /// Fault records lost to a full fault queue (the overflow flag was found set and cleared).
  public private(set) var faultOverflows = 0
  /// The command queue: one page of 128 descriptors in private memory, and the next slot to write.
  private let queue: UInt64
  private var tail: UInt64 = 0
  static let queueEntries: UInt64 = 128
  let memory: GuestMemory

  init(host: any GuestHostInterface, memory: GuestMemory, strict: Bool) throws(KernelError) {
    self.host = host
    self.memory = memory
    let tables = GuestTableMemory(memory: memory)
    self.tables = tables
    queue = try memory.allocatePages(1)
    do { try host.viommuWrite(.commandQueueBase, queue) } catch {
      throw KernelError(error.errno, "vIOMMU command queue: \(error.message)")
    }
    do {
      core = try IOMMUCore(
        configuration: IOMMUCore.Configuration(strict: strict, confidentialPlatform: true)
      ) { _ throws(IOMMUError) in try RadixIOPageTable(memory: tables) }
    } catch { throw KernelError(error.errno, "IOMMU core: \(error)") }
    core.iotlb.invalidationObserver = { [unowned self] invalidation in forward(invalidation) }
  }

  /// Probes a function into the core and points the vIOMMU at its group's domain.
  func add(_ description: DeviceDescription) throws(KernelError) {
    do { try core.addDevice(description) } catch { throw KernelError(error.errno, "iommu probe: \(error)") }
    try syncAttachments(of: description.bdf)
  }

  /// Removes a function (no driver bound), detaching it at the vIOMMU.
  func remove(_ bdf: BDF) throws(KernelError) {
    do { try core.removeDevice(bdf) } catch { throw KernelError(error.errno, "iommu release: \(error)") }
    for key in attached.keys where key.requester == bdf.requesterID {
      try send(.detach(requester: key.requester, pasid: key.pasid))
      attached[key] = nil
    }
  }

  /// Makes the vIOMMU's attachments of every function in `bdf`'s group match the core: requests
  /// without PASID go to the group's current domain (detached while it is blocked), each attached
  /// PASID to its domain.
  func syncAttachments(of bdf: BDF) throws(KernelError) {
    guard let group = core.group(of: bdf) else { return }
    let domain: IOMMUDomain
    do { domain = try core.currentDomain(of: group) } catch { throw KernelError(error.errno, "\(error)") }
    for member in core.devices(in: group) {
      try point(AttachmentKey(requester: member.requesterID, pasid: nil), at: domain)
      let pasids = (try? core.pasidTable(of: member)) ?? [:]
      for (pasid, pasidDomain) in pasids {
        try point(AttachmentKey(requester: member.requesterID, pasid: pasid), at: pasidDomain)
      }
      for key in attached.keys where key.requester == member.requesterID {
        if let pasid = key.pasid, pasids[pasid] == nil {
          try send(.detach(requester: key.requester, pasid: pasid))
          attached[key] = nil
        }
      }
    }
    dropUnusedMirrors()
  }

  /// An SVA domain no attachment uses any more (its process's last bond went): its cached
  /// translations are invalidated and its mirror table freed (the table's pages go back to the
  /// kernel). Domain IDs are never reused, so nothing can reach the old table.
  private func dropUnusedMirrors() {
    let used = Set(attached.values)
    for id in mirrors.keys where !used.contains(id) {
      try? send(.invalidateDomain(id))
      mirrors[id] = nil
    }
  }

  private func point(_ key: AttachmentKey, at domain: IOMMUDomain) throws(KernelError) {
    var table = domain.pageTable as? RadixIOPageTable
    if domain.type == .sva {
      if mirrors[domain.id] == nil {
        do { mirrors[domain.id] = SVAMirror(table: try RadixIOPageTable(memory: tables)) } catch {
          throw KernelError(error.errno, "SVA mirror: \(error)")
        }
      }
      table = mirrors[domain.id]?.table
    }
    guard let table else {
      // Blocked (or a domain without a table): the requests fault.
      if attached[key] != nil {
        try send(.detach(requester: key.requester, pasid: key.pasid))
        attached[key] = nil
      }
      return
    }
    guard attached[key] != domain.id else { return }
    try send(
      .attach(
        requester: key.requester, pasid: key.pasid, domain: domain.id, root: table.root, inputAddressBits: 48)
    )
    attached[key] = domain.id
  }

  /// Writes the descriptor at TAIL and the new TAIL: the vIOMMU executes it before the write returns.
  /// A refused command stops the queue with CQE set; the driver reads why, resets the queue (a new
  /// CQ_BASE write) and fails the call.
  private func send(_ command: VIOMMUCommand) throws(KernelError) {
    commandsSent += 1
    do throws(KernelError) {
      try memory.write(queue + tail * UInt64(VIOMMUCommand.descriptorSize), bytes: command.encode())
      tail = (tail + 1) % Self.queueEntries
      let status: UInt64
      do {
        try host.viommuWrite(.commandQueueTail, tail)
        status = try host.viommuRead(.status)
      } catch {
        // Whether the command ran is unknown: start the queue over so no stale descriptor runs.
        tail = 0
        _ = try? host.viommuWrite(.commandQueueBase, queue)
        throw KernelError(error.errno, "vIOMMU: \(error.message)")
      }
      guard status & VIOMMUStatus.commandQueueError != 0 else { return }
      let code = VIOMMUCommandQueueErrorCode(
        rawValue: UInt8(truncatingIfNeeded: status >> VIOMMUStatus.errorCodeShift))
      let detail = (try? host.viommuRead(.commandQueueErrorDetail)) ?? 0
      tail = 0
      _ = try? host.viommuWrite(.commandQueueBase, queue)
      let errno = code == .commandRefused ? Errno(rawValue: Int32(truncatingIfNeeded: detail)) : .EIO
      throw KernelError(errno, "vIOMMU refused \(command): \(code), detail 0x\(String(detail, radix: 16))")
    } catch {
      refusedCommands.append((command, error))
      throw error
    }
  }

  /// Drains the fault records: FAULT_RECORD while FPP is set, FAULT_POP after each; an overflow is
  /// counted and cleared so recording resumes.
  func drainFaults() -> [VIOMMUFaultRecord] {
    var records: [VIOMMUFaultRecord] = []
    var popped = 0
    // Bounded by records popped, not parsed: a host that keeps FPP set with garbage cannot hang us.
    while let status = try? host.viommuRead(.status), status & VIOMMUStatus.faultPending != 0, popped < 4096 {
      popped += 1
      var bytes: [UInt8] = []
      for word in 0..<4 {
        let value =
          (try? host.viommuRead(
            VIOMMURegister(rawValue: VIOMMURegister.faultRecord.rawValue + UInt64(word * 8)))) ?? 0
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
      }
      guard (try? host.viommuWrite(.faultPop, 1)) != nil else { break }
      if let record = try? VIOMMUFaultRecord(parsing: bytes) { records.append(record) }
    }
    if let status = try? host.viommuRead(.status), status & VIOMMUStatus.faultOverflow != 0 {
      faultOverflows += 1
      _ = try? host.viommuWrite(.status, VIOMMUStatus.faultOverflow)
    }
    return records
  }

  /// Enters a resolved IO page fault's page into the SVA domain's mirror: the process page at `page`,
  /// its rights, and whether its frame is shared memory. A page already mirrored with fewer rights is replaced (its old entry invalidated
  /// first).
  func mirror(_ domain: DomainID, page: UInt64, frame: UInt64, writable: Bool, shared: Bool)
    throws(KernelError)
  {
    guard var mirror = mirrors[domain] else { throw KernelError(.EINVAL, "\(domain) has no SVA mirror") }
    var protection: IOProtection = writable ? .readWrite : [.read]
    if shared { protection.insert(.shared) }
    if let existing = mirror.table.translate(IOVA(page)) {
      guard existing.protection != protection || existing.physical.rawValue != frame else { return }
      _ = try? mirror.table.unmap(IOVA(page), size: 4096)
      try? send(.invalidateRange(domain: domain, pasid: nil, iova: IOVA(page), size: 4096))
    }
    do {
      try mirror.table.map(IOVA(page), to: PhysicalAddress(frame), size: 4096, protection: protection)
    } catch {
      throw KernelError(error.errno, "SVA mirror map: \(error)")
    }
    mirror.pages.insert(page)
    mirrors[domain] = mirror
  }

  /// The SVA domains mirrored for `space`.
  func mirroredDomains(of space: ProcessAddressSpace) -> [DomainID] {
    mirrors.keys.filter { id in
      core.groups.contains { group in
        core.devices(in: group).contains { bdf in
          ((try? core.pasidTable(of: bdf)) ?? [:]).values.contains {
            $0.id == id && $0.addressSpace === space
          }
        }
      }
    }
  }

  /// Drops mirrored pages an invalidation covers (nil: all of them).
  private func unmirror(_ domain: DomainID, _ range: Range<IOVA>?) {
    guard var mirror = mirrors[domain] else { return }
    for page in mirror.pages where range.map({ $0.contains(IOVA(page)) }) ?? true {
      _ = try? mirror.table.unmap(IOVA(page), size: 4096)
      mirror.pages.remove(page)
    }
    mirrors[domain] = mirror
  }

  private func forward(_ invalidation: IOTLB.Invalidation) {
    switch invalidation {
    case .range(let domain, _, let range): unmirror(domain, range)
    case .pasid(let domain, _), .domain(let domain): unmirror(domain, nil)
    case .all: for domain in mirrors.keys { unmirror(domain, nil) }
    }
    let command: VIOMMUCommand
    switch invalidation {
    case .range(let domain, let pasid, let range):
      guard !range.isEmpty else { return }
      command = .invalidateRange(
        domain: domain, pasid: pasid, iova: range.lowerBound,
        size: range.upperBound.rawValue - range.lowerBound.rawValue)
    case .pasid(let domain, let pasid): command = .invalidatePASID(domain: domain, pasid: pasid)
    case .domain(let domain): command = .invalidateDomain(domain)
    case .all: command = .invalidateAll
    }
    try? send(command)
  }
}

/// The I/O page table standing in for an SVA domain at the vIOMMU, and the pages entered in it.
struct SVAMirror {
  let table: RadixIOPageTable
  var pages: Set<UInt64> = []
}

/// One attachment point at the vIOMMU: a requester ID, with or without a PASID.
struct AttachmentKey: Hashable {
  var requester: RequesterID
  var pasid: PASID?
}

/// I/O page-table pages in the guest's private memory. The kernel keeps its own copy of what it
/// wrote (its CPU view of its memory), so reading an entry costs no hypercall; every store is written
/// through to guest memory, where the vIOMMU walks it.
final class GuestTableMemory: IOTableMemory {
  let memory: GuestMemory
  private var pages: [UInt64: [UInt64]] = [:]
  /// Stores the host refused (the table in memory no longer matches the kernel's copy).
  private(set) var failedStores = 0

  init(memory: GuestMemory) { self.memory = memory }

  func allocateTablePage() -> PhysicalAddress? {
    guard let gpa = try? memory.allocatePages(1) else { return nil }
    pages[gpa] = [UInt64](repeating: 0, count: 512)
    return PhysicalAddress(gpa)
  }

  func freeTablePage(_ page: PhysicalAddress) {
    guard pages.removeValue(forKey: page.rawValue) != nil else { return }
    memory.freePages(page.rawValue, count: 1)
  }

  func loadEntry(_ address: PhysicalAddress) -> UInt64 {
    let page = address.rawValue & ~0xFFF
    return pages[page]?[Int(address.rawValue & 0xFFF) / 8] ?? 0
  }

  func storeEntry(_ value: UInt64, at address: PhysicalAddress) {
    let page = address.rawValue & ~0xFFF
    pages[page]?[Int(address.rawValue & 0xFFF) / 8] = value
    let bytes = (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    do { try memory.host.write(gpa: address.rawValue, bytes: bytes) } catch { failedStores += 1 }
  }
}
