/// A decoding failure, with the byte offset (from the start of the outermost message) where it was
/// found. Every Cove decoder throws this, so a malformed message from a peer always becomes a typed
/// error that names what was wrong and where, never a crash.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
  /// What kind of malformation was found. A struct with static members (not a closed enum) so later
  /// protocol layers can add their own codes without breaking exhaustive switches.
  public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The message ended before a field it must contain.
    public static let truncated = Code(rawValue: "truncated")
    /// Bytes remain after the last field the message may contain.
    public static let trailingBytes = Code(rawValue: "trailing bytes")
    /// A length or count field is outside what the specification allows.
    public static let lengthOutOfRange = Code(rawValue: "length out of range")
    /// A field holds a value the specification does not allow here.
    public static let invalidValue = Code(rawValue: "invalid value")
    /// A field that identifies the message does not match what was expected.
    public static let unexpectedMessage = Code(rawValue: "unexpected message")

    public var description: String { rawValue }
  }

  public var code: Code
  /// Byte offset of the offending field, from the start of the message being decoded.
  public var offset: Int
  /// Which field, in the specification's words.
  public var field: String

  public init(_ code: Code, at offset: Int, field: String) {
    self.code = code
    self.offset = offset
    self.field = field
  }

  public var description: String { "\(code) at byte \(offset) (\(field))" }
}
