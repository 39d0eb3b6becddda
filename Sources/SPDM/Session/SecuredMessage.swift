public import CoveCrypto
public import CoveWire

/// DSP0277 secured messages as carried in PCIe DOE (DOE data object type 2).
///
/// Record: `SessionID u32 ‖ Length u16 ‖ AEAD(ApplicationDataLength u16 ‖ SPDM message ‖ random) ‖ MAC`.
/// The PCIe DOE binding (PCIe 6.x §6.31.4, DSP0277 §6) uses a zero-length sequence number on the
/// wire and no random padding, so the AAD is `SessionID ‖ Length` and the per-record IV is the
/// direction's IV XOR the 64-bit sequence number, little-endian, in the IV's low bytes.
///
/// Other bindings lay records out differently: ``SecuredRecordFormat``.
public enum SecuredMessage {
  /// AES-GCM tag size.
  public static let macSize = 16
  /// Bytes before the encrypted data: SessionID u32 + Length u16.
  public static let headerSize = 6

  /// Reads the session ID of a record without decrypting it (the receiver needs it to pick keys).
  public static func sessionID(of record: [UInt8]) throws(WireError) -> UInt32 {
    var reader = ByteReader(record)
    return try reader.readU32("SessionID")
  }

  /// The IV of one record: IV XOR sequence number (little-endian into bytes 0...7).
  public static func recordIV(_ iv: [UInt8], sequenceNumber: UInt64) -> [UInt8] {
    var out = iv
    for index in 0..<8 { out[index] ^= UInt8(truncatingIfNeeded: sequenceNumber >> (8 * UInt64(index))) }
    return out
  }

  /// Encrypts `message` with the direction's keys and advances its sequence number.
  public static func seal(
    sessionID: UInt32, message: [UInt8], keys: inout SPDMTrafficKeys, format: SecuredRecordFormat = .doe
  ) throws(SecuredMessageError) -> [UInt8] {
    let sequenceNumberSize = format.sequenceNumberSize
    let message = format.innerMessageType.map { [$0] + message } ?? message
    // The ApplicationDataLength field is a u16; the Length field covers it, the data and the MAC.
    guard message.count <= Int(UInt16.max) - 2 - macSize else { throw .messageTooLarge(message.count) }
    guard keys.sequenceNumber < UInt64.max else { throw .sequenceNumberExhausted }
    let length = UInt16(2 + message.count + macSize)
    var header = ByteWriter(capacity: headerSize + sequenceNumberSize)
    header.append(sessionID)
    for index in 0..<sequenceNumberSize {
      header.append(UInt8(truncatingIfNeeded: keys.sequenceNumber >> (8 * UInt64(index))))
    }
    header.append(length)
    var plaintext = ByteWriter(capacity: message.count + 2)
    plaintext.append(UInt16(message.count))
    plaintext.append(contentsOf: message)
    let sealed: (ciphertext: [UInt8], tag: [UInt8])
    do {
      sealed = try AES256GCM.seal(
        key: keys.key, iv: recordIV(keys.iv, sequenceNumber: keys.sequenceNumber),
        plaintext: plaintext.bytes, additionalData: header.bytes)
    } catch {
      throw .cryptoFailure(error)
    }
    keys.sequenceNumber += 1
    return header.bytes + sealed.ciphertext + sealed.tag
  }

  /// Decrypts a record with the direction's keys. The sequence number advances only on success, so a
  /// forged record cannot desynchronise the session (the caller tears the session down anyway).
  /// - Parameter allowsPadding: DOE carries whole DWs, so a record may be followed by up to three
  ///   zero bytes of padding (PCIe 6.x §6.30.1); the Length field says where the record ends.
  /// - Parameter format: the binding's layout; a sequence number on the wire must be the low bytes of
  ///   the expected one (libspdm checks the same), an inner message type must be the binding's.
  public static func open(
    _ record: [UInt8], keys: inout SPDMTrafficKeys, allowsPadding: Bool = false,
    format: SecuredRecordFormat = .doe
  ) throws(SecuredMessageError) -> (sessionID: UInt32, message: [UInt8]) {
    let sequenceNumberSize = format.sequenceNumberSize
    let headerSize = headerSize + sequenceNumberSize
    var record = record
    var reader = ByteReader(record)
    let sessionID: UInt32
    let length: UInt16
    do throws(WireError) {
      sessionID = try reader.readU32("SessionID")
      for index in 0..<sequenceNumberSize {
        let byte = try reader.readU8("SequenceNumber")
        guard byte == UInt8(truncatingIfNeeded: keys.sequenceNumber >> (8 * UInt64(index))) else {
          throw WireError(.invalidValue, at: 4 + index, field: "SequenceNumber")
        }
      }
      length = try reader.readU16("Length")
      // Length covers ApplicationDataLength (2), the data and the MAC, and must match the record.
      guard Int(length) >= 2 + macSize else {
        throw WireError(.lengthOutOfRange, at: 4, field: "Length")
      }
      let padding = reader.remaining - Int(length)
      if allowsPadding, (1...3).contains(padding), record.suffix(padding).allSatisfy({ $0 == 0 }) {
        record.removeLast(padding)
      } else if Int(length) != reader.remaining {
        throw WireError(
          Int(length) > reader.remaining ? .truncated : .trailingBytes, at: 4, field: "Length")
      }
    } catch {
      throw .malformed(error)
    }
    guard keys.sequenceNumber < UInt64.max else { throw .sequenceNumberExhausted }
    let ciphertext = Array(record[headerSize..<(record.count - macSize)])
    let tag = Array(record[(record.count - macSize)...])
    let plaintext: [UInt8]
    do {
      plaintext = try AES256GCM.open(
        key: keys.key, iv: recordIV(keys.iv, sequenceNumber: keys.sequenceNumber),
        ciphertext: ciphertext, tag: tag, additionalData: Array(record[0..<headerSize]))
    } catch {
      throw .authenticationFailed
    }
    var inner = ByteReader(plaintext, baseOffset: headerSize)
    do throws(WireError) {
      let appLength = try inner.readU16("ApplicationDataLength")
      var message = try inner.readBytes(Int(appLength), "ApplicationData")
      // Whatever follows is random padding (none for DOE, up to 32 bytes from libspdm over MCTP): ignored.
      if let type = format.innerMessageType {
        guard message.first == type else {
          throw WireError(.invalidValue, at: headerSize + 2, field: "MCTP message type")
        }
        message.removeFirst()
      }
      keys.sequenceNumber += 1
      return (sessionID, message)
    } catch {
      throw .malformed(error)
    }
  }
}

/// Why a secured record could not be produced or opened.
public enum SecuredMessageError: Error, Hashable, Sendable, CustomStringConvertible {
  case malformed(WireError)
  /// The AEAD tag did not verify: wrong key, wrong sequence number, or tampering (DSP0274 DecryptError).
  case authenticationFailed
  case messageTooLarge(Int)
  /// DSP0277: a sequence number must never wrap; the session must be re-keyed first.
  case sequenceNumberExhausted
  case unknownSession(UInt32)
  case cryptoFailure(CryptoError)

  public var description: String {
    switch self {
    case .malformed(let error): "malformed secured message: \(error)"
    case .authenticationFailed: "secured message failed authentication (AES-GCM tag mismatch)"
    case .messageTooLarge(let count): "message of \(count) bytes does not fit a secured record"
    case .sequenceNumberExhausted: "sequence number exhausted; a key update is required"
    case .unknownSession(let id): "no session with ID 0x\(String(id, radix: 16))"
    case .cryptoFailure(let error): "AEAD failure: \(error)"
    }
  }
}

/// How a transport binding lays out DSP0277 records around the AEAD.
/// - DOE (PCIe 6.x §6.31.4): no sequence number on the wire, the SPDM message alone inside.
/// - MCTP (DSP0275 §6.3, as libspdm's `spdm_transport_mctp_lib` does it): the low 2 bytes of the
///   sequence number between SessionID and Length (covered by the AAD), and the application data
///   begins with the MCTP message type of SPDM (0x05) before the SPDM message.
public struct SecuredRecordFormat: Hashable, Sendable {
  /// Bytes of sequence number on the wire, 0…8 (DSP0277 allows up to the full 64 bits).
  public let sequenceNumberSize: Int
  /// A byte before the SPDM message inside the encrypted application data, if the binding has one.
  public let innerMessageType: UInt8?

  public init(sequenceNumberSize: Int, innerMessageType: UInt8?) {
    precondition((0...8).contains(sequenceNumberSize), "a sequence number has at most 8 bytes")
    self.sequenceNumberSize = sequenceNumberSize
    self.innerMessageType = innerMessageType
  }

  public static let doe = SecuredRecordFormat(sequenceNumberSize: 0, innerMessageType: nil)
  public static let mctp = SecuredRecordFormat(sequenceNumberSize: 2, innerMessageType: 0x05)
}
