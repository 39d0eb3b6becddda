import CoveWire
import Testing

/// Hex with spaces, for hand-derived expectations.
func hex(_ text: String) -> [UInt8] {
  guard let bytes = Hex.decode(text) else { fatalError("bad hex in test: \(text)") }
  return bytes
}

func repeated(_ byte: UInt8, _ count: Int) -> [UInt8] { Array(repeating: byte, count: count) }

/// Expects `body` to throw a WireError with `code` (and `offset` when given).
func expectWireError(
  _ code: WireError.Code, at offset: Int? = nil, _ comment: Comment? = nil,
  sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws(WireError) -> Void
) {
  do {
    try body()
    Issue.record(
      "expected \(code) but decoding succeeded \(comment.map { "(\($0))" } ?? "")",
      sourceLocation: sourceLocation)
  } catch {
    #expect(error.code == code, "\(error) \(comment.map { "(\($0))" } ?? "")", sourceLocation: sourceLocation)
    if let offset {
      #expect(
        error.offset == offset, "\(error) \(comment.map { "(\($0))" } ?? "")", sourceLocation: sourceLocation)
    }
  }
}

/// The generic negative checks every SPDM message decoder must pass on a valid encoding `bytes`:
/// every shorter prefix is `.truncated` at an offset inside the prefix, one extra byte is
/// `.trailingBytes` at the old end, and a different RequestResponseCode is `.unexpectedMessage` at 1.
/// `truncationBelow` limits the prefix loop for messages whose tail is legitimately variable (ERROR).
func checkStandardRejections(
  _ bytes: [UInt8], truncationBelow: Int? = nil, trailing: Bool = true,
  sourceLocation: SourceLocation = #_sourceLocation, _ parse: ([UInt8]) throws(WireError) -> Void
) {
  do { try parse(bytes) } catch {
    Issue.record("valid message rejected: \(error)", sourceLocation: sourceLocation)
  }
  for length in 0..<(truncationBelow ?? bytes.count) {
    let prefix = Array(bytes.prefix(length))
    do {
      try parse(prefix)
      Issue.record("prefix of \(length) bytes accepted", sourceLocation: sourceLocation)
    } catch {
      #expect(error.code == .truncated, "prefix \(length): \(error)", sourceLocation: sourceLocation)
      #expect(error.offset <= length, "prefix \(length): \(error)", sourceLocation: sourceLocation)
    }
  }
  if trailing {
    expectWireError(.trailingBytes, at: bytes.count, "one trailing byte", sourceLocation: sourceLocation) {
      () throws(WireError) in try parse(bytes + [0])
    }
  }
  var wrongCode = bytes
  wrongCode[1] ^= 0x01
  expectWireError(.unexpectedMessage, at: 1, "wrong code", sourceLocation: sourceLocation) {
    () throws(WireError) in try parse(wrongCode)
  }
}
