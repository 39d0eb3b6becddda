/// Which of the two key sets of a stream a message names (PCIe 6.x §6.33.3 "Key Sub-stream", bit 0).
/// Two sets let the host refresh keys without taking the stream down: program the idle set, then
/// K_SET_GO it (§6.33.4 "IDE Key Refresh").
public enum IDEKeySet: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
  case k0 = 0
  case k1 = 1
  public var other: IDEKeySet { self == .k0 ? .k1 : .k0 }
  public var description: String { self == .k0 ? "K0" : "K1" }
}

/// Direction of a key, from the receiving port's own point of view (§6.33.3, bit 1: 0 RX, 1 TX).
public enum IDEDirection: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
  case receive = 0
  case transmit = 1
  public var description: String { self == .receive ? "RX" : "TX" }
}

/// The sub-stream a key protects (§6.33.3, bits 7:4; §6.33.2: 0 Posted Requests, 1 Non-Posted
/// Requests, 2 Completions). Other values survive decoding so the responder can answer them with
/// KP_ACK "Unsupported Value".
public struct IDESubStream: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let posted = IDESubStream(rawValue: 0)
  public static let nonPosted = IDESubStream(rawValue: 1)
  public static let completion = IDESubStream(rawValue: 2)
  /// The three sub-streams every stream has (§6.33.2).
  public static let all: [IDESubStream] = [.posted, .nonPosted, .completion]
  public var isDefined: Bool { rawValue <= 2 }
  public var description: String {
    switch self {
    case .posted: "PR"
    case .nonPosted: "NPR"
    case .completion: "CPL"
    default: "sub-stream \(rawValue)"
    }
  }
}

/// The "Key Sub-stream" byte of KEY_PROG, KP_ACK, K_SET_GO, K_SET_STOP and K_GOSTOP_ACK (PCIe 6.x
/// §6.33.3): bit 0 key set, bit 1 direction, bits 3:2 reserved, bits 7:4 sub-stream. Kept as the raw
/// byte so a value with reserved bits set or an undefined sub-stream round-trips unchanged.
public struct IDEKeySubStream: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  public init(keySet: IDEKeySet, direction: IDEDirection, subStream: IDESubStream) {
    precondition(subStream.rawValue < 16, "sub-stream is a 4-bit field")
    rawValue = keySet.rawValue | direction.rawValue << 1 | subStream.rawValue << 4
  }

  public var keySet: IDEKeySet { IDEKeySet(rawValue: rawValue & 1)! }
  public var direction: IDEDirection { IDEDirection(rawValue: rawValue >> 1 & 1)! }
  public var subStream: IDESubStream { IDESubStream(rawValue: rawValue >> 4) }
  /// Bits 3:2, reserved (§6.33.3).
  public var reservedBits: UInt8 { rawValue & 0x0C }

  public var description: String { "\(keySet)|\(direction)|\(subStream)" }
}

/// The SPDM session an IDE_KM message arrived in (the 32-bit session ID of DSP0274 KEY_EXCHANGE /
/// FINISH). IDE_KM is only accepted inside a secured session (PCIe 6.x §6.33.1), and the
/// device remembers which session programmed each key (PROTOCOLS.md, SEMANTICS.md §7).
public struct IDEKMSessionID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public init(_ rawValue: UInt32) { self.rawValue = rawValue }
  public var description: String { "session 0x\(String(rawValue, radix: 16))" }
}
