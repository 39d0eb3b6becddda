import CoveScenario
import SPDM
import Testing

/// What `cove run --pcap --keys` writes, read back by `cove trace show`'s decoder: the same messages.
@Suite struct RunCaptureTests {
  static func run(_ name: String = "default", seed: UInt64? = nil) throws -> RunResult {
    let text = try #require(BuiltInImages.all.first { $0.name == name }).text
    return try ScenarioRunner(image: try GuestImage(yaml: text, file: "\(name).yaml"), seed: seed).run()
  }

  @Test func aRunsCaptureDecodesBackToTheMessagesItExchanged() throws {
    let result = try Self.run()
    let pcap = PcapWriter.write(records: result.records)
    let keys = try SessionKeysFile.parse(SessionKeysFile.write(result.sessions))
    #expect(keys == result.sessions && !keys.isEmpty)
    let decoded = try TraceDecoder.decode(pcap: pcap, sessions: keys)
    #expect(decoded.messages.count == result.records.filter { $0.kind == .doe }.count)
    #expect(decoded.messages.allSatisfy { !$0.isEncrypted && $0.problem == nil })
    // Every TDISP and IDE_KM message the TSM logged in the clear, in order, byte for byte.
    let clear = result.records.filter { $0.kind == .tdisp || $0.kind == .idekm }.compactMap(\.bytes)
    let opened = decoded.messages.filter { $0.protocolKind == .tdisp || $0.protocolKind == .ideKM }.map(
      \.bytes)
    #expect(clear.count > 40)
    #expect(opened == clear)
    // Without the keys the secured records stay sealed.
    let sealed = try TraceDecoder.decode(pcap: pcap)
    #expect(
      sealed.messages.filter(\.isEncrypted).count == decoded.messages.filter { $0.sessionID != nil }.count)
  }

  @Test func theSameSeedGivesTheSameCaptureAndTrace() throws {
    let first = try Self.run("attestation-failures", seed: 21)
    let second = try Self.run("attestation-failures", seed: 21)
    #expect(PcapWriter.write(records: first.records) == PcapWriter.write(records: second.records))
    #expect(first.records.map(\.jsonLine) == second.records.map(\.jsonLine))
    #expect(SessionKeysFile.write(first.sessions) == SessionKeysFile.write(second.sessions))
    let other = try Self.run("attestation-failures", seed: 22)
    #expect(PcapWriter.write(records: other.records) != PcapWriter.write(records: first.records))
  }
}

extension RunCaptureTests {
  /// DSP0277: a secured record starts with ReqSessionID ‖ RspSessionID, the requester's half first on
  /// the wire, as libspdm (and so spdm-emu, QEMU and spdm-dump) composes it.
  @Test func securedRecordsCarryTheRequestersHalfFirst() throws {
    let result = try Self.run()
    let decoded = try TraceDecoder.decode(
      pcap: PcapWriter.write(records: result.records), sessions: result.sessions)
    let request = try #require(decoded.messages.first { $0.name == "KEY_EXCHANGE" })
    let response = try #require(decoded.messages.first { $0.name == "KEY_EXCHANGE_RSP" })
    let req = try #require(request[field: "req_session_id"].flatMap { UInt32($0.dropFirst(2), radix: 16) })
    let rsp = try #require(response[field: "rsp_session_id"].flatMap { UInt32($0.dropFirst(2), radix: 16) })
    let firstSecured = try #require(decoded.messages.first { $0.sessionID != nil })
    #expect(firstSecured.sessionID == rsp << 16 | req)
    #expect(result.sessions.first?.sessionID == rsp << 16 | req)
    // On the wire: the 4 bytes after the DOE header, little-endian — req's two bytes first.
    // The first secured SPDM object: DOE header vendor 0x0001 (PCI-SIG), type 2.
    let record = try #require(
      result.records.first { $0.kind == .doe && ($0.bytes ?? []).starts(with: [0x01, 0x00, 0x02]) })
    let bytes = try #require(record.bytes)
    #expect(Array(bytes[8..<12]) == [UInt8(req & 0xFF), UInt8(req >> 8), UInt8(rsp & 0xFF), UInt8(rsp >> 8)])
  }
}
