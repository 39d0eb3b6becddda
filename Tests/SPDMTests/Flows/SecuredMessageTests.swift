import CoveCrypto
import CoveWire
import SPDM
import Testing

/// DSP0277 records over DOE: layout, AAD, per-record IV, tamper detection.
@Suite struct SecuredMessageTests {
  let keys = SPDMTrafficKeys(
    secret: [UInt8](repeating: 0x11, count: 48), key: (0..<32).map { UInt8($0) },
    iv: [0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB], sequenceNumber: 0x0102)

  @Test func ivIsSaltXorLittleEndianSequenceNumber() {
    // Sequence number 0x0102030405060708 little-endian is 08 07 06 05 04 03 02 01, XORed into
    // IV bytes 0...7; bytes 8...11 are untouched.
    let iv = SecuredMessage.recordIV(keys.iv, sequenceNumber: 0x0102_0304_0506_0708)
    #expect(iv == [0xA8, 0xA6, 0xA4, 0xA6, 0xA0, 0xA6, 0xA4, 0xA6, 0xA8, 0xA9, 0xAA, 0xAB])
  }

  @Test func recordLayoutAndCiphertextMatchPython() throws {
    var sending = keys
    let message: [UInt8] = [0x12, 0xE8, 0x00, 0x00]
    let record = try SecuredMessage.seal(sessionID: 0xFFFE_0001, message: message, keys: &sending)
    // SessionID (LE) ‖ Length = 2 (AppDataLength) + 4 (message) + 16 (MAC) = 22 = 0x16.
    #expect(Array(record[0..<6]) == [0x01, 0x00, 0xFE, 0xFF, 0x16, 0x00])
    #expect(record.count == 6 + 22)
    #expect(sending.sequenceNumber == 0x0103)
    let python = try runPython(
      script: fixturePath("aesgcm_seal.py"),
      input: [
        "key": Hex.encode(keys.key),
        "iv": Hex.encode(SecuredMessage.recordIV(keys.iv, sequenceNumber: 0x0102)),
        "plaintext": "0400" + Hex.encode(message), "aad": Hex.encode(record[0..<6]),
      ])
    #expect(python["sealed"] == Hex.encode(record[6...]))
    var receiving = keys
    let opened = try SecuredMessage.open(record, keys: &receiving)
    #expect(opened.sessionID == 0xFFFE_0001)
    #expect(opened.message == message)
    #expect(receiving.sequenceNumber == 0x0103)
  }

  @Test func everyFlippedByteIsRejectedAndTheSequenceNumberHolds() throws {
    var sending = keys
    let record = try SecuredMessage.seal(sessionID: 7, message: Array("payload".utf8), keys: &sending)
    for index in record.indices {
      var tampered = record
      tampered[index] ^= 0x80
      var receiving = keys
      #expect(throws: SecuredMessageError.self) { try SecuredMessage.open(tampered, keys: &receiving) }
      #expect(receiving.sequenceNumber == keys.sequenceNumber)
    }
  }

  @Test func wrongSequenceNumberFailsAuthentication() throws {
    var sending = keys
    let record = try SecuredMessage.seal(sessionID: 7, message: [1, 2, 3], keys: &sending)
    var ahead = keys
    ahead.sequenceNumber += 1
    #expect(throws: SecuredMessageError.authenticationFailed) {
      try SecuredMessage.open(record, keys: &ahead)
    }
  }

  @Test func malformedRecordsAreTypedErrors() {
    var receiving = keys
    #expect(throws: SecuredMessageError.malformed(WireError(.truncated, at: 0, field: "SessionID"))) {
      try SecuredMessage.open([1, 2], keys: &receiving)
    }
    #expect(throws: SecuredMessageError.malformed(WireError(.lengthOutOfRange, at: 4, field: "Length"))) {
      try SecuredMessage.open([1, 0, 0, 0, 3, 0, 0, 0, 0], keys: &receiving)
    }
    #expect(throws: SecuredMessageError.malformed(WireError(.truncated, at: 4, field: "Length"))) {
      try SecuredMessage.open([1, 0, 0, 0, 40, 0] + [UInt8](repeating: 0, count: 20), keys: &receiving)
    }
    #expect(throws: SecuredMessageError.malformed(WireError(.trailingBytes, at: 4, field: "Length"))) {
      try SecuredMessage.open([1, 0, 0, 0, 18, 0] + [UInt8](repeating: 0, count: 19), keys: &receiving)
    }
  }

  @Test func exhaustedSequenceNumberRefusesToSeal() {
    var sending = keys
    sending.sequenceNumber = .max
    #expect(throws: SecuredMessageError.sequenceNumberExhausted) {
      try SecuredMessage.seal(sessionID: 1, message: [0], keys: &sending)
    }
  }
}
