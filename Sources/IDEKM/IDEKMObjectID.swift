/// IDE_KM object IDs (PCIe 6.x §6.33.3, Table "IDE_KM Object ID"): the first byte of every IDE_KM
/// message. Unknown values survive decoding (STYLE.md rule 3).
public struct IDEKMObjectID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let query = IDEKMObjectID(rawValue: 0)
  public static let queryResponse = IDEKMObjectID(rawValue: 1)
  public static let keyProgram = IDEKMObjectID(rawValue: 2)
  public static let keyProgramAck = IDEKMObjectID(rawValue: 3)
  public static let keySetGo = IDEKMObjectID(rawValue: 4)
  public static let keySetStop = IDEKMObjectID(rawValue: 5)
  public static let keyGoStopAck = IDEKMObjectID(rawValue: 6)
  public var description: String {
    switch self {
    case .query: "QUERY"
    case .queryResponse: "QUERY_RESP"
    case .keyProgram: "KEY_PROG"
    case .keyProgramAck: "KP_ACK"
    case .keySetGo: "K_SET_GO"
    case .keySetStop: "K_SET_STOP"
    case .keyGoStopAck: "K_GOSTOP_ACK"
    default: "object 0x\(String(rawValue, radix: 16))"
    }
  }
}
