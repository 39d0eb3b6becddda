public import CoveCrypto

/// The secret state of one SPDM session, identical on both ends (DSP0274 §10.12–§10.16, §12).
///
/// It carries the transcript that TH1 and TH2 hash (`A ‖ Hash(cert chain) ‖ K ‖ F`), the handshake
/// and data secrets, both finished keys and each direction's current traffic keys. Both the requester
/// and the responder machine hold one, so the same derivation code runs on each side.
public struct SPDMSessionKeys: Sendable {
  /// How its records are laid out on the transport (DOE, MCTP): see ``SecuredRecordFormat``.
  public var recordFormat = SecuredRecordFormat.doe

  public enum Phase: Sendable, Hashable {
    /// KEY_EXCHANGE_RSP sent/received; records use the handshake keys; only FINISH is allowed.
    case handshake
    /// FINISH_RSP sent/received; records use the data keys.
    case established
  }

  public let sessionID: UInt32
  public let algorithms: SPDMNegotiatedAlgorithms
  public private(set) var phase: Phase
  /// Running transcript for TH: message A, then Hash(certificate chain), K, F.
  private(set) var transcript: IncrementalHash
  public let handshakeSecret: [UInt8]
  public let finishedKeys: SPDMSecretPair
  public private(set) var requesterKeys: SPDMTrafficKeys
  public private(set) var responderKeys: SPDMTrafficKeys
  /// TH1 and TH2 as computed, kept so tests and the pcap key log can show them.
  public private(set) var th1: [UInt8]
  public private(set) var th2: [UInt8]?
  /// The ECDH shared secret, kept only for the `--keys` log that lets spdm-dump decrypt a capture.
  public let sharedSecret: [UInt8]

  /// Derives the handshake secrets once KEY_EXCHANGE_RSP is known through its signature.
  /// - Parameter transcriptThroughSignature: `A ‖ Hash(cert chain) ‖ KEY_EXCHANGE ‖ KEY_EXCHANGE_RSP`
  ///   up to and including the signature, as an incremental hash.
  public init(
    sessionID: UInt32, algorithms: SPDMNegotiatedAlgorithms, sharedSecret: [UInt8],
    transcriptThroughSignature: IncrementalHash
  ) {
    let schedule = algorithms.keySchedule
    self.sessionID = sessionID
    self.algorithms = algorithms
    self.sharedSecret = sharedSecret
    self.phase = .handshake
    self.transcript = transcriptThroughSignature
    let th1 = transcriptThroughSignature.finalize()
    self.th1 = th1
    let handshakeSecret = schedule.handshakeSecret(sharedSecret: sharedSecret)
    self.handshakeSecret = handshakeSecret
    let secrets = schedule.handshakeSecrets(handshakeSecret: handshakeSecret, th1: th1)
    finishedKeys = SPDMSecretPair(
      requester: schedule.finishedKey(handshakeSecret: secrets.requester),
      responder: schedule.finishedKey(handshakeSecret: secrets.responder))
    requesterKeys = schedule.trafficKeys(secret: secrets.requester)
    responderKeys = schedule.trafficKeys(secret: secrets.responder)
  }

  /// ResponderVerifyData = HMAC(responder finished_key, TH1) (DSP0274 §10.13).
  public var responderVerifyData: [UInt8] {
    algorithms.keySchedule.verifyData(finishedKey: finishedKeys.responder, transcriptHash: th1)
  }

  /// Appends bytes to the TH transcript (ResponderVerifyData, then FINISH, FINISH_RSP).
  public mutating func appendTranscript(_ bytes: [UInt8]) {
    transcript.update(bytes)
  }

  /// RequesterVerifyData = HMAC(requester finished_key, Hash(transcript so far)), computed after
  /// the FINISH header (and signature, with mutual authentication) was appended.
  public func requesterVerifyData(transcriptIncludingFinishHeader: IncrementalHash) -> [UInt8] {
    algorithms.keySchedule.verifyData(
      finishedKey: finishedKeys.requester, transcriptHash: transcriptIncludingFinishHeader.finalize())
  }

  /// The running transcript, for the FINISH computations that extend it tentatively.
  public var currentTranscript: IncrementalHash { transcript }

  /// After FINISH_RSP: TH2 over the whole transcript, the master secret, and the data keys.
  public mutating func establish() {
    precondition(phase == .handshake, "session established twice")
    let schedule = algorithms.keySchedule
    let th2 = transcript.finalize()
    self.th2 = th2
    let master = schedule.masterSecret(handshakeSecret: handshakeSecret)
    let secrets = schedule.dataSecrets(masterSecret: master, th2: th2)
    requesterKeys = schedule.trafficKeys(secret: secrets.requester)
    responderKeys = schedule.trafficKeys(secret: secrets.responder)
    phase = .established
  }

  /// KEY_UPDATE (DSP0274 §10.17): the direction's next secret is Expand(secret, "traffic upd");
  /// keys and IV follow, and the sequence number restarts at 0 (DSP0277).
  public mutating func updateRequesterKeys() {
    let schedule = algorithms.keySchedule
    requesterKeys = schedule.trafficKeys(secret: schedule.updatedSecret(requesterKeys.secret))
  }

  public mutating func updateResponderKeys() {
    let schedule = algorithms.keySchedule
    responderKeys = schedule.trafficKeys(secret: schedule.updatedSecret(responderKeys.secret))
  }

  /// Encrypts a message from the requester.
  public mutating func sealFromRequester(_ message: [UInt8]) throws(SecuredMessageError) -> [UInt8] {
    try SecuredMessage.seal(
      sessionID: sessionID, message: message, keys: &requesterKeys,
      format: recordFormat)
  }

  public mutating func sealFromResponder(_ message: [UInt8]) throws(SecuredMessageError) -> [UInt8] {
    try SecuredMessage.seal(
      sessionID: sessionID, message: message, keys: &responderKeys,
      format: recordFormat)
  }

  public mutating func openFromRequester(
    _ record: [UInt8], allowsPadding: Bool = false
  ) throws(SecuredMessageError) -> [UInt8] {
    try SecuredMessage.open(
      record, keys: &requesterKeys, allowsPadding: allowsPadding, format: recordFormat
    ).message
  }

  public mutating func openFromResponder(
    _ record: [UInt8], allowsPadding: Bool = false
  ) throws(SecuredMessageError) -> [UInt8] {
    try SecuredMessage.open(
      record, keys: &responderKeys, allowsPadding: allowsPadding, format: recordFormat
    ).message
  }
}
