public import IOMMU
public import PCIe
public import SPDM
public import TDISP

/// A guest, as the host platform names it (the owner of TDIs, pages and mappings).
public struct GuestID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public init(_ rawValue: UInt32) { self.rawValue = rawValue }
  public var description: String { "guest \(rawValue)" }
}

/// A refused or failed TSM operation: the errno a guest sees (SEMANTICS.md §6, §8) and what went
/// wrong in words.
public struct TSMError: Error, Hashable, Sendable, CustomStringConvertible {
  public enum Reason: Hashable, Sendable {
    /// No SPDM session to the device: connect first (or again, after a failure).
    case notConnected
    case alreadyConnected
    case unknownInterface(TDISPInterfaceID)
    /// The TDI is bound to another guest (SEMANTICS.md §8: EBUSY).
    case boundToAnotherGuest(GuestID)
    /// The TDI is bound to no guest, or not in the state the operation needs.
    case invalidState(String)
    /// The requesting guest does not own the TDI.
    case notOwner(GuestID)
    /// The device answered TDISP_ERROR.
    case device(TDISPErrorCode, data: UInt32)
    /// The device answered, but not what the request asks for.
    case unexpectedResponse(String)
    /// SPDM or the transport under it failed; the session is torn down.
    case spdm(SPDMRequesterError)
    /// KEY_PROG was refused, or an acknowledgement did not match its request.
    case ideKeyProgramming(String)
    /// The DOE mailbox does not offer SPDM and secured SPDM.
    case missingProtocols([DOEProtocol])
  }

  public var errno: Errno
  public var reason: Reason

  public init(_ errno: Errno, _ reason: Reason) {
    self.errno = errno
    self.reason = reason
  }

  static let notConnected = TSMError(.ENOTCONN, .notConnected)

  /// A device-side or transport failure: EIO, or ETIMEDOUT when the device never answered.
  static func spdm(_ error: SPDMRequesterError) -> TSMError {
    if case .timeout = error { return TSMError(.ETIMEDOUT, .spdm(error)) }
    return TSMError(.EIO, .spdm(error))
  }

  public var description: String {
    let what: String
    switch reason {
    case .notConnected: what = "no SPDM session to the device"
    case .alreadyConnected: what = "already connected"
    case .unknownInterface(let id): what = "no TDI \(id)"
    case .boundToAnotherGuest(let guest): what = "TDI bound to \(guest)"
    case .invalidState(let why): what = why
    case .notOwner(let guest): what = "TDI not owned by \(guest)"
    case .device(let code, let data):
      what = "device answered TDISP_ERROR \(code) (data 0x\(String(data, radix: 16)))"
    case .unexpectedResponse(let why): what = "unexpected response: \(why)"
    case .spdm(let error): what = "SPDM: \(error)"
    case .ideKeyProgramming(let why): what = "IDE key programming: \(why)"
    case .missingProtocols(let offered): what = "DOE offers \(offered), not SPDM and secured SPDM"
    }
    return "\(errno): \(what)"
  }
}
