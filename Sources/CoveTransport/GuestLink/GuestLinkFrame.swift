import CoveWire

/// Why a guest link could not go on. Every decoding failure is one of these; the side that sees one
/// sends a `protocolError` frame when it can and closes that connection, and only that one.
public struct GuestLinkError: Error, Hashable, Sendable, CustomStringConvertible {
  public enum Code: UInt16, Hashable, Sendable {
    /// The first four bytes of a frame are not "CVGL".
    case badMagic = 1
    /// A frame of a version this side does not speak.
    case unsupportedVersion = 2
    /// A frame longer than ``GuestLinkFrame/maximumPayload``.
    case oversized = 3
    /// A payload that does not decode as its kind and operation say.
    case malformed = 4
    /// A frame kind or operation this side does not know.
    case unknownKind = 5
    /// A frame out of turn: a call before the handshake, a second hello, an answer to no call.
    case unexpected = 6
    /// The peer went away (the socket closed or failed).
    case disconnected = 7
    /// The host cannot run the guest's platform (memory, devices): the image is valid, the host said no.
    case refused = 8
  }

  public var code: Code
  public var message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "\(code): \(message)" }
}

/// One frame of the guest link: the guest⇄host boundary (ARCHITECTURE.md, "two boundaries") on a
/// Unix socket, between `cove guest` and `cove host`.
///
/// Every frame, both directions, little-endian like the rest of Cove's wire code:
///
///     magic "CVGL" (4) | version u16 | kind u16 | request id u32 | payload length u32 | payload
///
/// The 16-byte header carries the version in every frame, so a peer of another version is caught at
/// its first frame, not at the first payload it misreads. A call and its answer share a request id;
/// the records a call produced travel in `records` frames with that id before its answer.
public struct GuestLinkFrame: Hashable, Sendable {
  public enum Kind: UInt16, Hashable, Sendable {
    /// Guest → host, id 0: versions, seed and the guest image the host is to run a platform for.
    case hello = 0x0001
    /// Host → guest, id 0: the guest's memory file, its page runs and the platform it was given.
    case welcome = 0x0002
    /// Guest → host: one call of the guest's interface or of the scenario control.
    case call = 0x0010
    /// Host → guest: the call's result.
    case result = 0x0011
    /// Host → guest: the call was refused, with the errno the guest sees (`HypercallError`).
    case refused = 0x0012
    /// Host → guest: trace records the call in flight produced, in order, before its answer.
    case records = 0x0020
    /// Guest → host: the guest is done; the host tears its platform down and closes.
    case goodbye = 0x0030
    /// Either way: a ``GuestLinkError`` code and message; the sender then closes.
    case protocolError = 0x00FF
  }

  /// "CVGL", read little-endian.
  public static let magic: UInt32 = 0x4C47_5643
  public static let version: UInt16 = 1
  public static let headerSize = 16
  /// No call or answer comes near this (guest memory never crosses: it is shared); a header claiming
  /// more is hostile or corrupt and closes the connection before anything is allocated.
  public static let maximumPayload = 16 << 20

  public var kind: Kind
  public var id: UInt32
  public var payload: [UInt8]

  public init(_ kind: Kind, id: UInt32 = 0, payload: [UInt8] = []) {
    self.kind = kind
    self.id = id
    self.payload = payload
  }

  /// The frame's bytes, header and payload: what goes out in one write.
  public var encoded: [UInt8] {
    var writer = ByteWriter(capacity: Self.headerSize + payload.count)
    writer.append(Self.magic)
    writer.append(Self.version)
    writer.append(kind.rawValue)
    writer.append(id)
    writer.append(UInt32(payload.count))
    writer.append(contentsOf: payload)
    return writer.bytes
  }

  /// A protocol-error frame for `error`.
  public static func error(_ error: GuestLinkError) -> GuestLinkFrame {
    var writer = ByteWriter()
    writer.append(error.code.rawValue)
    writer.appendString(error.message)
    return GuestLinkFrame(.protocolError, payload: writer.bytes)
  }
}

/// Reassembles frames from a byte stream cut anywhere (a socket delivers what it has): bytes go in
/// with `append`, whole frames come out of `next()`. Checks the header before it waits for a payload,
/// so an absurd length is refused at once, never allocated.
public struct GuestLinkFrameDecoder: Sendable {
  private var buffer: [UInt8] = []
  private var start = 0

  public init() {}

  /// Bytes received and not yet part of a frame returned.
  public var buffered: Int { buffer.count - start }

  public mutating func append(_ bytes: some Sequence<UInt8>) {
    if start > 0 && start >= buffer.count / 2 {
      buffer.removeFirst(start)
      start = 0
    }
    buffer.append(contentsOf: bytes)
  }

  /// The next whole frame, or nil until more bytes arrive.
  public mutating func next() throws(GuestLinkError) -> GuestLinkFrame? {
    guard buffered >= 4 else { return nil }
    let header = buffer[start..<min(buffer.count, start + GuestLinkFrame.headerSize)]
    var reader = ByteReader(Array(header))
    let magic = (try? reader.readU32("magic")) ?? 0
    guard magic == GuestLinkFrame.magic else {
      throw GuestLinkError(.badMagic, "frame magic 0x\(String(magic, radix: 16)), not CVGL")
    }
    guard header.count == GuestLinkFrame.headerSize else { return nil }
    // A whole header is in: 16 bytes, so these reads cannot fail.
    let version = (try? reader.readU16("version")) ?? 0
    let kindValue = (try? reader.readU16("kind")) ?? 0
    let id = (try? reader.readU32("id")) ?? 0
    let length = (try? reader.readU32("length")) ?? 0
    guard version == GuestLinkFrame.version else {
      throw GuestLinkError(
        .unsupportedVersion, "frame version \(version); this side speaks \(GuestLinkFrame.version)")
    }
    guard length <= GuestLinkFrame.maximumPayload else {
      throw GuestLinkError(
        .oversized, "a \(length)-byte payload; the limit is \(GuestLinkFrame.maximumPayload)")
    }
    guard let kind = GuestLinkFrame.Kind(rawValue: kindValue) else {
      throw GuestLinkError(.unknownKind, "frame kind 0x\(String(kindValue, radix: 16))")
    }
    let total = GuestLinkFrame.headerSize + Int(length)
    guard buffered >= total else { return nil }
    let payload = Array(buffer[(start + GuestLinkFrame.headerSize)..<(start + total)])
    start += total
    return GuestLinkFrame(kind, id: id, payload: payload)
  }
}

extension ByteWriter {
  /// A string as u32 length + UTF-8.
  mutating func appendString(_ text: String) {
    let utf8 = Array(text.utf8)
    append(UInt32(utf8.count))
    append(contentsOf: utf8)
  }

  /// Bytes as u32 length + the bytes.
  mutating func appendBlob(_ bytes: [UInt8]) {
    append(UInt32(bytes.count))
    append(contentsOf: bytes)
  }
}

extension ByteReader {
  /// A string as u32 length + UTF-8; bytes that are not UTF-8 are malformed (not repaired, so every
  /// string has one encoding).
  mutating func readString(_ field: String) throws(WireError) -> String {
    let at = offset
    guard let text = String(validating: try readBlob(field), as: UTF8.self) else {
      throw WireError(.invalidValue, at: at, field: field)
    }
    return text
  }

  mutating func readBlob(_ field: String) throws(WireError) -> [UInt8] {
    let count = try readU32(field)
    return try readBytes(Int(count), field)
  }
}
