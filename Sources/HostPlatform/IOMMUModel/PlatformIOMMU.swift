public import IOMMU
public import PCIe
public import TDISP

/// What the platform knows about a requester's TEE-IO standing when one of its TLPs arrives: its
/// TDI's state on the device, the guest the TSM bound it to, and whether its IDE stream is SECURE.
public struct TEEStanding: Hashable, Sendable {
  public var tdiState: TDIState
  public var boundGuest: GuestID?
  public var streamSecure: Bool

  public init(tdiState: TDIState, boundGuest: GuestID?, streamSecure: Bool) {
    self.tdiState = tdiState
    self.boundGuest = boundGuest
    self.streamSecure = streamSecure
  }

  public static let untrusted = TEEStanding(tdiState: .configUnlocked, boundGuest: nil, streamSecure: false)
}

/// One refused DMA request, as the platform records it.
public struct PlatformDMAFault: Hashable, Sendable, CustomStringConvertible {
  public var tlp: TLP
  public var guest: GuestID?
  public var reason: DMAFaultReason

  public var description: String { "\(tlp): \(reason)" }
}

/// The host's physical IOMMU as Cove models it, on the shared IOMMU core (groups, domains, radix page
/// tables, IOTLB). Every device access is a TLP; the model applies, in order (issue 5, SEMANTICS.md §5):
/// 1. the requester's group and domain in the core (blocked, paging; a vIOMMU guest's nested walk);
/// 2. for a confidential guest without a vIOMMU, the IOVA split at the guest's boundary X, which the
///    guest's domain encodes: IOVA < X maps the guest's private pages, IOVA ≥ X the shared alias
///    (GPA = IOVA − X), each leaf carrying the shared bit; only the alias that matches a page's
///    current state is mapped, so a conversion moves the page from one alias to the other and the
///    unmap invalidates the IOTLB;
/// 3. the TEE-IO checks: T=1 only from a TDI in RUN, bound to the owning guest, over a SECURE stream;
///    T=0 only to shared pages; every page touched must belong to the requester's guest.
/// Every refusal becomes a ``PlatformDMAFault`` naming the address it hit. A request spanning pages is
/// checked page by page, as the TLPs that carry it would be, and stops at the first refused page.
public final class PlatformIOMMU: DMAPort {
  public let core: IOMMUCore
  public let memory: PlatformMemory
  /// The guest each requester is assigned to.
  public private(set) var assignments: [RequesterID: GuestID] = [:]
  /// The TEE-IO standing of each requester, asked at every T=1 request.
  public var standing: (RequesterID) -> TEEStanding = { _ in .untrusted }
  /// Where MSI-X messages go (the VMM delivers them to the owning guest).
  public var interruptSink: (RequesterID, UInt16) -> Void = { _, _ in }
  /// Told of every refused request (the VMM turns it into a trace event).
  public var faultSink: (PlatformDMAFault) -> Void = { _ in }
  public private(set) var faults: [PlatformDMAFault] = []
  /// Faults beyond the log's limit: counted, never silently lost.
  public private(set) var faultsNotLogged = 0
  /// The vIOMMU of each guest that has one: its devices' requests are translated by the nested walk
  /// of the guest's own tables instead of the guest's host domain.
  public var viommus: [GuestID: VIOMMU] = [:]
  public static let faultLogLimit = 4096

  public init(core: IOMMUCore, memory: PlatformMemory) {
    self.core = core
    self.memory = memory
  }

  /// Probes a device function into the core at plug time (Linux iommu_probe_device): its topology
  /// (ACS on its functions and ports) decides which group it joins (SEMANTICS.md §1).
  public func probe(_ requester: RequesterID, description: DeviceDescription) throws(IOMMUError) {
    guard core.group(of: requester.bdf()) == nil else { return }
    try core.addDevice(description)
  }

  /// Routes `requester`'s DMA into `domain` (the guest's) and records the owner. A function that shares
  /// its group with others (no ACS between them) cannot be isolated from them, so the whole group goes
  /// to the guest (iommu_attach_group, as VFIO assigns groups): EBUSY when another member already
  /// belongs to another guest. A requester never probed is probed as an isolated function.
  public func assign(_ requester: RequesterID, to guest: GuestID, domain: IOMMUDomain) throws(IOMMUError) {
    let bdf = requester.bdf()
    if core.group(of: bdf) == nil {
      try core.addDevice(
        DeviceDescription(
          bdf, upstream: [BridgeInfo(BDF(bus: 0, device: 1, function: 0), hasACS: true)],
          functionIsolation: .multiFunctionWithACS, maxPASID: 1 << 20))
    }
    guard let group = core.group(of: bdf) else { throw IOMMUError(.ENODEV, "\(bdf) has no group") }
    let members = core.devices(in: group).map(\.requesterID)
    for member in members {
      if let owner = assignments[member], owner != guest {
        throw IOMMUError(.EBUSY, "\(bdf) shares \(group) with \(member), which belongs to \(owner)")
      }
    }
    if members.count == 1 {
      try core.attachDevice(domain, to: bdf)
    } else if try core.currentDomain(of: group) !== domain {
      try core.attachGroup(domain, to: group)
    }
    for member in members { assignments[member] = guest }
  }

  /// Takes `requester` away from its guest, with every function of its group (they were assigned
  /// together): their DMA is blocked from now on.
  public func unassign(_ requester: RequesterID) throws(IOMMUError) {
    let bdf = requester.bdf()
    guard let group = core.group(of: bdf) else {
      assignments[requester] = nil
      return
    }
    let members = core.devices(in: group)
    let blocking = try core.blockingDomain(of: group)
    // The group holds the guest's domain: replace it (attaching over a non-default domain is EBUSY,
    // as iommu_attach_device is, whatever the group's size).
    if try core.currentDomain(of: group) !== blocking {
      try core.replaceGroupDomain(group, with: blocking)
    }
    for member in members { assignments[member.requesterID] = nil }
  }

  /// The functions that share `requester`'s group (itself included).
  public func groupMembers(of requester: RequesterID) -> [RequesterID] {
    guard let group = core.group(of: requester.bdf()) else { return [requester] }
    return core.devices(in: group).map(\.requesterID)
  }

  // MARK: DMAPort

  /// Told of every device request the model decided, with its verdict (a run's TLP records); a copy
  /// reports its read and its write. Nil costs one check per request.
  public var accessObserver: ((TLP, DMAVerdict) -> Void)?

  public func dmaRead(_ tlp: TLP, into buffer: UnsafeMutableRawBufferPointer) -> DMAVerdict {
    let verdict = read(tlp, into: buffer)
    accessObserver?(tlp, verdict)
    return verdict
  }

  public func dmaWrite(_ tlp: TLP, from buffer: UnsafeRawBufferPointer) -> DMAVerdict {
    let verdict = write(tlp, from: buffer)
    accessObserver?(tlp, verdict)
    return verdict
  }

  public func dmaCopy(source: TLP, destination: TLP, length: Int) -> (verdict: DMAVerdict, bytesMoved: Int) {
    let result = copy(source: source, destination: destination, length: length)
    if let accessObserver {
      // Which side a refusal came from is in the fault it logged; the write's verdict is the copy's.
      accessObserver(source, result.bytesMoved == length ? .completed : result.verdict)
      accessObserver(destination, result.verdict)
    }
    return result
  }

  private func read(_ tlp: TLP, into buffer: UnsafeMutableRawBufferPointer) -> DMAVerdict {
    let targets: [(Target, Int)]
    switch checkedTargets(tlp, count: buffer.count, access: .read) {
    case .success(let checked): targets = checked
    case .failure(let failure): return refuse(failure.tlp, failure.reason)
    }
    var done = 0
    for (target, chunk) in targets {
      if let refusal = memory.dmaRead(
        target.physical, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + chunk)]),
        as: target.accessor)
      {
        return refuse(tlp.at(done), refusal.reason)
      }
      done += chunk
    }
    return .completed
  }

  private func write(_ tlp: TLP, from buffer: UnsafeRawBufferPointer) -> DMAVerdict {
    let targets: [(Target, Int)]
    switch checkedTargets(tlp, count: buffer.count, access: .write) {
    case .success(let checked): targets = checked
    case .failure(let failure): return refuse(failure.tlp, failure.reason)
    }
    var done = 0
    for (target, chunk) in targets {
      if let refusal = memory.dmaWrite(
        target.physical, from: UnsafeRawBufferPointer(rebasing: buffer[done..<(done + chunk)]),
        as: target.accessor)
      {
        return refuse(tlp.at(done), refusal.reason)
      }
      done += chunk
    }
    return .completed
  }

  /// Every page of a read or write translated, TEE-checked and memory-checked before a byte moves: a
  /// refused request leaves memory and the buffer untouched, and names the address it hit.
  private func checkedTargets(_ tlp: TLP, count: Int, access: IOAccess) -> Result<
    [(Target, Int)], PairFailure
  > {
    var found: Requester
    switch requester(of: tlp) {
    case .success(let requester): found = requester
    case .failure(let reason): return .failure(PairFailure(tlp: tlp, reason: reason))
    }
    var targets: [(Target, Int)] = []
    var done = 0
    while done < count {
      switch resolve(tlp, offset: done, access: access, requester: &found) {
      case .success(let target):
        let chunk = min(count - done, target.contiguous)
        if let refusal = memory.dmaCheck(
          target.physical, count: chunk, target.accessor, reading: access == .read)
        {
          let into =
            refusal.page.rawValue > target.physical.rawValue
            ? Int(refusal.page.rawValue - target.physical.rawValue) : 0
          return .failure(PairFailure(tlp: tlp.at(done + into), reason: refusal.reason))
        }
        targets.append((target, chunk))
        done += chunk
      case .failure(let reason): return .failure(PairFailure(tlp: tlp.at(done), reason: reason))
      }
    }
    return .success(targets)
  }

  private func copy(source: TLP, destination: TLP, length: Int) -> (verdict: DMAVerdict, bytesMoved: Int) {
    guard length > 0 else { return (.completed, 0) }
    var reader: Requester
    switch requester(of: source) {
    case .success(let found): reader = found
    case .failure(let reason): return (refuse(source, reason), 0)
    }
    var writer: Requester
    switch requester(of: destination) {
    case .success(let found): writer = found
    case .failure(let reason): return (refuse(destination, reason), 0)
    }
    var done = 0
    while done < length {
      // Translate page by page and gather a run whose source and destination are both host-contiguous,
      // then move it at once: every page still gets its own translation and memory checks.
      var run = 0
      var start: (from: Target, to: Target)?
      var refusal: (TLP, DMAFaultReason)?
      while done + run < length, run < Self.maximumRun {
        let pair = resolvePair(source, destination, offset: done + run, reader: &reader, writer: &writer)
        guard case .success(let (from, to)) = pair else {
          if case .failure(let failure) = pair { refusal = (failure.tlp, failure.reason) }
          break
        }
        if let start {
          guard from.physical.rawValue == start.from.physical.rawValue + UInt64(run),
            to.physical.rawValue == start.to.physical.rawValue + UInt64(run),
            from.accessor == start.from.accessor,
            to.accessor == start.to.accessor
          else { break }
        } else {
          start = (from, to)
        }
        run += min(length - done - run, from.contiguous, to.contiguous)
      }
      if let start, run > 0 {
        // Memory checks for both sides first: the earliest refused byte decides; what lies before it
        // moves, as the TLPs before the refused one would have.
        var stop: (offset: Int, tlp: TLP, reason: DMAFaultReason)?
        if let refusal = memory.dmaCheck(start.from.physical, count: run, start.from.accessor, reading: true)
        {
          let into =
            refusal.page.rawValue > start.from.physical.rawValue
            ? Int(refusal.page.rawValue - start.from.physical.rawValue) : 0
          stop = (into, source, refusal.reason)
        }
        if let refusal = memory.dmaCheck(start.to.physical, count: run, start.to.accessor, reading: false) {
          let into =
            refusal.page.rawValue > start.to.physical.rawValue
            ? Int(refusal.page.rawValue - start.to.physical.rawValue) : 0
          if stop == nil || into < stop!.offset { stop = (into, destination, refusal.reason) }
        }
        let movable = stop?.offset ?? run
        if movable > 0,
          let refusal = memory.dmaCopy(
            from: start.from.physical, as: start.from.accessor, to: start.to.physical, as: start.to.accessor,
            count: movable)
        {
          return (refuse(destination.at(done), refusal.reason), done)
        }
        if let stop {
          done += movable
          return (refuse(stop.tlp.at(done), stop.reason), done)
        }
        done += run
      }
      if let (tlp, reason) = refusal { return (refuse(tlp, reason), done) }
    }
    return (.completed, done)
  }

  struct PairFailure: Error {
    var tlp: TLP
    var reason: DMAFaultReason
  }

  private func resolvePair(
    _ source: TLP, _ destination: TLP, offset: Int, reader: inout Requester, writer: inout Requester
  ) -> Result<(Target, Target), PairFailure> {
    let from: Target
    switch resolve(source, offset: offset, access: .read, requester: &reader) {
    case .success(let target): from = target
    case .failure(let reason): return .failure(PairFailure(tlp: source.at(offset), reason: reason))
    }
    switch resolve(destination, offset: offset, access: .write, requester: &writer) {
    case .success(let to): return .success((from, to))
    case .failure(let reason): return .failure(PairFailure(tlp: destination.at(offset), reason: reason))
    }
  }

  /// Bytes one host-contiguous run may carry before the engine moves it (a bound on the copy's
  /// granularity, not on what is checked).
  static let maximumRun = 1 << 30

  public func signalInterrupt(from function: RequesterID, vector: UInt16) {
    interruptSink(function, vector)
  }

  // MARK: Translation and checks

  struct Target {
    var physical: PhysicalAddress
    /// Bytes from `physical` that the same translation covers (to the end of the page or large page).
    var contiguous: Int
    var accessor: DMAAccess
  }

  /// The requester's guest and, for T=1, its TEE standing: looked up once per request, since neither
  /// can change while the request is in flight.
  struct Requester {
    var guest: GuestID
    var standing: TEEStanding?
    var viommu: VIOMMU?
    /// The host domain's translator; nil for a vIOMMU guest or when the core refuses the requester
    /// (then each request goes through `translate`, which records the fault).
    var translator: IOMMUCore.Translator?
  }

  private func requester(of tlp: TLP) -> Result<Requester, DMAFaultReason> {
    guard let guest = assignments[tlp.requesterID] else { return .failure(.blocked) }
    let viommu = viommus[guest]
    return .success(
      Requester(
        guest: guest, standing: tlp.tBit ? standing(tlp.requesterID) : nil, viommu: viommu,
        translator: viommu == nil
          ? try? core.translator(device: tlp.requesterID.bdf(), pasid: tlp.pasid.map { PASID($0) }).get()
          : nil))
  }

  private func resolve(_ tlp: TLP, offset: Int, access: IOAccess, requester: inout Requester) -> Result<
    Target, DMAFaultReason
  > {
    let guest = requester.guest
    let iova = IOVA(tlp.address &+ UInt64(offset))
    let pasid = tlp.pasid.map { PASID($0) }
    let translation: IOTranslation
    if let viommu = requester.viommu {
      switch viommu.translate(requester: tlp.requesterID, pasid: pasid, iova: iova, access: access) {
      case .success(let nested):
        // Stage 2 is per 4 KiB page: contiguity ends at the host page.
        translation = IOTranslation(
          physical: nested.hostPhysical, protection: nested.protection, pageSize: .size4K)
      case .failure(let fault):
        return .failure(.translation("\(fault)"))
      }
      return check(tlp, translation: translation, iova: iova, guest: guest, requester: requester)
    }
    let result =
      requester.translator?.translate(iova, access: access)
      ?? core.translate(device: tlp.requesterID.bdf(), pasid: pasid, iova: iova, access: access)
    switch result {
    case .success(let result): translation = result
    case .failure(let fault):
      switch fault.reason {
      case .blocked: return .failure(.blocked)
      case .permission: return .failure(.permission)
      default: return .failure(.notMapped)
      }
    }
    return check(tlp, translation: translation, iova: iova, guest: guest, requester: requester)
  }

  /// The TEE-IO checks on a translated request (SEMANTICS.md §5).
  private func check(
    _ tlp: TLP, translation: IOTranslation, iova: IOVA, guest: GuestID, requester: Requester
  ) -> Result<Target, DMAFaultReason> {
    let shared = translation.protection.contains(.shared)
    let accessor: DMAAccess
    if tlp.tBit, let standing = requester.standing {
      guard standing.tdiState == .run else {
        return .failure(.untrustedTBit("TDI in \(standing.tdiState)"))
      }
      guard standing.boundGuest == guest else { return .failure(.untrustedTBit("TDI not bound to \(guest)")) }
      guard standing.streamSecure else { return .failure(.untrustedTBit("IDE stream not SECURE")) }
      accessor = .trusted(guest)
    } else {
      // T=0 may reach only shared memory, by the shared alias and on a page that is shared now.
      guard shared else { return .failure(.tZeroToPrivate) }
      accessor = .sharedOnly(guest)
    }
    // The translation holds to the end of its (possibly large) page; memory checks every 4 KiB page.
    let size = translation.pageSize.bytes
    let offsetInLeaf = Int(iova.rawValue & (size - 1))
    return .success(
      Target(physical: translation.physical, contiguous: Int(size) - offsetInLeaf, accessor: accessor))
  }

  private func refuse(_ tlp: TLP, _ reason: DMAFaultReason) -> DMAVerdict {
    faultSink(PlatformDMAFault(tlp: tlp, guest: assignments[tlp.requesterID], reason: reason))
    if faults.count < Self.faultLogLimit {
      faults.append(PlatformDMAFault(tlp: tlp, guest: assignments[tlp.requesterID], reason: reason))
    } else {
      faultsNotLogged += 1
    }
    return .refused(reason)
  }

  public func drainFaults() -> [PlatformDMAFault] {
    defer { faults = [] }
    return faults
  }
}

extension TLP {
  /// The same request `offset` bytes further on: the address a fault record names.
  func at(_ offset: Int) -> TLP {
    var moved = self
    moved.address &+= UInt64(offset)
    return moved
  }
}
