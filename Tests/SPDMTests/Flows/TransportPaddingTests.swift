import CoveWire
import SPDM
import Testing

/// DOE DW padding: at most three zero bytes after a message are dropped, nothing else.
@Suite struct TransportPaddingTests {
  let decode: ([UInt8]) throws(WireError) -> HeartbeatRequest = { bytes throws(WireError) in
    try HeartbeatRequest(parsing: bytes)
  }

  @Test(arguments: [1, 2, 3])
  func upToThreeZeroBytesAreTrimmed(_ padding: Int) throws {
    var bytes: [UInt8] = [0x12, 0xE8, 0, 0] + [UInt8](repeating: 0, count: padding)
    let message = try TransportPadding.decode(&bytes, allowsPadding: true, decode)
    #expect(message.version == .v12)
    #expect(bytes == [0x12, 0xE8, 0, 0])
  }

  @Test func fourZeroBytesOrNonZeroPaddingAreStillTrailingBytes() {
    var four: [UInt8] = [0x12, 0xE8, 0, 0, 0, 0, 0, 0]
    #expect(throws: WireError(.trailingBytes, at: 4, field: "HEARTBEAT")) {
      try TransportPadding.decode(&four, allowsPadding: true, decode)
    }
    var nonZero: [UInt8] = [0x12, 0xE8, 0, 0, 0, 1]
    #expect(throws: WireError(.trailingBytes, at: 4, field: "HEARTBEAT")) {
      try TransportPadding.decode(&nonZero, allowsPadding: true, decode)
    }
    #expect(nonZero == [0x12, 0xE8, 0, 0, 0, 1])
  }

  @Test func withoutPaddingTheDecoderIsStrict() {
    var bytes: [UInt8] = [0x12, 0xE8, 0, 0, 0]
    #expect(throws: WireError(.trailingBytes, at: 4, field: "HEARTBEAT")) {
      try TransportPadding.decode(&bytes, allowsPadding: false, decode)
    }
  }
}
