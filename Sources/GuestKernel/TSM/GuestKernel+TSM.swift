import CoveCrypto
import GuestABI
import IOMMU

/// The guest TSM client (the Linux devsec guest TSM: lock, accept, unlock through guest requests to
/// the host TSM) with the trust-change rule of SEMANTICS.md §6: a device's trust changes only while
/// no driver is bound, because the DMA API chose bounce or direct, private or shared, when each
/// live mapping was made. The flow is unbind → lock → verify evidence → accept → rebind.
extension GuestKernel {
  /// Locks the device's TDI (CONFIG_LOCKED). Its configuration must be final first, so memory
  /// decoding and bus mastering are turned on before the request. EBUSY if it is already locked
  /// (or accepted, or revoked: unlock first) or a driver is bound.
  public func tsmLock(_ device: PCIDevice) throws(KernelError) {
    guard device.trust == .untrusted else {
      throw KernelError(.EBUSY, "\(device) is already \(device.trust)")
    }
    try refuseIfBound(device, "lock")
    try enableDevice(device)
    try request(.lock(device.function))
    setTrust(device, .locked)
  }

  /// Fetches fresh evidence over a new nonce and checks it against `policy` and the device as the
  /// guest sees it (its BARs and MSI-X), without changing anything. EINVAL if the device is not
  /// locked; EACCES with the failed check if the evidence does not hold.
  public func tsmVerify(_ device: PCIDevice, policy: AttestationPolicy) throws(KernelError)
    -> VerifiedEvidence
  {
    guard device.trust == .locked || device.trust == .accepted else {
      throw KernelError(.EINVAL, "\(device) is \(device.trust), not locked")
    }
    let nonce = entropy.bytes(count: 32)
    let response: GuestTSMResponse
    do { response = try host.tsm(.evidence(device.function, nonce: nonce)) } catch {
      throw KernelError(error.errno, "evidence for \(device): \(error.message)")
    }
    guard case .evidence(let evidence) = response else {
      throw KernelError(.EIO, "evidence for \(device): the host answered without evidence")
    }
    let expected = ExpectedInterface(bars: device.bars, msix: device.msix)
    do {
      return try EvidenceVerifier.verify(evidence, nonce: nonce, policy: policy, expected: expected)
    } catch {
      throw KernelError(.EACCES, "evidence for \(device) refused: \(error)", evidence: error)
    }
  }

  /// Accepts the device: verifies fresh evidence (``tsmVerify(_:policy:)``), then asks the TSM to
  /// start the TDI (RUN). From now on its mappings go direct to private memory. EINVAL if not locked;
  /// EBUSY if a driver is bound; EACCES naming the failed check when the evidence does not hold (the
  /// device stays locked).
  @discardableResult
  public func tsmAccept(_ device: PCIDevice, policy: AttestationPolicy) throws(KernelError)
    -> VerifiedEvidence
  {
    guard device.trust == .locked else {
      throw KernelError(.EINVAL, "\(device) is \(device.trust), not locked")
    }
    try refuseIfBound(device, "accept")
    let verified = try tsmVerify(device, policy: policy)
    try request(.accept(device.function))
    setTrust(device, .accepted)
    return verified
  }

  /// Writing 0 to accept: a device cannot be un-accepted, only unlocked (EINVAL).
  public func tsmUnaccept(_ device: PCIDevice) throws(KernelError) {
    throw KernelError(.EINVAL, "\(device) cannot be un-accepted; unlock it")
  }

  /// Unlocks the TDI (STOP_INTERFACE → CONFIG_UNLOCKED), from locked, accepted or revoked: the device
  /// is untrusted again. EINVAL if it is not locked; EBUSY if a driver is bound.
  public func tsmUnlock(_ device: PCIDevice) throws(KernelError) {
    guard device.trust != .untrusted else { throw KernelError(.EINVAL, "\(device) is not locked") }
    try refuseIfBound(device, "unlock")
    try request(.unlock(device.function))
    setTrust(device, .untrusted)
  }

  private func refuseIfBound(_ device: PCIDevice, _ what: String) throws(KernelError) {
    if let driver = device.driver {
      throw KernelError(.EBUSY, "\(what) \(device): \(driver.name) is bound; unbind it first")
    }
  }

  private func request(_ request: GuestTSMRequest) throws(KernelError) {
    do { _ = try host.tsm(request) } catch { throw KernelError(error.errno, "\(request): \(error.message)") }
  }

  /// Records the change; with a vIOMMU the device is probed again so its IOMMU group gets the default
  /// domain its new trust calls for (strict for untrusted). No driver is bound, so nothing is mapped.
  func setTrust(_ device: PCIDevice, _ trust: DeviceTrust) {
    let before = device.trust
    device.trust = trust
    record(.trustChanged(device.function, from: before, to: trust))
    reprobe(device)
  }

  /// Re-describes the device to the guest IOMMU core when the core's view of its trust no longer
  /// matches (what the core holds decides, not the previous trust: a revoked device was accepted).
  /// If the group cannot take the device as trusted (another function in it forces a domain type),
  /// it is added back as untrusted, which every group accepts: never left out of the IOMMU.
  func reprobe(_ device: PCIDevice) {
    guard let iommu, device.userOwner == nil, device.driver == nil,
      let held = iommu.core.description(of: device.bdf), held.untrusted == device.isAccepted
    else { return }
    do throws(KernelError) {
      try iommu.remove(device.bdf)
      try iommu.add(iommuDescription(of: device))
    } catch {
      var description = iommuDescription(of: device)
      description.untrusted = true
      do throws(KernelError) { try iommu.add(description) } catch {
        record(.functionAbsent(device.function, reason: "the IOMMU refused it back: \(error)"))
      }
    }
  }
}
