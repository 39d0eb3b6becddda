// Capability flags and algorithm bit masks. Bit positions checked against DSP0274 1.3 and DMTF libspdm
// include/industry_standard/spdm.h.

/// GET_CAPABILITIES Flags (DSP0274 "Flag fields definitions for the Requester" table).
public struct RequesterCapabilities: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// CERT_CAP
  public static let cert = RequesterCapabilities(rawValue: 1 << 1)
  /// CHAL_CAP
  public static let chal = RequesterCapabilities(rawValue: 1 << 2)
  /// ENCRYPT_CAP
  public static let encrypt = RequesterCapabilities(rawValue: 1 << 6)
  /// MAC_CAP
  public static let mac = RequesterCapabilities(rawValue: 1 << 7)
  /// MUT_AUTH_CAP
  public static let mutAuth = RequesterCapabilities(rawValue: 1 << 8)
  /// KEY_EX_CAP
  public static let keyEx = RequesterCapabilities(rawValue: 1 << 9)
  /// PSK_CAP = 01b (bits 11:10); a Requester may only advertise 01b.
  public static let psk = RequesterCapabilities(rawValue: 1 << 10)
  /// ENCAP_CAP
  public static let encap = RequesterCapabilities(rawValue: 1 << 12)
  /// HBEAT_CAP
  public static let hbeat = RequesterCapabilities(rawValue: 1 << 13)
  /// KEY_UPD_CAP
  public static let keyUpd = RequesterCapabilities(rawValue: 1 << 14)
  /// HANDSHAKE_IN_THE_CLEAR_CAP
  public static let handshakeInTheClear = RequesterCapabilities(rawValue: 1 << 15)
  /// PUB_KEY_ID_CAP
  public static let pubKeyID = RequesterCapabilities(rawValue: 1 << 16)
  /// CHUNK_CAP (1.2)
  public static let chunk = RequesterCapabilities(rawValue: 1 << 17)
  /// EP_INFO_CAP = 01b, bits 23:22 (1.3)
  public static let epInfoNoSig = RequesterCapabilities(rawValue: 1 << 22)
  /// EP_INFO_CAP = 10b (1.3)
  public static let epInfoSig = RequesterCapabilities(rawValue: 1 << 23)
  /// EVENT_CAP (1.3)
  public static let event = RequesterCapabilities(rawValue: 1 << 25)
  /// MULTI_KEY_CAP = 01b, bits 27:26 (1.3)
  public static let multiKeyOnly = RequesterCapabilities(rawValue: 1 << 26)
  /// MULTI_KEY_CAP = 10b (1.3)
  public static let multiKeyNeg = RequesterCapabilities(rawValue: 1 << 27)
}

/// CAPABILITIES Flags (DSP0274 "Flag fields definitions for the Responder" table).
public struct ResponderCapabilities: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// CACHE_CAP
  public static let cache = ResponderCapabilities(rawValue: 1 << 0)
  /// CERT_CAP
  public static let cert = ResponderCapabilities(rawValue: 1 << 1)
  /// CHAL_CAP
  public static let chal = ResponderCapabilities(rawValue: 1 << 2)
  /// MEAS_CAP = 01b (bits 4:3): measurements without signature.
  public static let measNoSig = ResponderCapabilities(rawValue: 1 << 3)
  /// MEAS_CAP = 10b: measurements with signature.
  public static let measSig = ResponderCapabilities(rawValue: 1 << 4)
  /// MEAS_FRESH_CAP
  public static let measFresh = ResponderCapabilities(rawValue: 1 << 5)
  /// ENCRYPT_CAP
  public static let encrypt = ResponderCapabilities(rawValue: 1 << 6)
  /// MAC_CAP
  public static let mac = ResponderCapabilities(rawValue: 1 << 7)
  /// MUT_AUTH_CAP
  public static let mutAuth = ResponderCapabilities(rawValue: 1 << 8)
  /// KEY_EX_CAP
  public static let keyEx = ResponderCapabilities(rawValue: 1 << 9)
  /// PSK_CAP = 01b (bits 11:10): PSK without Responder context.
  public static let psk = ResponderCapabilities(rawValue: 1 << 10)
  /// PSK_CAP = 10b: PSK with Responder context.
  public static let pskWithContext = ResponderCapabilities(rawValue: 1 << 11)
  /// ENCAP_CAP
  public static let encap = ResponderCapabilities(rawValue: 1 << 12)
  /// HBEAT_CAP
  public static let hbeat = ResponderCapabilities(rawValue: 1 << 13)
  /// KEY_UPD_CAP
  public static let keyUpd = ResponderCapabilities(rawValue: 1 << 14)
  /// HANDSHAKE_IN_THE_CLEAR_CAP
  public static let handshakeInTheClear = ResponderCapabilities(rawValue: 1 << 15)
  /// PUB_KEY_ID_CAP
  public static let pubKeyID = ResponderCapabilities(rawValue: 1 << 16)
  /// CHUNK_CAP (1.2)
  public static let chunk = ResponderCapabilities(rawValue: 1 << 17)
  /// ALIAS_CERT_CAP (1.2)
  public static let aliasCert = ResponderCapabilities(rawValue: 1 << 18)
  /// SET_CERT_CAP (1.2)
  public static let setCert = ResponderCapabilities(rawValue: 1 << 19)
  /// CSR_CAP (1.2)
  public static let csr = ResponderCapabilities(rawValue: 1 << 20)
  /// CERT_INSTALL_RESET_CAP (1.2)
  public static let certInstallReset = ResponderCapabilities(rawValue: 1 << 21)
  /// EP_INFO_CAP = 01b, bits 23:22 (1.3)
  public static let epInfoNoSig = ResponderCapabilities(rawValue: 1 << 22)
  /// EP_INFO_CAP = 10b (1.3)
  public static let epInfoSig = ResponderCapabilities(rawValue: 1 << 23)
  /// MEL_CAP (1.3)
  public static let mel = ResponderCapabilities(rawValue: 1 << 24)
  /// EVENT_CAP (1.3)
  public static let event = ResponderCapabilities(rawValue: 1 << 25)
  /// MULTI_KEY_CAP = 01b, bits 27:26 (1.3)
  public static let multiKeyOnly = ResponderCapabilities(rawValue: 1 << 26)
  /// MULTI_KEY_CAP = 10b (1.3)
  public static let multiKeyNeg = ResponderCapabilities(rawValue: 1 << 27)
  /// GET_KEY_PAIR_INFO_CAP (1.3)
  public static let getKeyPairInfo = ResponderCapabilities(rawValue: 1 << 28)
  /// SET_KEY_PAIR_INFO_CAP (1.3)
  public static let setKeyPairInfo = ResponderCapabilities(rawValue: 1 << 29)
}

/// BaseAsymAlgo / BaseAsymSel (DSP0274 NEGOTIATE_ALGORITHMS request table); the same bits, in a u16,
/// form the ReqBaseAsymAlg AlgStruct (AlgType 4).
public struct BaseAsymAlgorithms: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// TPM_ALG_RSASSA_2048
  public static let rsassa2048 = BaseAsymAlgorithms(rawValue: 1 << 0)
  /// TPM_ALG_RSAPSS_2048
  public static let rsapss2048 = BaseAsymAlgorithms(rawValue: 1 << 1)
  /// TPM_ALG_RSASSA_3072
  public static let rsassa3072 = BaseAsymAlgorithms(rawValue: 1 << 2)
  /// TPM_ALG_RSAPSS_3072
  public static let rsapss3072 = BaseAsymAlgorithms(rawValue: 1 << 3)
  /// TPM_ALG_ECDSA_ECC_NIST_P256
  public static let ecdsaP256 = BaseAsymAlgorithms(rawValue: 1 << 4)
  /// TPM_ALG_RSASSA_4096
  public static let rsassa4096 = BaseAsymAlgorithms(rawValue: 1 << 5)
  /// TPM_ALG_RSAPSS_4096
  public static let rsapss4096 = BaseAsymAlgorithms(rawValue: 1 << 6)
  /// TPM_ALG_ECDSA_ECC_NIST_P384
  public static let ecdsaP384 = BaseAsymAlgorithms(rawValue: 1 << 7)
  /// TPM_ALG_ECDSA_ECC_NIST_P521
  public static let ecdsaP521 = BaseAsymAlgorithms(rawValue: 1 << 8)
  /// TPM_ALG_SM2_ECC_SM2_P256 (1.2)
  public static let sm2P256 = BaseAsymAlgorithms(rawValue: 1 << 9)
  /// EdDSA ed25519 (1.2)
  public static let eddsaEd25519 = BaseAsymAlgorithms(rawValue: 1 << 10)
  /// EdDSA ed448 (1.2)
  public static let eddsaEd448 = BaseAsymAlgorithms(rawValue: 1 << 11)
}

/// BaseHashAlgo / BaseHashSel (DSP0274 NEGOTIATE_ALGORITHMS request table).
public struct BaseHashAlgorithms: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// TPM_ALG_SHA_256
  public static let sha256 = BaseHashAlgorithms(rawValue: 1 << 0)
  /// TPM_ALG_SHA_384
  public static let sha384 = BaseHashAlgorithms(rawValue: 1 << 1)
  /// TPM_ALG_SHA_512
  public static let sha512 = BaseHashAlgorithms(rawValue: 1 << 2)
  /// TPM_ALG_SHA3_256
  public static let sha3_256 = BaseHashAlgorithms(rawValue: 1 << 3)
  /// TPM_ALG_SHA3_384
  public static let sha3_384 = BaseHashAlgorithms(rawValue: 1 << 4)
  /// TPM_ALG_SHA3_512
  public static let sha3_512 = BaseHashAlgorithms(rawValue: 1 << 5)
  /// TPM_ALG_SM3_256 (1.2)
  public static let sm3_256 = BaseHashAlgorithms(rawValue: 1 << 6)
}

/// ALGORITHMS MeasurementHashAlgo (DSP0274 ALGORITHMS response table).
public struct MeasurementHashAlgorithms: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// Raw bit stream only
  public static let rawBitStreamOnly = MeasurementHashAlgorithms(rawValue: 1 << 0)
  /// TPM_ALG_SHA_256
  public static let sha256 = MeasurementHashAlgorithms(rawValue: 1 << 1)
  /// TPM_ALG_SHA_384
  public static let sha384 = MeasurementHashAlgorithms(rawValue: 1 << 2)
  /// TPM_ALG_SHA_512
  public static let sha512 = MeasurementHashAlgorithms(rawValue: 1 << 3)
  /// TPM_ALG_SHA3_256
  public static let sha3_256 = MeasurementHashAlgorithms(rawValue: 1 << 4)
  /// TPM_ALG_SHA3_384
  public static let sha3_384 = MeasurementHashAlgorithms(rawValue: 1 << 5)
  /// TPM_ALG_SHA3_512
  public static let sha3_512 = MeasurementHashAlgorithms(rawValue: 1 << 6)
  /// TPM_ALG_SM3_256 (1.2)
  public static let sm3_256 = MeasurementHashAlgorithms(rawValue: 1 << 7)
}

/// DHE named groups, AlgStruct AlgType 2 (DSP0274 "DHE structure" table).
public struct DHEGroups: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  public static let ffdhe2048 = DHEGroups(rawValue: 1 << 0)
  public static let ffdhe3072 = DHEGroups(rawValue: 1 << 1)
  public static let ffdhe4096 = DHEGroups(rawValue: 1 << 2)
  public static let secp256r1 = DHEGroups(rawValue: 1 << 3)
  public static let secp384r1 = DHEGroups(rawValue: 1 << 4)
  public static let secp521r1 = DHEGroups(rawValue: 1 << 5)
  /// SM2_P256 (1.2)
  public static let sm2P256 = DHEGroups(rawValue: 1 << 6)
}

/// AEAD cipher suites, AlgStruct AlgType 3 (DSP0274 "AEAD structure" table).
public struct AEADCipherSuites: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  public static let aes128GCM = AEADCipherSuites(rawValue: 1 << 0)
  public static let aes256GCM = AEADCipherSuites(rawValue: 1 << 1)
  public static let chacha20Poly1305 = AEADCipherSuites(rawValue: 1 << 2)
  /// AEAD_SM4_GCM (1.2)
  public static let sm4GCM = AEADCipherSuites(rawValue: 1 << 3)
}

/// Key schedules, AlgStruct AlgType 5 (DSP0274 "KeySchedule structure" table).
public struct KeyScheduleAlgorithms: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// SPDM key schedule (DSP0274 "Key schedule" clause).
  public static let spdm = KeyScheduleAlgorithms(rawValue: 1 << 0)
}

/// MeasurementSpecification / MeasurementSpecificationSel (DSP0274 NEGOTIATE_ALGORITHMS tables).
public struct MeasurementSpecification: OptionSet, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// DMTF measurement specification (DSP0274 "DMTF measurement specification format").
  public static let dmtf = MeasurementSpecification(rawValue: 1 << 0)
}

/// MELspecification / MELspecificationSel (1.3; reserved before).
public struct MELSpecification: OptionSet, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// DMTF measurement extension log format.
  public static let dmtf = MELSpecification(rawValue: 1 << 0)
}

extension BaseAsymAlgorithms {
  /// Raw signature size in bytes for one selected algorithm (DSP0274 "Signature size" in the
  /// NEGOTIATE_ALGORITHMS BaseAsymAlgo definition: RSA = modulus size, ECDSA = r||s, EdDSA per RFC 8032),
  /// or nil for none or more than one bit.
  public var signatureSize: Int? {
    switch self {
    case .rsassa2048, .rsapss2048: 256
    case .rsassa3072, .rsapss3072: 384
    case .rsassa4096, .rsapss4096: 512
    case .ecdsaP256, .sm2P256, .eddsaEd25519: 64
    case .ecdsaP384: 96
    case .ecdsaP521: 132
    case .eddsaEd448: 114
    default: nil
    }
  }
}

extension BaseHashAlgorithms {
  /// Digest size in bytes for one selected algorithm, or nil for none or more than one bit.
  public var hashSize: Int? {
    switch self {
    case .sha256, .sha3_256, .sm3_256: 32
    case .sha384, .sha3_384: 48
    case .sha512, .sha3_512: 64
    default: nil
    }
  }
}

extension DHEGroups {
  /// ExchangeData size D in bytes for one selected group (DSP0274 KEY_EXCHANGE "ExchangeData":
  /// FFDHE = p size, ECDHE = X||Y), or nil for none or more than one bit.
  public var exchangeDataSize: Int? {
    switch self {
    case .ffdhe2048: 256
    case .ffdhe3072: 384
    case .ffdhe4096: 512
    case .secp256r1, .sm2P256: 64
    case .secp384r1: 96
    case .secp521r1: 132
    default: nil
    }
  }
}
