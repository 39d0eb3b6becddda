/// A transaction-layer packet as Cove's platform models it: who sent it, where it goes, whether it
/// claims to come from a TDI in RUN (the T bit of the IDE TLP prefix, PCIe 6.x §6.33.4 / §11.2),
/// and what it is. Payloads travel beside it; the model checks and routes headers.
public struct TLP: Hashable, Sendable, CustomStringConvertible {
  public enum Kind: Hashable, Sendable {
    /// Memory read of `length` bytes.
    case memoryRead(length: Int)
    /// Memory write of `length` bytes.
    case memoryWrite(length: Int)
    /// An ATS Translation Request (PCIe 6.x §10.2.2).
    case translationRequest
    /// An ATS Translation Completion (PCIe 6.x §10.2.3), from the translation agent to the device.
    case translationCompletion
  }

  public var requesterID: RequesterID
  public var address: UInt64
  public var pasid: UInt32?
  /// T bit: set only on TLPs of a TDI in RUN sent over a secure IDE stream (TEE-originated).
  public var tBit: Bool
  public var kind: Kind

  public init(requesterID: RequesterID, address: UInt64, pasid: UInt32? = nil, tBit: Bool, kind: Kind) {
    self.requesterID = requesterID
    self.address = address
    self.pasid = pasid
    self.tBit = tBit
    self.kind = kind
  }

  public var isWrite: Bool {
    if case .memoryWrite = kind { return true }
    return false
  }

  public var description: String {
    let what: String
    switch kind {
    case .memoryRead(let length): what = "MRd \(length)B"
    case .memoryWrite(let length): what = "MWr \(length)B"
    case .translationRequest: what = "ATS TransReq"
    case .translationCompletion: what = "ATS TransCpl"
    }
    let pasidText = pasid.map { " PASID \($0)" } ?? ""
    return "\(what) RID \(requesterID) @0x\(String(address, radix: 16))\(pasidText) T=\(tBit ? 1 : 0)"
  }
}
