public import CoveCrypto
public import CoveScenario
public import HostPlatform
import IDEKM
import PCIe
public import SPDM
import TDISP

/// The Cove device a `cove responder` serves: a `cove-dma` device (``CoveDMADevice``: functions, the
/// DSM with its SPDM responder, TDISP and IDE_KM) built from a guest image's device the way a
/// scenario builds it (same identity seed → same PKI and measurements), optionally with another
/// certificate chain and key so a peer's own trust anchor can be used.
public struct SPDMSocketDeviceIdentity: Sendable {
  /// Root first, as SPDM sends it.
  public var certificateChain: [X509Certificate]
  public var signingKey: ECPrivateKey
  public var measurements: [MeasurementBlock]

  public init(certificateChain: [X509Certificate], signingKey: ECPrivateKey, measurements: [MeasurementBlock])
  {
    self.certificateChain = certificateChain
    self.signingKey = signingKey
    self.measurements = measurements
  }

  /// The identity a scenario gives `spec` (``ScenarioDevice``): its seeded test PKI and measurements.
  public init(spec: GuestImage.Device) throws(CryptoError) {
    let pki = try GuestImage.Device.identity(seed: spec.identitySeed)
    self.init(
      certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: spec.measurementBlocks)
  }

}

extension CoveDMADevice {
  /// A `cove-dma` device shaped by a guest image's device description, with `identity` as its DSM's.
  public convenience init(
    spec: GuestImage.Device, identity: SPDMSocketDeviceIdentity, entropy: any EntropySource
  ) throws {
    var template = TEEIODeviceTemplate(
      bus: spec.bus, physicalFunctions: spec.functions, virtualFunctions: spec.virtualFunctions,
      reportTweaks: InterfaceReportTweaks(
        nonTEERangeIDs: Set(spec.report.nonTEERanges), deviceSpecificInfo: spec.report.deviceInfo),
      compatibility: spec.referenceCompat ? .referenceEmulators : .specification, pasidWidth: spec.pasidBits)
    template.acs = spec.acs
    try self.init(
      template: template,
      identity: SPDMResponderConfiguration(
        certificateChain: identity.certificateChain, signingKey: identity.signingKey,
        measurements: identity.measurements),
      entropy: entropy, acs: spec.acs)
  }
}

/// Where `--device` points: `IMAGE` (a built-in image's name or a YAML file) and optionally `#N`, the
/// device's 0-based index in the image, `#bus=BB` (hex), its bus, or `#NAME`, the first device whose
/// model is NAME (image devices have no other name). No `--device`: the built-in default image's
/// first device.
public struct SPDMSocketDeviceSelector: Hashable, Sendable, CustomStringConvertible {
  public var image: String?
  public enum Which: Hashable, Sendable {
    case index(Int)
    case bus(UInt8)
    case model(String)
  }
  public var which: Which

  public init(image: String? = nil, which: Which = .index(0)) {
    self.image = image
    self.which = which
  }

  /// Parses `IMAGE[#N | #bus=BB | #NAME]`; nil for an empty or malformed part after `#`.
  public init?(parsing text: String) {
    guard let hash = text.lastIndex(of: "#") else {
      self.init(image: text.isEmpty ? nil : text)
      return
    }
    let image = String(text[..<hash])
    let tail = text[text.index(after: hash)...]
    if tail.hasPrefix("bus=") {
      guard let bus = UInt8(tail.dropFirst(4), radix: 16) else { return nil }
      self.init(image: image.isEmpty ? nil : image, which: .bus(bus))
    } else if let index = Int(tail) {
      guard index >= 0 else { return nil }
      self.init(image: image.isEmpty ? nil : image, which: .index(index))
    } else {
      guard !tail.isEmpty else { return nil }
      self.init(image: image.isEmpty ? nil : image, which: .model(String(tail)))
    }
  }

  /// The device description it selects in `image`.
  public func select(in image: GuestImage) -> GuestImage.Device? {
    switch which {
    case .index(let index): image.devices.indices.contains(index) ? image.devices[index] : nil
    case .bus(let bus): image.devices.first { $0.bus == bus }
    case .model(let model): image.devices.first { $0.model == model }
    }
  }

  public var description: String {
    let name = image ?? "(built-in default)"
    switch which {
    case .index(let index): return "\(name)#\(index)"
    case .bus(let bus): return "\(name)#bus=\(String(bus, radix: 16))"
    case .model(let model): return "\(name)#\(model)"
    }
  }
}
