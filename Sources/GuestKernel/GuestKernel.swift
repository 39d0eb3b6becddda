public import CoveCrypto
public import GuestABI
import IOMMU
public import PCIe
import TDISP

/// Boot-time options of the guest kernel (its command line).
public struct KernelOptions: Hashable, Sendable {
  /// drivers_autoprobe: a registered driver binds to matching devices at once. Off, the guest can
  /// attest devices before any driver touches them (SEMANTICS.md §6).
  public var autoprobe: Bool
  /// swiotlb= : bytes of the shared bounce pool, a multiple of 256 KiB. 0: no pool (devices that are
  /// not accepted then cannot DMA).
  public var swiotlbBytes: Int
  /// iommu.strict: with a vIOMMU, DMA domains invalidate on every unmap instead of through a flush
  /// queue. Untrusted devices are strict regardless (SEMANTICS.md §2). Linux's default is lazy.
  public var iommuStrict: Bool
  /// CONFIG_DMA_API_DEBUG.
  public var dmaDebug: Bool

  public init(
    autoprobe: Bool = true, swiotlbBytes: Int = 1 << 20, iommuStrict: Bool = false, dmaDebug: Bool = true
  ) {
    self.autoprobe = autoprobe
    self.swiotlbBytes = swiotlbBytes
    self.iommuStrict = iommuStrict
    self.dmaDebug = dmaDebug
  }
}

/// A confidential guest's kernel, as guest-driver authors see it: memory, the DMA API, the driver
/// core and the guest TSM client, reaching the host only through a ``GuestHostInterface``
/// (SEMANTICS.md §1–6). Single-threaded; host events (interrupts, forced TDI changes) are taken in
/// ``handleHostEvents()``, the model's interrupt entry.
public final class GuestKernel {
  public let host: any GuestHostInterface
  public let platform: GuestPlatformInfo
  public let options: KernelOptions
  public let memory: GuestMemory
  /// The guest IOMMU driver, with a vIOMMU.
  public let iommu: GuestIOMMU?
  /// The shared bounce pool (nil when there is none, or when the platform gives devices no way to
  /// reach shared memory: X all ones without a vIOMMU).
  public let swiotlb: SWIOTLBPool?
  public let debug: DMADebug
  /// PCI functions found at boot, in requester-ID order.
  public private(set) var devices: [PCIDevice] = []
  /// drivers_autoprobe, changeable at run time.
  public var autoprobe: Bool
  /// What happened, oldest first.
  public private(set) var events: [KernelEvent] = []
  let entropy: any EntropySource
  /// Told of every DMA API map and unmap (the run's trace); nil costs nothing.
  public var dmaTrace: ((DMATraceEvent) -> Void)?
  /// The administrator's policy for the RFC's PASID modes (``PASIDMode``).
  public var pasidPolicy = PASIDPolicy()
  /// The kernel's vmap space (KVA page → GPA page), the domains mirroring it, and the next free KVA.
  var kvaPages: [UInt64: UInt64] = [:]
  var kvaStrictDomain: IOMMUDomain?
  var kvaFastDomain: IOMMUDomain?
  var kvaFastPendingFlush = false
  var bypass: IOMMUDomain?
  var nextKVA: UInt64 = 0x7F00_0000_0000
  var nextAddressSpace: UInt32 = 0
  private var drivers: [any PCIDriver] = []
  private var deferred: [RequesterID: String] = [:]
  private var retryingDeferred = false
  private var deferredTriggered = false

  /// Boots: sets the swiotlb pool up in shared memory (set_memory_decrypted at boot, as Linux does
  /// for a confidential guest), brings the IOMMU driver up if there is a vIOMMU, and enumerates the
  /// assigned PCI functions. `entropy` supplies the nonces the TSM client sends.
  public init(
    host: any GuestHostInterface, options: KernelOptions = KernelOptions(), entropy: any EntropySource
  )
    throws(KernelError)
  {
    self.host = host
    self.platform = host.platform
    self.options = options
    self.autoprobe = options.autoprobe
    self.entropy = entropy
    memory = GuestMemory(host: host, size: platform.memoryBytes)
    debug = DMADebug(enabled: options.dmaDebug)
    if options.swiotlbBytes > 0 && platform.hasSharedAlias {
      let pages = options.swiotlbBytes / GuestMemory.pageSize
      let base = try memory.allocatePages(pages)
      try memory.setMemoryDecrypted(base, pages: pages)
      do { swiotlb = try SWIOTLBPool(base: base, bytes: options.swiotlbBytes) } catch {
        throw KernelError(.EINVAL, "swiotlb: \(error)")
      }
    } else {
      swiotlb = nil
    }
    iommu = platform.viommu ? try GuestIOMMU(host: host, memory: memory, strict: options.iommuStrict) : nil
    memory.cpuAccessCheck = { [unowned self] gpa, count, write in
      for report in debug.checkCPUAccess(cpuAddress: gpa, size: count, write: write, origin: DMAOrigin()) {
        events.append(.dmaDebug(report))
      }
    }
    for function in platform.functions {
      // A function that does not answer is not there (all-ones vendor ID), as PCI enumeration
      // skips it; any other failure stops the boot.
      do throws(KernelError) { devices.append(try enumerate(function)) } catch  where error.errno == .ENODEV {
        record(.functionAbsent(function, reason: error.message))
      }
    }
    for device in devices {
      guard let iommu else { break }
      try iommu.add(iommuDescription(of: device))
      // The IOMMU driver turns PASID on at probe (pci_enable_pasid), before anything can lock the
      // configuration.
      if let capability = device.pasidCapability {
        try configWrite(device.function, capability + 6, 2, 1)
      }
    }
  }

  /// The device for a function, if the guest has it.
  public func device(_ function: RequesterID) -> PCIDevice? { devices.first { $0.function == function } }

  func record(_ event: KernelEvent) { events.append(event) }

  // MARK: Enumeration

  private func enumerate(_ function: RequesterID) throws(KernelError) -> PCIDevice {
    let ids = try configRead(function, 0x00, 4)
    guard ids & 0xFFFF != 0xFFFF else { throw KernelError(.ENODEV, "\(function): no function answers") }
    let bars: [Int: Range<UInt64>]
    do { bars = try host.bars(of: function) } catch { throw KernelError(error.errno, error.message) }
    var msix: MSIXLocation?
    if try configRead(function, 0x04, 4) >> 16 & 0x10 != 0 {
      var pointer = Int(try configRead(function, 0x34, 1) & 0xFC)
      var visited = 0
      while pointer >= 0x40, visited < 48 {
        let header = try configRead(function, pointer, 4)
        if header & 0xFF == 0x11 {
          msix = MSIXLocation(
            messageControl: UInt16(header >> 16), tableOffsetBIR: try configRead(function, pointer + 4, 4),
            pbaOffsetBIR: try configRead(function, pointer + 8, 4))
        }
        pointer = Int(header >> 8 & 0xFC)
        visited += 1
      }
    }
    var hasACS = false
    var maxPASID: UInt32 = 0
    var pasidCapability: Int?
    var offset = 0x100
    var visited = 0
    while offset >= 0x100, visited < 256 {
      let header = try configRead(function, offset, 4)
      if header == 0 || header == 0xFFFF_FFFF { break }
      switch header & 0xFFFF {
      case 0x000D: hasACS = true
      case 0x001B:
        maxPASID = 1 << min(20, (try configRead(function, offset + 4, 4) >> 8) & 0x1F)
        pasidCapability = offset
      default: break
      }
      offset = Int(header >> 20 & 0xFFC)  // the low two bits of Next are reserved (PCIe 6.x §7.6.3)
      visited += 1
    }
    return PCIDevice(
      function: function, vendorID: UInt16(ids & 0xFFFF), deviceID: UInt16(ids >> 16), bars: bars, msix: msix,
      hasACS: hasACS, maxPASID: maxPASID, pasidCapability: pasidCapability)
  }

  /// How the guest IOMMU sees a device: a function of a multi-function device (isolated when it has
  /// ACS), untrusted unless accepted (SEMANTICS.md §2: an untrusted device gets a strict domain).
  func iommuDescription(of device: PCIDevice) -> DeviceDescription {
    let siblings = devices.filter { $0.bdf.bus == device.bdf.bus && $0.bdf.device == device.bdf.device }
    let isolation: FunctionIsolation =
      siblings.count <= 1
      ? .singleFunction : (device.hasACS ? .multiFunctionWithACS : .multiFunctionWithoutACS)
    return DeviceDescription(
      device.bdf, functionIsolation: isolation, maxPASID: device.maxPASID, untrusted: !device.isAccepted)
  }

  func configRead(_ function: RequesterID, _ offset: Int, _ size: Int) throws(KernelError) -> UInt32 {
    do { return try host.configRead(function, offset: offset, size: size) } catch {
      throw KernelError(
        error.errno, "config read \(function)+0x\(String(offset, radix: 16)): \(error.message)")
    }
  }

  func configWrite(_ function: RequesterID, _ offset: Int, _ size: Int, _ value: UInt32) throws(KernelError) {
    do { try host.configWrite(function, offset: offset, size: size, value: value) } catch {
      throw KernelError(
        error.errno, "config write \(function)+0x\(String(offset, radix: 16)): \(error.message)")
    }
  }

  // MARK: Device access for drivers

  /// A 32-bit read of a BAR register (readl).
  public func mmioRead(_ device: PCIDevice, bar: Int, offset: UInt64) throws(KernelError) -> UInt32 {
    let address = try barAddress(device, bar, offset)
    do { return try host.mmioRead(device.function, address: address) } catch {
      throw KernelError(error.errno, error.message)
    }
  }

  /// A 32-bit write of a BAR register (writel).
  public func mmioWrite(_ device: PCIDevice, bar: Int, offset: UInt64, value: UInt32) throws(KernelError) {
    let address = try barAddress(device, bar, offset)
    do { try host.mmioWrite(device.function, address: address, value: value) } catch {
      throw KernelError(error.errno, error.message)
    }
  }

  private func barAddress(_ device: PCIDevice, _ bar: Int, _ offset: UInt64) throws(KernelError) -> UInt64 {
    // The BARs come from the host: any range, even one shorter than a register (fuzz-found).
    guard let range = device.bars[bar], range.upperBound - range.lowerBound >= 4,
      offset <= range.upperBound - range.lowerBound - 4
    else {
      throw KernelError(.EINVAL, "\(device): BAR\(bar)+\(hex(offset)) is outside the BAR")
    }
    return range.lowerBound + offset
  }

  /// pci_enable_device + pci_set_master: memory decoding and bus mastering on (written only if not
  /// already set, so a locked TDI's configuration is not touched).
  public func enableDevice(_ device: PCIDevice) throws(KernelError) {
    let command = try configRead(device.function, 0x04, 2)
    if command & 0x6 != 0x6 { try configWrite(device.function, 0x04, 2, command | 0x6) }
  }

  // MARK: The driver core

  /// Registers a driver; with autoprobe on, it binds to every unbound matching device (a failed
  /// probe is recorded, not thrown). EEXIST for a name already registered.
  public func register(_ driver: any PCIDriver) throws(KernelError) {
    guard !drivers.contains(where: { $0.name == driver.name }) else {
      throw KernelError(.EEXIST, "driver \(driver.name) is already registered")
    }
    drivers.append(driver)
    if autoprobe { probeUnbound() }
  }

  /// Unregisters a driver, unbinding it from every device first.
  public func unregister(driver name: String) throws(KernelError) {
    guard let index = drivers.firstIndex(where: { $0.name == name }) else {
      throw KernelError(.ENODEV, "no driver \(name)")
    }
    for device in devices where device.driver?.name == name { release(device, reason: "driver unregistered") }
    deferred = deferred.filter { $0.value != name }
    drivers.remove(at: index)
  }

  /// Binds a named driver to a device by hand (sysfs bind). ENODEV: no such driver or it does not
  /// match; EBUSY: a driver is bound; otherwise what the probe returns.
  public func bind(_ device: PCIDevice, driver name: String) throws(KernelError) {
    guard let driver = drivers.first(where: { $0.name == name }),
      driver.idTable.contains(where: { $0.matches(device) })
    else { throw KernelError(.ENODEV, "no driver \(name) for \(device)") }
    try probe(device, with: driver)
  }

  /// Binds the first matching driver (what autoprobe does for one device). ENODEV if none matches.
  public func attach(_ device: PCIDevice) throws(KernelError) {
    guard let driver = drivers.first(where: { d in d.idTable.contains { $0.matches(device) } }) else {
      throw KernelError(.ENODEV, "no driver matches \(device)")
    }
    try probe(device, with: driver)
  }

  /// Unbinds the driver (sysfs unbind): remove, then the DMA debug leak check, then teardown of
  /// whatever the driver left mapped. ENODEV if no driver is bound.
  public func unbind(_ device: PCIDevice) throws(KernelError) {
    guard device.driver != nil else { throw KernelError(.ENODEV, "\(device) has no driver bound") }
    release(device, reason: "unbind")
  }

  /// Devices waiting for a deferred probe, with the driver that deferred.
  public var deferredProbes: [RequesterID: String] { deferred }

  private func probeUnbound() {
    for device in devices where device.driver == nil && device.userOwner == nil {
      if (try? attach(device)) != nil { continue }
    }
  }

  private func probe(_ device: PCIDevice, with driver: any PCIDriver) throws(KernelError) {
    guard device.driver == nil else {
      throw KernelError(.EBUSY, "\(device) already has \(device.driver!.name) bound")
    }
    if case .revoked(let why) = device.trust {
      throw KernelError(.EIO, "\(device) lost its trust (\(why)): unlock it before binding a driver")
    }
    if let iommu {
      do { try iommu.core.bindDriver(device.bdf, dma: driver.dmaUse) } catch {
        record(.probeFailed(device.function, driver: driver.name, errno: error.errno))
        throw KernelError(error.errno, "\(driver.name) probe of \(device): \(error)")
      }
    } else if device.userOwner != nil && driver.dmaUse == .dmaAPI {
      throw KernelError(.EBUSY, "\(device) is owned by a user")
    }
    device.driver = driver
    do throws(KernelError) {
      try driver.probe(device, kernel: self)
    } catch {
      disableAllPASIDs(of: device)
      device.driver = nil
      tearDownMappings(of: device, driver: driver.name)
      try? iommu?.core.unbindDriver(device.bdf)
      if error.errno == .EPROBE_DEFER {
        deferred[device.function] = driver.name
        record(.probeDeferred(device.function, driver: driver.name))
      } else {
        record(.probeFailed(device.function, driver: driver.name, errno: error.errno))
      }
      throw error
    }
    deferred[device.function] = nil
    record(.driverBound(device.function, driver: driver.name))
    retryDeferred()
  }

  /// driver_deferred_probe_trigger: a successful probe may be what the deferred ones waited for, so
  /// each deferred device is tried once more; a pass that binds something triggers another.
  private func retryDeferred() {
    guard !retryingDeferred else {
      deferredTriggered = true
      return
    }
    retryingDeferred = true
    defer { retryingDeferred = false }
    repeat {
      deferredTriggered = false
      let pending = deferred.sorted { $0.key.rawValue < $1.key.rawValue }
      for (function, name) in pending {
        deferred[function] = nil
        guard let device = device(function), device.driver == nil,
          let driver = drivers.first(where: { $0.name == name })
        else { continue }
        _ = try? probe(device, with: driver)
      }
    } while deferredTriggered
  }

  /// device_release_driver: remove, leak check, teardown, DMA ownership dropped.
  func release(_ device: PCIDevice, reason: String) {
    guard let driver = device.driver else { return }
    driver.remove(device, kernel: self)
    disableAllPASIDs(of: device)
    device.driver = nil
    tearDownMappings(of: device, driver: driver.name)
    try? iommu?.core.unbindDriver(device.bdf)
    record(.driverUnbound(device.function, driver: driver.name, reason: reason))
  }

  // MARK: Host events

  /// Takes what the host has to say (the model's interrupt entry): interrupts go to the bound
  /// driver; a TDI the guest locked or accepted that left the state the guest put it in, without the
  /// guest asking, loses its trust (SEMANTICS.md §6): new mappings are refused, bus mastering is
  /// cleared (in-flight DMA fenced), the driver is removed and what it left mapped is torn down.
  public func handleHostEvents() {
    for notification in host.drainNotifications() {
      switch notification {
      case .interrupt(let function, let vector):
        record(.interrupt(function, vector: vector))
        if let device = device(function), let driver = device.driver {
          driver.interrupt(device, vector: vector, kernel: self)
        }
      case .tdiStateChanged(let function, _, let state):
        guard let device = device(function) else { continue }
        let expected: TDIStateExpectation =
          switch device.trust {
          case .locked: .configLocked
          case .accepted: .run
          case .untrusted, .revoked: .none
          }
        guard expected != .none, !expected.holds(for: state) else { continue }
        revoke(device, state: state)
      }
    }
  }

  private func revoke(_ device: PCIDevice, state: TDIState) {
    let reason = "TDI went to \(state) without the guest asking"
    let before = device.trust
    device.trust = .revoked(reason)
    record(.trustRevoked(device.function, tdi: state, reason: reason))
    record(.trustChanged(device.function, from: before, to: device.trust))
    // Fence: no more bus mastering from a device the guest no longer trusts.
    if let command = try? configRead(device.function, 0x04, 2), command & 0x4 != 0 {
      try? configWrite(device.function, 0x04, 2, command & ~0x4)
    }
    release(device, reason: "trust revoked")
    // A revoked device is not trusted: its group goes back to a strict domain now.
    reprobe(device)
  }
}

/// The TDI state the guest's trust in a device implies.
enum TDIStateExpectation {
  case none, configLocked, run
  func holds(for state: TDIState) -> Bool {
    switch self {
    case .none: true
    case .configLocked: state == .configLocked
    case .run: state == .run
    }
  }
}
