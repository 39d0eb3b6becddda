import CoveCrypto
import CoveScenario
import SPDM
import Testing

/// What running DMTF's tools against `cove responder` found, kept as tests.
@Suite struct SPDMSocketInteropRegressionTests {
  static func capabilities(
    flags: UInt32, version: UInt8 = 0x12, dataTransferSize: UInt32 = 4096, maxMessageSize: UInt32 = 4096
  ) -> [UInt8] {
    var bytes: [UInt8] = [version, 0xE1, 0, 0, 0, 0, 0, 0]
    for value in [flags, dataTransferSize, maxMessageSize] {
      bytes += (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
    return bytes
  }

  /// SPDM-Responder-Validator case 2.4: GET_CAPABILITIES with KEY_EX/PSK but neither ENCRYPT nor MAC
  /// (0x7706), or ENCRYPT/MAC without a key exchange (0x71C6), is InvalidRequest, and the responder
  /// still waits for a valid GET_CAPABILITIES (Cove used to answer CAPABILITIES, and every later
  /// request of the case got UnexpectedRequest).
  /// KEY_EX without ENCRYPT/MAC, ENCRYPT/MAC without a key exchange, PSK_CAP 10b, HANDSHAKE_IN_THE_CLEAR
  /// without KEY_EX, CERT with PUB_KEY_ID.
  static let inconsistentFlags: [UInt32] = [0x7706, 0x71C6, 0x0A40, 0x8440, 0x1_02C2]

  @Test(arguments: inconsistentFlags)
  func inconsistentRequesterFlagsAreInvalidRequest(flags: UInt32) throws {
    var responder = SPDMResponder(
      configuration: try BuiltInDevice().responderConfiguration, entropy: SeededEntropy(seed: 1))
    _ = responder.respond(to: .plain([0x10, 0x84, 0, 0]))
    #expect(
      responder.respond(to: .plain(Self.capabilities(flags: flags))) == .plain([0x12, 0x7F, 0x01, 0x00]))
    // Cove's own requester flags: ENCRYPT, MAC, KEY_EX, HBEAT, KEY_UPD.
    guard case .plain(let response)? = responder.respond(to: .plain(Self.capabilities(flags: 0x62C0))) else {
      Issue.record("no answer")
      return
    }
    #expect(response.prefix(2) == [0x12, 0x61])
  }

  /// Case 2.4 step 11: without CHUNK_CAP, DataTransferSize must equal MaxSPDMmsgSize; with it, not.
  @Test func transferSizeBelowMessageSizeNeedsChunking() throws {
    var responder = SPDMResponder(
      configuration: try BuiltInDevice().responderConfiguration, entropy: SeededEntropy(seed: 1))
    _ = responder.respond(to: .plain([0x10, 0x84, 0, 0]))
    let unchunked = Self.capabilities(flags: 0x62C0, dataTransferSize: 1024, maxMessageSize: 4096)
    #expect(responder.respond(to: .plain(unchunked)) == .plain([0x12, 0x7F, 0x01, 0x00]))
    let chunked = Self.capabilities(flags: 0x62C0 | 1 << 17, dataTransferSize: 1024, maxMessageSize: 4096)
    guard case .plain(let response)? = responder.respond(to: .plain(chunked)) else {
      Issue.record("no answer")
      return
    }
    #expect(response.prefix(2) == [0x12, 0x61])
  }
}
