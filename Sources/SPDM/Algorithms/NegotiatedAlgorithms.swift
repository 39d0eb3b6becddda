public import CoveCrypto

/// What VCA settled on (DSP0274 §10.4 ALGORITHMS), mapped onto Cove's cryptography. Cove implements
/// SHA-256/384, ECDSA P-256/P-384, DHE secp256r1/secp384r1 and AES-256-GCM; anything else is
/// refused at negotiation rather than failing later.
public struct SPDMNegotiatedAlgorithms: Sendable, Hashable {
  public var version: SPDMVersion
  public var baseHash: BaseHashAlgorithms
  public var baseAsym: BaseAsymAlgorithms
  public var dheGroup: DHEGroups
  public var aead: AEADCipherSuites
  public var measurementHash: MeasurementHashAlgorithms
  public var measurementSpecification: MeasurementSpecification

  public let hash: HashAlgorithm
  public let signatureCurve: EllipticCurve
  public let dheCurve: EllipticCurve?

  /// Fails with the field name when a selection is not a single algorithm Cove implements.
  public init(
    version: SPDMVersion, baseHash: BaseHashAlgorithms, baseAsym: BaseAsymAlgorithms,
    dheGroup: DHEGroups, aead: AEADCipherSuites, measurementHash: MeasurementHashAlgorithms,
    measurementSpecification: MeasurementSpecification
  ) throws(SPDMAlgorithmError) {
    self.version = version
    self.baseHash = baseHash
    self.baseAsym = baseAsym
    self.dheGroup = dheGroup
    self.aead = aead
    self.measurementHash = measurementHash
    self.measurementSpecification = measurementSpecification
    guard let hash = baseHash.coveHash else {
      throw SPDMAlgorithmError(field: "BaseHashSel", value: baseHash.rawValue)
    }
    guard let curve = baseAsym.coveCurve else {
      throw SPDMAlgorithmError(field: "BaseAsymSel", value: baseAsym.rawValue)
    }
    self.hash = hash
    self.signatureCurve = curve
    if dheGroup.isEmpty {
      dheCurve = nil
    } else {
      guard let dhe = dheGroup.coveCurve else {
        throw SPDMAlgorithmError(field: "DHE", value: UInt32(dheGroup.rawValue))
      }
      dheCurve = dhe
    }
    if !aead.isEmpty, aead != .aes256GCM {
      throw SPDMAlgorithmError(field: "AEAD", value: UInt32(aead.rawValue))
    }
  }

  public var hashSize: Int { hash.digestSize }
  public var signatureSize: Int { signatureCurve.coordinateSize * 2 }
  /// DHE exchange data: X ‖ Y of the ephemeral public key (DSP0274 Table "DHE structure").
  public var exchangeDataSize: Int { (dheCurve?.coordinateSize ?? 0) * 2 }
  public var keySchedule: SPDMKeySchedule { SPDMKeySchedule(hash: hash, version: version) }
}

/// A selection Cove cannot use.
public struct SPDMAlgorithmError: Error, Hashable, Sendable, CustomStringConvertible {
  public var field: String
  public var value: UInt32
  public var description: String {
    "\(field) 0x\(String(value, radix: 16)) is not an algorithm Cove supports"
  }
}

extension BaseHashAlgorithms {
  /// The single Cove hash this selection names, if it names exactly one Cove supports.
  public var coveHash: HashAlgorithm? {
    switch self {
    case .sha256: .sha256
    case .sha384: .sha384
    default: nil
    }
  }
  /// Strongest first: the order a responder prefers when several are common.
  public static let preferenceOrder: [BaseHashAlgorithms] = [.sha384, .sha256]
}

extension BaseAsymAlgorithms {
  public var coveCurve: EllipticCurve? {
    switch self {
    case .ecdsaP256: .p256
    case .ecdsaP384: .p384
    default: nil
    }
  }
  public static let preferenceOrder: [BaseAsymAlgorithms] = [.ecdsaP384, .ecdsaP256]
  public init(curve: EllipticCurve) {
    self = curve == .p384 ? .ecdsaP384 : .ecdsaP256
  }
}

extension DHEGroups {
  public var coveCurve: EllipticCurve? {
    switch self {
    case .secp256r1: .p256
    case .secp384r1: .p384
    default: nil
    }
  }
  public static let preferenceOrder: [DHEGroups] = [.secp384r1, .secp256r1]
}

extension AEADCipherSuites {
  public static let preferenceOrder: [AEADCipherSuites] = [.aes256GCM]
}

extension MeasurementHashAlgorithms {
  public static let preferenceOrder: [MeasurementHashAlgorithms] = [.sha384, .sha256]
}

/// The first entry of `preference` that both sides offer, or an empty set (DSP0274 §10.4: the
/// responder selects one of the requester's algorithms it also supports; none in common → 0).
func selectPreferred<Option: OptionSet>(_ preference: [Option], offered: Option, supported: Option) -> Option
where Option.Element == Option {
  for candidate in preference where offered.contains(candidate) && supported.contains(candidate) {
    return candidate
  }
  return Option()
}
