public import CoveWire

/// DW padding as PCIe DOE imposes it (PCIe 6.x §6.30.1: a data object is a whole number of DWs;
/// an SPDM message is not). A transport that pads hands SPDM up to three zero bytes after a message;
/// the decoders stay strict, and this decides how much of the payload is the message.
public enum TransportPadding {
  /// Decodes `bytes`; when that fails and padding is allowed, retries without one, two, then three
  /// trailing zero bytes. On success `bytes` is trimmed to the message (what transcripts hash).
  /// - Throws: the error of the undecorated attempt, so a malformed message reports its own offset.
  public static func decode<Message>(
    _ bytes: inout [UInt8], allowsPadding: Bool, _ body: ([UInt8]) throws(WireError) -> Message
  ) throws(WireError) -> Message {
    let firstError: WireError
    do { return try body(bytes) } catch { firstError = error }
    if allowsPadding {
      var trimmed = bytes
      while let last = trimmed.last, last == 0, bytes.count - trimmed.count < 3 {
        trimmed.removeLast()
        if let message = try? body(trimmed) {
          bytes = trimmed
          return message
        }
      }
    }
    throw firstError
  }
}
