public import PCIe
public import SPDM

/// What the TSM needs from the path to a device's DSM: SPDM exchanges, DOE discovery, and a way to
/// drop whatever the path holds before a fresh connection (DOE Abort, PCIe 6.x §6.30.2).
public protocol TSMTransport: SPDMRequesterTransport {
  mutating func reset()
  mutating func discoverProtocols() throws(SPDMRequesterError) -> [DOEProtocol]
  /// How the path lays out DSP0277 records (``SecuredRecordFormat``: DOE, PCIe 6.x §6.31.4, or
  /// MCTP, DSP0275). The TSM's requester seals and opens its sessions' records with it.
  var securedRecordFormat: SecuredRecordFormat { get }
}

extension TSMTransport {
  public var securedRecordFormat: SecuredRecordFormat { .doe }
}

extension DOEMailboxTransport: TSMTransport {
  public mutating func reset() { abort() }
}
