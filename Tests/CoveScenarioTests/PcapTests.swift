import CoveCrypto
import CoveScenario
import CoveWire
import HostPlatform
import PCIe
import SPDM
import Testing

/// One PCI-SIG exchange as HostTSM logs it, or as the decoder recovers it from a capture.
struct Exchange: Hashable, CustomStringConvertible {
  var protocolName: String
  var request: [UInt8]
  var response: [UInt8]
  var description: String { "\(protocolName) \(Hex.encode(request)) → \(Hex.encode(response))" }
}

extension HostTSM {
  var exchanges: [Exchange] {
    messages.map { Exchange(protocolName: "\($0.protocolID)", request: $0.request, response: $0.response) }
  }
}

/// The TDISP and IDE_KM requests and responses of a decode, paired in order.
func exchanges(_ messages: [DecodedMessage]) -> [Exchange] {
  let carried = messages.filter { $0.protocolKind == .tdisp || $0.protocolKind == .ideKM }
  return stride(from: 0, to: carried.count - 1, by: 2).map { index in
    #expect(carried[index].direction == .request && carried[index + 1].direction == .response)
    return Exchange(
      protocolName: carried[index].protocolKind.rawValue, request: carried[index].bytes,
      response: carried[index + 1].bytes)
  }
}

@Suite struct PcapTests {
  @Test func theGlobalHeaderIsClassicPcapLittleEndianVersion2Point4LinkType292() {
    #expect(
      PcapWriter.write(records: [])
        == [
          0xD4, 0xC3, 0xB2, 0xA1, 0x02, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
          0x00, 0x00, 0x01, 0x00,  // snaplen 64 KiB: what DMTF spdm-dump accepts
          0x24, 0x01, 0x00, 0x00,  // 292 = LINKTYPE_PCI_DOE
        ])
  }

  @Test func aRecordIsStampedWithVirtualTimeInSecondsAndMicroseconds() throws {
    let object = DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0, 0]).encode()
    let records = [
      TraceRecord(
        time: 3_000_001_999, component: .tsm, kind: .doe, summary: "", bytes: object, isRequest: true),
      TraceRecord(time: 5, component: .tsm, kind: .spdm, summary: "not a DOE object", bytes: [1]),
      TraceRecord(time: 6, component: .tsm, kind: .doe, summary: "no bytes"),
    ]
    let file = PcapWriter.write(records: records)
    #expect(file.count == 24 + 16 + object.count)
    #expect(Array(file[24..<40]) == [3, 0, 0, 0, 1, 0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0])
    #expect(Array(file[40...]) == object)
    let capture = try PcapReader.read(file)
    #expect(capture.records == [PcapRecord(time: 3_000_001_000, bytes: object)])
    #expect(try capture.dataObjects() == [DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0, 0])])
  }

  /// The whole story: a real connect, lock, start, stop and disconnect captured, written as pcap and
  /// keys, read back and decoded — every SPDM message named and parsed, every session record opened,
  /// and the TDISP and IDE_KM messages exactly the TSM's own clear-text log.
  @Test func aCapturedLifecycleDecodesToTheTSMsOwnMessages() throws {
    let rig = try PcapRig()
    try rig.runLifecycle(disconnect: false)
    let sessionID = try #require(rig.tsm.session)
    try rig.tsm.disconnect()
    let records = rig.doeRecords
    #expect(records.count == rig.recorder.records.count)
    #expect(records.count == rig.tsm.transport.objects.count)
    #expect(records.map(\.bytes!) == rig.tsm.transport.objects.map { $0.encode() })

    let pcap = PcapWriter.write(records: records)
    let capture = try PcapReader.read(pcap)
    #expect(capture.records.count == records.count)
    #expect(capture.records.map(\.bytes) == records.map(\.bytes!))
    #expect(capture.records.map(\.time) == records.map { $0.time / 1000 * 1000 })
    #expect(try capture.dataObjects().map { $0.encode() } == records.map(\.bytes!))

    let secrets = rig.tsm.sessionSecrets
    #expect(secrets.count == 1 && secrets.first?.sessionID == sessionID && secrets.first?.data != nil)
    let keys = try SessionKeysFile.parse(SessionKeysFile.write(secrets))
    #expect(keys == secrets)

    let decoded = try TraceDecoder.decode(pcap: pcap, sessions: keys)
    #expect(decoded.messages.count == records.count && decoded.lines.count == records.count)
    #expect(decoded.messages.map { $0.direction == .request } == records.map { $0.isRequest! })
    let problems = decoded.messages.filter { $0.problem != nil || $0.isEncrypted }.map(\.line)
    #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    #expect(!rig.tsm.messages.isEmpty)
    #expect(exchanges(decoded.messages) == rig.tsm.exchanges)

    // SPDM as the TSM spoke it, in the clear up to KEY_EXCHANGE_RSP and in the session after.
    let spdm = decoded.messages.filter { $0.protocolKind == .spdm }
    let names = spdm.map(\.name)
    let connectStart = [
      "GET_VERSION", "VERSION", "GET_CAPABILITIES", "CAPABILITIES", "NEGOTIATE_ALGORITHMS", "ALGORITHMS",
      "GET_DIGESTS", "DIGESTS",
    ]
    #expect(Array(names.prefix(connectStart.count)) == connectStart)
    #expect(
      Array(names.drop { $0 != "GET_MEASUREMENTS" }.prefix(6))
        == ["GET_MEASUREMENTS", "MEASUREMENTS", "KEY_EXCHANGE", "KEY_EXCHANGE_RSP", "FINISH", "FINISH_RSP"])
    #expect(Array(names.suffix(2)) == ["END_SESSION", "END_SESSION_ACK"])
    let keyExchange = try #require(spdm.first { $0.name == "KEY_EXCHANGE_RSP" })
    #expect(keyExchange[field: "session_id"] == "0x" + hex(sessionID) && keyExchange.sessionID == nil)
    #expect(spdm.first { $0.name == "FINISH" }?.sessionID == sessionID)
    #expect(
      decoded.messages.filter { $0.dataObject == .securedSPDM }.allSatisfy { $0.sessionID == sessionID })
    // Discovery comes first, and says what the mailbox carries.
    #expect(decoded.messages.first?.protocolKind == .doeDiscovery)
    #expect(decoded.messages.first?.name == "DISCOVERY")

    // The TDISP messages carry the interface, the lock its stream, in their carrier.
    let lock = try #require(decoded.messages.first { $0.name == "LOCK_INTERFACE_REQUEST" })
    #expect(lock.protocolKind == .tdisp && lock.carrier == "VENDOR_DEFINED_REQUEST")
    #expect(lock[field: "interface"] == "03:00.1")
    #expect(lock[field: "default_stream"] == "\(rig.tsm.configuration.streamID)")
    #expect(lock.line.contains("secured SPDM, session 0x\(hex(sessionID)): VENDOR_DEFINED_REQUEST > TDISP"))
    let keyProgram = try #require(decoded.messages.first { $0.name == "KEY_PROG" })
    #expect(
      keyProgram.protocolKind == .ideKM && !keyProgram.line.contains(Hex.encode(keyProgram.bytes.suffix(40))))
  }

  @Test func withoutKeysTheSessionsRecordsAreReportedEncryptedWithTheirSession() throws {
    let rig = try PcapRig()
    try rig.runLifecycle(disconnect: false)
    let sessionID = try #require(rig.tsm.session)
    try rig.tsm.disconnect()
    let pcap = PcapWriter.write(records: rig.doeRecords)
    let withKeys = try TraceDecoder.decode(pcap: pcap, sessions: rig.tsm.sessionSecrets)
    let withoutKeys = try TraceDecoder.decode(pcap: pcap)
    #expect(withoutKeys.messages.count == withKeys.messages.count)
    for (clear, hidden) in zip(withKeys.messages, withoutKeys.messages) {
      if clear.dataObject == .securedSPDM {
        #expect(hidden.isEncrypted && hidden.protocolKind == .securedSPDM && hidden.name == "encrypted")
        #expect(hidden.sessionID == sessionID && hidden.problem == nil)
        #expect(hidden.line.contains("session 0x\(hex(sessionID)): encrypted length="))
      } else {
        #expect(hidden == clear)
      }
    }
    #expect(exchanges(withoutKeys.messages).isEmpty)
    #expect(withoutKeys.messages.contains { $0.isEncrypted })

    // Keys of another session (one secret off) do not open anything either, and say why.
    var wrong = rig.tsm.sessionSecrets
    wrong[0].handshake.requester[0] ^= 1
    wrong[0].data!.responder[0] ^= 1
    let wrongKeys = try TraceDecoder.decode(pcap: pcap, sessions: wrong)
    let finish = try #require(wrongKeys.messages.first { $0.dataObject == .securedSPDM })
    #expect(finish.isEncrypted && finish.problem?.contains("authentication") == true)
  }

  /// A session beyond what the TSM does: CHALLENGE, measurements in the session, heartbeats,
  /// KEY_UPDATE (UpdateKey, UpdateAllKeys, each followed by VerifyNewKey), END_SESSION, then a second
  /// session on the same connection; the decoder follows every key change.
  @Test func keyUpdatesAndASecondSessionAreFollowed() throws {
    let rig = try PcapRig(seed: 80)
    var requester = SPDMRequester(policy: rig.policy, entropy: SeededEntropy(seed: 81))
    requester.allowsTransportPadding = true
    requester.recordsSessionSecrets = true
    var driver = SPDMRequesterDriver(
      requester: requester, transport: PcapRig.recordingTransport(to: rig.device.tdisp, into: rig.recorder))
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    try driver.challenge()
    let first = try driver.startSession()
    _ = try driver.measurements(signed: true, sessionID: first, nonce: [UInt8](repeating: 7, count: 32))
    try driver.keyUpdate(sessionID: first, operation: .updateKey)
    try driver.keyUpdate(sessionID: first, operation: .updateAllKeys)
    _ = try driver.measurements(signed: false, sessionID: first)
    try driver.endSession(sessionID: first)
    let second = try driver.startSession()
    try driver.endSession(sessionID: second)

    #expect(driver.requester.sessionSecrets.map(\.sessionID) == [first, second])
    let pcap = PcapWriter.write(records: rig.doeRecords)
    let decoded = try TraceDecoder.decode(
      pcap: pcap, sessions: try SessionKeysFile.parse(SessionKeysFile.write(driver.requester.sessionSecrets)))
    let problems = decoded.messages.filter { $0.problem != nil || $0.isEncrypted }.map(\.line)
    #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    let inSession = decoded.messages.filter { $0.sessionID != nil }.map(\.name)
    #expect(
      inSession == [
        "FINISH", "FINISH_RSP", "GET_MEASUREMENTS", "MEASUREMENTS", "KEY_UPDATE", "KEY_UPDATE_ACK",
        "KEY_UPDATE",
        "KEY_UPDATE_ACK", "KEY_UPDATE", "KEY_UPDATE_ACK", "KEY_UPDATE", "KEY_UPDATE_ACK", "GET_MEASUREMENTS",
        "MEASUREMENTS", "END_SESSION", "END_SESSION_ACK", "FINISH", "FINISH_RSP", "END_SESSION",
        "END_SESSION_ACK",
      ])
    #expect(
      decoded.messages.filter { $0.name == "KEY_UPDATE" }.map { $0[field: "operation"] }
        == ["UpdateKey", "VerifyNewKey", "UpdateAllKeys", "VerifyNewKey"])
    #expect(decoded.messages.contains { $0.name == "CHALLENGE_AUTH" && $0.problem == nil })
  }

  /// The TSM keeps secrets only when asked, and across reconnects (each starts a fresh requester);
  /// a capture of three connections decodes the two whose secrets were kept.
  @Test func theTSMKeepsSessionSecretsAcrossReconnectsOnlyWhenAsked() throws {
    let rig = try PcapRig()
    rig.tsm.recordsSessionSecrets = false
    try rig.tsm.connect()
    let unrecorded = try #require(rig.tsm.session)
    try rig.tsm.disconnect()
    #expect(rig.tsm.sessionSecrets.isEmpty)
    rig.tsm.recordsSessionSecrets = true
    var recorded: [UInt32] = []
    for _ in 0..<2 {
      try rig.tsm.connect()
      recorded.append(try #require(rig.tsm.session))
      try rig.tsm.disconnect()
    }
    #expect(rig.tsm.sessionSecrets.map(\.sessionID) == recorded)
    let decoded = try TraceDecoder.decode(
      pcap: PcapWriter.write(records: rig.doeRecords), sessions: rig.tsm.sessionSecrets)
    let secured = decoded.messages.filter { $0.dataObject == .securedSPDM }
    #expect(secured.filter(\.isEncrypted).allSatisfy { $0.sessionID == unrecorded && $0.problem == nil })
    #expect(secured.filter { $0.sessionID == unrecorded }.allSatisfy { $0.isEncrypted })
    #expect(secured.filter { $0.sessionID != unrecorded }.allSatisfy { !$0.isEncrypted && $0.problem == nil })
    #expect(exchanges(decoded.messages).count * 3 == rig.tsm.exchanges.count * 2)
  }

  @Test func aCaptureReadsInEitherByteOrderAndWithNanosecondTimestamps() throws {
    let object = DOEDataObject(protocol: .discovery, payload: [0, 0, 0, 0]).encode()
    func header(_ magic: UInt32, bigEndian: Bool) -> [UInt8] {
      func u32(_ value: UInt32) -> [UInt8] {
        let little = (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        return bigEndian ? little.reversed() : little
      }
      func u16(_ value: UInt16) -> [UInt8] {
        bigEndian ? [UInt8(value >> 8), UInt8(value & 0xFF)] : [UInt8(value & 0xFF), UInt8(value >> 8)]
      }
      return u32(magic) + u16(2) + u16(4) + u32(0) + u32(0) + u32(65535) + u32(292)
        + u32(7) + u32(123) + u32(UInt32(object.count)) + u32(UInt32(object.count)) + object
    }
    let big = try PcapReader.read(header(0xA1B2_C3D4, bigEndian: true))
    #expect(big.isBigEndian && big.records == [PcapRecord(time: 7_000_123_000, bytes: object)])
    let nano = try PcapReader.read(header(0xA1B2_3C4D, bigEndian: false))
    #expect(nano.hasNanosecondTimestamps && nano.records == [PcapRecord(time: 7_000_000_123, bytes: object)])
  }

  @Test func aTruncatedCaptureIsATypedErrorAtTheMissingField() throws {
    let rig = try PcapRig()
    try rig.tsm.connect()
    let pcap = PcapWriter.write(records: Array(rig.doeRecords.prefix(3)))
    let firstRecordEnd = 24 + 16 + rig.doeRecords[0].bytes!.count
    for length in [0, 3, 4, 10, 23, 25, 39, 40, firstRecordEnd - 1, pcap.count - 1] {
      #expect(throws: PcapError.self) { try PcapReader.read(Array(pcap.prefix(length))) }
      do {
        _ = try PcapReader.read(Array(pcap.prefix(length)))
      } catch {
        #expect(error.code == .truncated, "\(length): \(error)")
        #expect(error.record == (length <= 24 ? nil : length < firstRecordEnd ? 0 : 2), "\(length)")
      }
    }
    // Cut on a record boundary, the rest is a shorter capture, not an error.
    #expect(try PcapReader.read(Array(pcap.prefix(firstRecordEnd))).records.count == 1)
    #expect(try PcapReader.read(Array(pcap.prefix(24))).records.isEmpty)
  }

  /// Ways to spoil a one-record capture, each with the error it must give.
  enum Garbling: String, CaseIterable, Sendable {
    case pcapng, garbage, version3, ethernet, mctp, overOneMebibyte, overTheSnapLength, moreThanTheOriginal

    func apply(to file: inout [UInt8]) {
      switch self {
      case .pcapng: file.replaceSubrange(0..<4, with: [0x0A, 0x0D, 0x0D, 0x0A])
      case .garbage: file[0] = 0
      case .version3: file[4] = 3
      case .ethernet: file.replaceSubrange(20..<24, with: [1, 0, 0, 0])
      case .mctp: file[20] = 0x23  // 291
      case .overOneMebibyte: file.replaceSubrange(32..<40, with: [1, 0, 0x10, 0, 1, 0, 0x10, 0])
      case .overTheSnapLength: file.replaceSubrange(16..<20, with: [8, 0, 0, 0])
      case .moreThanTheOriginal: file[36] = 8  // orig_len 8, incl_len 12
      }
    }

    var code: PcapError.Code {
      switch self {
      case .pcapng, .garbage: .badMagic
      case .version3: .unsupportedVersion
      case .ethernet, .mctp: .unsupportedLinkType
      case .overOneMebibyte, .overTheSnapLength, .moreThanTheOriginal: .lengthOutOfRange
      }
    }
  }

  @Test(arguments: Garbling.allCases)
  func aGarbledCaptureIsRefusedWithItsCode(_ garbling: Garbling) {
    let object = DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0, 0]).encode()
    var file = PcapWriter.write([PcapRecord(time: 0, bytes: object)])
    garbling.apply(to: &file)
    #expect(throws: PcapError.self) { try PcapReader.read(file) }
    do { _ = try PcapReader.read(file) } catch { #expect(error.code == garbling.code, "\(error)") }
  }

  /// A DOE object longer than the snap length is captured truncated, with its original length, as
  /// pcap does; it reads back as a partial record that is no DOE object to decode.
  @Test func anObjectOverTheSnapLengthIsCapturedTruncated() throws {
    let long = DOEDataObject(protocol: .spdm, payload: [0x12, 0x60] + [UInt8](repeating: 0, count: 70_000))
      .encode()
    let short = DOEDataObject(protocol: .spdm, payload: [0x12, 0x84, 0, 0]).encode()
    let file = PcapWriter.write([PcapRecord(time: 0, bytes: long), PcapRecord(time: 1000, bytes: short)])
    #expect(file.count == 24 + 16 + 65536 + 16 + short.count)
    let capture = try PcapReader.read(file)
    #expect(
      capture.records[0] == PcapRecord(time: 0, bytes: Array(long.prefix(65536)), originalLength: long.count))
    #expect(capture.records[0].isTruncated && !capture.records[1].isTruncated)
    #expect(throws: PcapError.self) { try capture.dataObjects() }
    do { _ = try capture.dataObjects() } catch { #expect(error.code == .partialRecord && error.record == 0) }
    let decoded = try TraceDecoder.decode(pcap: file)
    #expect(decoded.messages[0].name == "truncated DOE object")
    #expect(decoded.messages[0].problem == "captured 65536 of \(long.count) bytes (snap length)")
    #expect(decoded.messages[1].name == "GET_VERSION")
  }

  @Test func aRecordThatIsNoDOEObjectIsReportedAndDecodingGoesOn() throws {
    let good = DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0, 0]).encode()
    let bad: [UInt8] = [1, 0, 1, 0, 9, 0, 0, 0, 0x10, 0x84, 0, 0]  // length 9 DWs, 3 present
    let file = PcapWriter.write([PcapRecord(time: 0, bytes: bad), PcapRecord(time: 1000, bytes: good)])
    let capture = try PcapReader.read(file)
    #expect(throws: PcapError.self) { try capture.dataObjects() }
    do { _ = try capture.dataObjects() } catch {
      #expect(error.code == .malformedDataObject && error.record == 0)
    }
    let decoded = try TraceDecoder.decode(pcap: file)
    #expect(decoded.messages[0].name == "malformed DOE object" && decoded.messages[0].problem != nil)
    #expect(decoded.messages[1].name == "GET_VERSION" && decoded.messages[1].direction == .request)
  }
}

func hex(_ value: UInt32) -> String {
  let digits = String(value, radix: 16)
  return String(repeating: "0", count: 8 - digits.count) + digits
}
