public import GuestKernel
public import IOMMU
public import PCIe

/// A minimal driver that does its DMA with a PASID (cove-dma's queue 1 tags every request with it),
/// the way Linux settled it: it asks the kernel for a PASID attached to the device's own DMA domain
/// and keeps using the normal DMA API (SEMANTICS.md §3). For comparison it can also run the 2021 RFC's
/// modes, which the kernel allows only for a device the administrator trusts: bypass (device
/// addresses are guest-physical) and KVA (device addresses are kernel virtual addresses from vmap).
public final class PASIDCopyDriver: PCIDriver {
  public let name: String
  public let idTable = [PCIDeviceID(vendor: CoveDMADriver.vendorID, device: CoveDMADriver.deviceID)]
  public let mode: PASIDMode

  private var queues: [RequesterID: CopyQueue] = [:]
  /// The process each device works for through SVA (queue 2), with its bond.
  private var processQueues: [RequesterID: (process: GuestProcess, bond: SVABond, queue: CopyQueue)] = [:]
  /// The ring's kernel virtual address in KVA mode.
  private var ringKVAs: [RequesterID: KernelVirtualAddress] = [:]
  /// The PASID each bound device uses.
  public private(set) var pasids: [RequesterID: PASID] = [:]

  public init(mode: PASIDMode = .iova) {
    self.mode = mode
    name = mode == .iova ? "cove-dma-pasid" : "cove-dma-pasid-\(mode)"
  }

  public func probe(_ device: PCIDevice, kernel: GuestKernel) throws(KernelError) {
    try kernel.enableDevice(device)
    try kernel.dmaSetMask(device, bits: 64)
    let pasid = try kernel.enablePASID(device, mode: mode)
    do throws(KernelError) {
      // The ring is reached through the PASID too, so it needs an address in the PASID's space.
      queues[device.function] = try CopyQueue(kernel: kernel, device: device, index: 1, pasid: pasid) {
        ring throws(KernelError) in
        switch mode {
        case .iova: return ring.dmaAddress.rawValue
        case .bypass: return ring.gpa
        case .kvaStrict, .kvaFast:
          let kva = try kernel.vmap(ring.gpa, pages: 1)
          ringKVAs[device.function] = kva
          return kva.rawValue
        }
      }
    } catch {
      try? kernel.disablePASID(device, pasid)
      throw error
    }
    pasids[device.function] = pasid
  }

  public func remove(_ device: PCIDevice, kernel: GuestKernel) {
    detachProcess(device, kernel: kernel)
    queues.removeValue(forKey: device.function)?.tearDown(kernel: kernel, device: device)
    if let kva = ringKVAs.removeValue(forKey: device.function) { kernel.vunmap(kva, pages: 1) }
    if let pasid = pasids.removeValue(forKey: device.function) { try? kernel.disablePASID(device, pasid) }
  }

  /// Copies between two guest-physical buffers of whole pages with the PASID-tagged queue. In IOVA
  /// mode both are mapped through the DMA API; in bypass mode the device is given the guest-physical
  /// addresses; in KVA mode the buffers are vmapped and the device is given the kernel virtual
  /// addresses (then vunmapped: KVA-fast leaves the device's cached translations until a flush).
  public func copy(
    _ device: PCIDevice, kernel: GuestKernel, from source: UInt64, to destination: UInt64, length: Int
  ) throws(KernelError) -> Int {
    guard let queue = queues[device.function] else { throw KernelError(.ENODEV, "\(device): not bound") }
    switch mode {
    case .iova:
      return try mapAndCopy(kernel, device, queue, source, destination, length)
    case .bypass:
      return try queue.copy(kernel: kernel, device: device, from: source, to: destination, length: length)
    case .kvaStrict, .kvaFast:
      let pages = (length + 4095) / 4096
      let from = try kernel.vmap(source, pages: pages)
      defer { kernel.vunmap(from, pages: pages) }
      let to = try kernel.vmap(destination, pages: pages)
      defer { kernel.vunmap(to, pages: pages) }
      return try queue.copy(
        kernel: kernel, device: device, from: from.rawValue, to: to.rawValue, length: length)
    }
  }

  // MARK: Shared virtual addressing

  /// Binds `process` to the device (its PASID) and sets queue 2 up in the process's address space:
  /// from now on the device is given the process's virtual addresses. The ring is a page of the
  /// process's memory, shared memory when the device is not accepted (it reaches only shared memory).
  public func attachProcess(_ process: GuestProcess, device: PCIDevice, kernel: GuestKernel)
    throws(KernelError)
    -> PASID
  {
    guard queues[device.function] != nil else { throw KernelError(.ENODEV, "\(device): not bound") }
    detachProcess(device, kernel: kernel)
    let bond = try kernel.svaBind(device, process: process)
    do throws(KernelError) {
      let queue = try CopyQueue(kernel: kernel, device: device, index: 2, process: process, pasid: bond.pasid)
      processQueues[device.function] = (process, bond, queue)
    } catch {
      try? kernel.svaUnbind(device, bond)
      throw error
    }
    return bond.pasid
  }

  /// Unbinds the attached process, if any.
  public func detachProcess(_ device: PCIDevice, kernel: GuestKernel) {
    guard let attached = processQueues.removeValue(forKey: device.function) else { return }
    attached.queue.tearDown(kernel: kernel, device: device)
    try? kernel.svaUnbind(device, attached.bond)
  }

  /// Copies between two of the attached process's buffers by virtual address. A descriptor the
  /// engine could not complete because a page was not yet in the IOMMU's view is retried after the
  /// kernel resolved the IO page faults (at most `retries` times); a fault the kernel answers
  /// INVALID fails the copy (EFAULT).
  public func copy(
    inProcessOf device: PCIDevice, kernel: GuestKernel, from source: VirtualAddress,
    to destination: VirtualAddress,
    length: Int, retries: Int = 8
  ) throws(KernelError) -> Int {
    guard let attached = processQueues[device.function] else {
      throw KernelError(.ENODEV, "\(device): no process attached")
    }
    var attempt = 0
    while true {
      do throws(KernelError) {
        return try attached.queue.copy(
          kernel: kernel, device: device, from: source.rawValue, to: destination.rawValue, length: length)
      } catch {
        let outcomes = kernel.handleIOPageFaults()
        attempt += 1
        guard attempt <= retries, !outcomes.isEmpty else { throw error }
        if let refused = outcomes.first(where: { $0.response != .success }) {
          throw KernelError(.EFAULT, "\(device): IO page fault refused: \(refused)")
        }
      }
    }
  }
}
