public import PCIe
public import SPDM

/// What the TSM needs from the path to a device's DSM: SPDM exchanges, DOE discovery, and a way to
/// drop whatever the path holds before a fresh connection (DOE Abort, PCIe 6.x §6.30.2).
public protocol TSMTransport: SPDMRequesterTransport {
  mutating func reset()
  mutating func discoverProtocols() throws(SPDMRequesterError) -> [DOEProtocol]
  /// Bytes of sequence number the path puts in DSP0277 records: 0 for DOE (PCIe 6.x §6.31.4), 2 for
  /// MCTP (DSP0275). The TSM's requester seals and opens its sessions' records with it.
  var securedRecordSequenceNumberSize: Int { get }
}

extension TSMTransport {
  public var securedRecordSequenceNumberSize: Int { 0 }
}

extension DOEMailboxTransport: TSMTransport {
  public mutating func reset() { abort() }
}
