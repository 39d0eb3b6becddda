public import GuestABI
public import IOMMU
import PCIe

/// The outcome of one IO page fault the kernel handled.
public struct IOPageFaultOutcome: Hashable, Sendable, CustomStringConvertible {
  public var record: VIOMMUFaultRecord
  public var response: PageResponse
  public var description: String { "\(record) → \(response)" }
}

/// Shared virtual addressing for guest processes (SEMANTICS.md §4) over the guest IOMMU core: a
/// bond gives the process's PASID; the device then uses the process's virtual addresses.
extension GuestKernel {
  /// A new process with an empty address space.
  public func createProcess() -> GuestProcess {
    nextAddressSpace += 1
    return GuestProcess(kernel: self, id: AddressSpaceID(rawValue: nextAddressSpace))
  }

  /// iommu_sva_bind_device: the process's PASID (one per process, shared by every device it is bound
  /// to), attached on the device's group. ENODEV without a vIOMMU; the core's errno otherwise (EINVAL
  /// for a device sharing its group, EOVERFLOW when the process's PASID does not fit the device,
  /// ENOSPC when PASIDs run out). Binding again returns the same bond with one more reference.
  public func svaBind(_ device: PCIDevice, process: GuestProcess) throws(KernelError) -> SVABond {
    guard let iommu else { throw KernelError(.ENODEV, "\(device): SVA needs an IOMMU") }
    let bond: SVABond
    do { bond = try iommu.core.svaBind(device: device.bdf, addressSpace: process.addressSpace) } catch {
      throw KernelError(error.errno, "SVA bind \(device): \(error)")
    }
    do throws(KernelError) {
      try iommu.syncAttachments(of: device.bdf)
      // What the process has already populated goes into the device's view at once (a device with
      // ATS would have it pre-faulted; cove-dma has no PRI, and a TDI in RUN must not fault).
      for (page, frame, writable) in process.populated {
        for domain in iommu.mirroredDomains(of: process.addressSpace) {
          try iommu.mirror(
            domain, page: page, frame: frame, writable: writable, shared: memory.isShared(frame))
        }
      }
    } catch {
      // The bond the caller never gets must not outlive the call.
      try? iommu.core.svaUnbind(bond)
      try? iommu.syncAttachments(of: device.bdf)
      throw error
    }
    return bond
  }

  /// A process page got memory: every SVA domain bound to the process sees it.
  func processPagePopulated(_ process: GuestProcess, page: UInt64, frame: UInt64, writable: Bool) {
    guard let iommu else { return }
    for domain in iommu.mirroredDomains(of: process.addressSpace) {
      try? iommu.mirror(domain, page: page, frame: frame, writable: writable, shared: memory.isShared(frame))
    }
  }

  /// iommu_sva_unbind_device: drops a reference; the last one detaches the PASID.
  public func svaUnbind(_ device: PCIDevice, _ bond: SVABond) throws(KernelError) {
    guard let iommu else { throw KernelError(.ENODEV, "\(device): SVA needs an IOMMU") }
    do { try iommu.core.svaUnbind(bond) } catch { throw KernelError(error.errno, "SVA unbind: \(error)") }
    try iommu.syncAttachments(of: device.bdf)
  }

  /// Drains the vIOMMU's fault queue and resolves each fault the way iommu_sva_handle_mm does: a
  /// fault with a PASID on an SVA bond is a page request to the process (populating the page if it
  /// is reserved); when the process grants the access, the page enters the domain's mirror so the
  /// device's retry translates. Anything else is answered INVALID.
  @discardableResult
  public func handleIOPageFaults() -> [IOPageFaultOutcome] {
    guard let iommu else { return [] }
    var outcomes: [IOPageFaultOutcome] = []
    for record in iommu.drainFaults() {
      let bdf = record.requester.bdf()
      var response = iommu.core.handlePageRequest(
        device: bdf, pasid: record.pasid, address: record.iova, access: record.access)
      if response == .success, let pasid = record.pasid,
        let domain = try? iommu.core.pasidTable(of: bdf)[pasid], let space = domain.addressSpace,
        let entry = space.lookup(VirtualAddress(record.iova.rawValue))
      {
        do throws(KernelError) {
          try iommu.mirror(
            domain.id, page: record.iova.rawValue & ~0xFFF, frame: entry.frame.rawValue,
            writable: entry.writable,
            shared: memory.isShared(entry.frame.rawValue))
        } catch { response = .invalid }
      }
      outcomes.append(IOPageFaultOutcome(record: record, response: response))
    }
    return outcomes
  }
}
