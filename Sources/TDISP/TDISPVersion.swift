/// TDISP protocol version (PCIe 6.x §11.3.1: the TDISP message header's TDISPVersion byte, major in
/// bits 7:4 and minor in 3:0). Cove implements TDISP 1.0.
public struct TDISPVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let v10 = TDISPVersion(rawValue: 0x10)
  public static func < (lhs: TDISPVersion, rhs: TDISPVersion) -> Bool { lhs.rawValue < rhs.rawValue }
  public var description: String { "\(rawValue >> 4).\(rawValue & 0xF)" }
}
