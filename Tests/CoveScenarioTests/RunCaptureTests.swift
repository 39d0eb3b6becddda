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
