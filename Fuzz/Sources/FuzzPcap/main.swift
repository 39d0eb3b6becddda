// libFuzzer entry point for the files Cove reads back from a run — all of them untrusted input: the
// pcap reader (link type 292), the session keys file parser, the JSON Lines trace parser, and the
// trace decoder over captures built from the input, in the clear and sealed with a fixed session's
// keys so the decrypted path (SPDM, TDISP and IDE_KM decoding inside a session) is reached. Nothing
// may crash; what reads must re-write to something that reads the same; a decode gives one message
// (and one line) per record.
import CoveCrypto
import CoveScenario
import CoveWire
import FuzzSupport
import PCIe
import SPDM

runLibFuzzer(fuzzInput)

/// The session every capture is decoded with (and the sealed records are sealed under).
enum Fixture {
  static let session = SPDMSessionSecrets(
    sessionID: 0xFFFE_0001, version: .v12, hash: .sha256, sharedSecret: [UInt8](repeating: 0xAB, count: 32),
    handshake: SPDMSecretPair(
      requester: [UInt8](repeating: 1, count: 32), responder: [UInt8](repeating: 2, count: 32)),
    data: SPDMSecretPair(
      requester: [UInt8](repeating: 3, count: 32), responder: [UInt8](repeating: 4, count: 32)))
}

func fuzzInput(_ input: [UInt8]) {
  guard let selector = input.first else { return }
  let body = Array(input.dropFirst())
  switch selector % 4 {
  case 0: pcapFile(body)
  case 1: keysFile(body)
  case 2: jsonLines(body)
  default: builtCapture(body)
  }
}

/// The bytes as a whole pcap file; then the same bytes as the records of a valid header.
func pcapFile(_ bytes: [UInt8]) {
  if let capture = try? PcapReader.read(bytes) {
    fuzzLog("pcap: \(capture.records.count) records")
    let again: PcapCapture
    do { again = try PcapReader.read(PcapWriter.write(capture.records)) } catch {
      preconditionFailure("a capture Cove read and rewrote does not read back: \(error)")
    }
    // The writer keeps the first snap-length bytes of a record and its original length.
    let kept = capture.records.map { Array($0.bytes.prefix(Int(PcapFormat.snapLength))) }
    precondition(
      again.records.map(\.bytes) == kept
        && again.records.map(\.originalLength) == capture.records.map(\.originalLength),
      "records changed on a round trip")
    for (old, new) in zip(capture.records, again.records) where old.time / 1_000_000_000 <= UInt64(UInt32.max)
    {
      precondition(new.time == old.time / 1000 * 1000, "a timestamp changed on a round trip")
    }
    if let objects = try? capture.dataObjects() {
      // Each record is its object's bytes, but for the reserved byte of header DW0 (bits 31:24),
      // which receivers ignore (PCIe 6.x §6.30.1) and the codec writes as zero.
      for (object, record) in zip(objects, capture.records) {
        var bytes = record.bytes
        bytes[3] = 0
        precondition(object.encode() == bytes, "a DOE object changed")
      }
    }
  }
  decode(PcapWriter.write([]) + bytes)
}

func decode(_ file: [UInt8]) {
  guard let capture = try? PcapReader.read(file) else { return }
  for sessions in [[], [Fixture.session]] {
    guard let decoded = try? TraceDecoder.decode(pcap: file, sessions: sessions) else {
      preconditionFailure("a capture that reads does not decode")
    }
    precondition(decoded.messages.count == capture.records.count, "one message per record")
    precondition(decoded.lines.count == decoded.messages.count, "one line per message")
  }
}

func keysFile(_ bytes: [UInt8]) {
  guard let sessions = try? SessionKeysFile.parse(String(decoding: bytes, as: UTF8.self)) else { return }
  fuzzLog("keys: \(sessions.count) sessions")
  precondition((try? SessionKeysFile.parse(SessionKeysFile.write(sessions))) == sessions, "keys round trip")
}

func jsonLines(_ bytes: [UInt8]) {
  let text = String(decoding: bytes, as: UTF8.self)
  for line in text.utf8.split(separator: UInt8(ascii: "\n")) {
    guard let record = try? TraceRecord(jsonLine: String(decoding: line, as: UTF8.self)) else { continue }
    precondition((try? TraceRecord(jsonLine: record.jsonLine)) == record, "trace record round trip")
  }
  if let decoded = try? TraceDecoder.decode(jsonLines: text, sessions: [Fixture.session]) {
    precondition(decoded.messages.count <= decoded.lines.count, "a line per record")
  }
}

/// A capture from the input's items: each a flags byte and a chunk (two-byte length). Flags bits 1:0
/// pick a discovery object, a plain SPDM object, a record sealed under the fixture's keys, or the
/// chunk as a whole (perhaps malformed) object; bit 2 the direction the sealing keys follow. The
/// sealing side switches to the data keys after a FINISH_RSP, as the decoder does.
func builtCapture(_ bytes: [UInt8]) {
  var reader = FuzzReader(bytes)
  var (requester, responder) = Fixture.session.handshakeKeys
  var established = false
  var records: [PcapRecord] = []
  while !reader.isAtEnd, records.count < 64 {
    let flags = reader.u8()
    let chunk = reader.chunk16()
    let object: [UInt8]
    switch flags & 3 {
    case 0: object = DOEDataObject(protocol: .discovery, payload: chunk).encode()
    case 1: object = DOEDataObject(protocol: .spdm, payload: chunk).encode()
    case 2:
      let isRequest = flags & 4 == 0
      let sealed =
        isRequest
        ? try? SecuredMessage.seal(sessionID: Fixture.session.sessionID, message: chunk, keys: &requester)
        : try? SecuredMessage.seal(sessionID: Fixture.session.sessionID, message: chunk, keys: &responder)
      guard let sealed else { continue }
      object = DOEDataObject(protocol: .securedSPDM, payload: sealed).encode()
      if !isRequest, !established, chunk.count > 1, chunk[1] == 0x65, let data = Fixture.session.dataKeys {
        (requester, responder) = data
        established = true
      }
    default: object = chunk
    }
    records.append(PcapRecord(time: UInt64(records.count) * 1000, bytes: object))
  }
  decode(PcapWriter.write(records))
}
