public import CoveCrypto

/// What it takes to read one SPDM session from a capture, and nothing that would let anyone act in
/// it: the session ID, the ECDH shared secret, and the two directions' traffic secrets of each
/// phase (DSP0274 §12: "req/rsp hs data" under TH1, "req/rsp app data" under TH2).
///
/// Why secrets rather than only the DHE secret or only keys and IVs:
/// - From the DHE secret alone (what DMTF spdm-dump's `--dhe_secret` takes, kept here for it) a
///   decoder must rebuild TH1 and TH2 from the capture: message A, the certificate chain reassembled
///   from CERTIFICATE portions, KEY_EXCHANGE and its response through the signature, FINISH — with the
///   DOE padding trimmed exactly as each side trimmed it. A second implementation of the whole
///   transcript is a lot of machinery for a trace viewer, and one missing message breaks it.
/// - From keys and IVs alone a decoder cannot follow KEY_UPDATE: the next key is
///   Expand(current *secret*, "traffic upd") (DSP0274 §10.17).
/// - From the traffic secrets each key and IV is two HKDF-Expands (``SPDMKeySchedule/trafficKeys(secret:)``)
///   and each KEY_UPDATE one more, with no transcript at all.
///
/// A record of secrets exists only when the requester was asked to keep one
/// (``SPDMRequester/recordsSessionSecrets``): like a TLS key log, it is for debugging captures.
public struct SPDMSessionSecrets: Hashable, Sendable {
  /// The session ID as DSP0277 records carry it: ReqSessionID ‖ RspSessionID on the wire, that is
  /// RspSessionID << 16 | ReqSessionID read little-endian (as libspdm composes it).
  public var sessionID: UInt32
  /// The negotiated SPDM version (its minor digit is part of every HKDF label, DSP0274 §12.1).
  public var version: SPDMVersion
  /// The negotiated hash (BaseHashSel), which HKDF runs over.
  public var hash: HashAlgorithm
  /// The ECDH shared secret (the X coordinate, DSP0274 §12): spdm-dump's `--dhe_secret`.
  public var sharedSecret: [UInt8]
  /// Handshake secrets (bin_str1 "req hs data", bin_str2 "rsp hs data" with TH1): FINISH and
  /// FINISH_RSP are sealed with the keys derived from them.
  public var handshake: SPDMSecretPair
  /// Data secrets (bin_str3 "req app data", bin_str4 "rsp app data" with TH2) as the session was
  /// established, before any KEY_UPDATE; nil when FINISH did not complete.
  public var data: SPDMSecretPair?

  public init(
    sessionID: UInt32, version: SPDMVersion, hash: HashAlgorithm, sharedSecret: [UInt8],
    handshake: SPDMSecretPair, data: SPDMSecretPair?
  ) {
    self.sessionID = sessionID
    self.version = version
    self.hash = hash
    self.sharedSecret = sharedSecret
    self.handshake = handshake
    self.data = data
  }

  /// The secrets of a session as its keys stand: handshake secrets from the handshake secret and TH1,
  /// data secrets (once established) from the master secret and TH2 — the initial ones, whatever
  /// KEY_UPDATEs have happened since.
  public init(_ session: SPDMSessionKeys) {
    let schedule = session.algorithms.keySchedule
    sessionID = session.sessionID
    version = session.algorithms.version
    hash = session.algorithms.hash
    sharedSecret = session.sharedSecret
    handshake = schedule.handshakeSecrets(handshakeSecret: session.handshakeSecret, th1: session.th1)
    if let th2 = session.th2 {
      data = schedule.dataSecrets(
        masterSecret: schedule.masterSecret(handshakeSecret: session.handshakeSecret), th2: th2)
    } else {
      data = nil
    }
  }

  public var keySchedule: SPDMKeySchedule { SPDMKeySchedule(hash: hash, version: version) }

  /// Both directions' AEAD keys and IVs for the handshake phase, sequence numbers at 0.
  public var handshakeKeys: (requester: SPDMTrafficKeys, responder: SPDMTrafficKeys) {
    (
      keySchedule.trafficKeys(secret: handshake.requester),
      keySchedule.trafficKeys(secret: handshake.responder)
    )
  }

  /// Both directions' AEAD keys and IVs right after FINISH_RSP, sequence numbers at 0.
  public var dataKeys: (requester: SPDMTrafficKeys, responder: SPDMTrafficKeys)? {
    data.map {
      (keySchedule.trafficKeys(secret: $0.requester), keySchedule.trafficKeys(secret: $0.responder))
    }
  }
}
