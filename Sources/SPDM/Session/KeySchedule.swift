public import CoveCrypto

/// The SPDM key schedule (DSP0274 1.2 §12 "Key schedule", Table "BinConcat").
///
/// Every secret is derived with HKDF over the negotiated hash. `BinConcat(length, label, context)`
/// is `length (u16, little-endian) ‖ "spdm1.N " ‖ label ‖ context`, where N is the negotiated minor
/// version, so a 1.2 session and a 1.3 session with the same inputs get different keys.
public struct SPDMKeySchedule: Sendable {
  public let hash: HashAlgorithm
  public let version: SPDMVersion
  /// AES-256-GCM key size (DSP0274 AEAD table: 32 bytes for AES-256-GCM).
  public let aeadKeySize: Int = 32
  /// AES-GCM IV size, 12 bytes (NIST SP 800-38D recommended length, as DSP0274 mandates).
  public let aeadIVSize: Int = 12

  public init(hash: HashAlgorithm, version: SPDMVersion) {
    self.hash = hash
    self.version = version
  }

  /// `BinConcat` (DSP0274 §12.1): the HKDF-Expand info string.
  public func binConcat(length: Int, label: String, context: [UInt8] = []) -> [UInt8] {
    precondition(length <= Int(UInt16.max), "BinConcat length is a u16")
    var info: [UInt8] = [UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8)]
    let minor = version.rawValue & 0x0F
    info.append(contentsOf: Array("spdm1.\(minor) ".utf8))
    info.append(contentsOf: Array(label.utf8))
    info.append(contentsOf: context)
    return info
  }

  func expand(_ secret: [UInt8], label: String, context: [UInt8] = [], length: Int) -> [UInt8] {
    do {
      return try HKDF.expand(
        hash, pseudoRandomKey: secret, info: binConcat(length: length, label: label, context: context),
        outputLength: length)
    } catch {
      // HKDF-Expand fails only for an output longer than 255·HashLen, which no SPDM label asks for.
      preconditionFailure("HKDF-Expand failed for a fixed SPDM length: \(error)")
    }
  }

  /// HandshakeSecret = HKDF-Extract(Salt_0 = 0^H, DHE secret).
  public func handshakeSecret(sharedSecret: [UInt8]) -> [UInt8] {
    HKDF.extract(hash, salt: [UInt8](repeating: 0, count: hash.digestSize), inputKeyMaterial: sharedSecret)
  }

  /// The two handshake secrets: bin_str1 "req hs data" and bin_str2 "rsp hs data", both with TH1.
  public func handshakeSecrets(handshakeSecret: [UInt8], th1: [UInt8]) -> SPDMSecretPair {
    SPDMSecretPair(
      requester: expand(handshakeSecret, label: "req hs data", context: th1, length: hash.digestSize),
      responder: expand(handshakeSecret, label: "rsp hs data", context: th1, length: hash.digestSize))
  }

  /// Master secret: Salt_1 = Expand(HS, bin_str0 "derived"), MS = Extract(Salt_1, 0^H).
  public func masterSecret(handshakeSecret: [UInt8]) -> [UInt8] {
    let salt1 = expand(handshakeSecret, label: "derived", length: hash.digestSize)
    return HKDF.extract(hash, salt: salt1, inputKeyMaterial: [UInt8](repeating: 0, count: hash.digestSize))
  }

  /// The data (application) secrets: bin_str3 "req app data" and bin_str4 "rsp app data" with TH2.
  public func dataSecrets(masterSecret: [UInt8], th2: [UInt8]) -> SPDMSecretPair {
    SPDMSecretPair(
      requester: expand(masterSecret, label: "req app data", context: th2, length: hash.digestSize),
      responder: expand(masterSecret, label: "rsp app data", context: th2, length: hash.digestSize))
  }

  /// finished_key = Expand(handshake secret, bin_str7 "finished", H).
  public func finishedKey(handshakeSecret: [UInt8]) -> [UInt8] {
    expand(handshakeSecret, label: "finished", length: hash.digestSize)
  }

  /// The AEAD key and IV of one direction: bin_str5 "key" and bin_str6 "iv".
  public func trafficKeys(secret: [UInt8]) -> SPDMTrafficKeys {
    SPDMTrafficKeys(
      secret: secret,
      key: expand(secret, label: "key", length: aeadKeySize),
      iv: expand(secret, label: "iv", length: aeadIVSize))
  }

  /// KEY_UPDATE: the next secret of a direction is Expand(current secret, bin_str9 "traffic upd", H).
  public func updatedSecret(_ secret: [UInt8]) -> [UInt8] {
    expand(secret, label: "traffic upd", length: hash.digestSize)
  }

  /// Verify data = HMAC(finished_key, TH) where TH is the transcript hash (DSP0274 §10.13/§10.14).
  public func verifyData(finishedKey: [UInt8], transcriptHash: [UInt8]) -> [UInt8] {
    HMAC.authenticate(hash, key: finishedKey, data: transcriptHash)
  }
}

/// A requester-direction and responder-direction pair of secrets.
public struct SPDMSecretPair: Sendable, Hashable {
  public var requester: [UInt8]
  public var responder: [UInt8]

  public init(requester: [UInt8], responder: [UInt8]) {
    self.requester = requester
    self.responder = responder
  }
}

/// One direction's traffic state: its secret (kept for KEY_UPDATE), AEAD key and IV, and the
/// sequence number of the next record (DSP0277 §6: starts at 0, one per message, reset on key update).
public struct SPDMTrafficKeys: Sendable, Hashable {
  public var secret: [UInt8]
  public var key: [UInt8]
  public var iv: [UInt8]
  public var sequenceNumber: UInt64 = 0

  public init(secret: [UInt8], key: [UInt8], iv: [UInt8], sequenceNumber: UInt64 = 0) {
    self.secret = secret
    self.key = key
    self.iv = iv
    self.sequenceNumber = sequenceNumber
  }
}
