public import CoveCrypto
public import SPDM

/// The emulated device `make run` attests when no guest image is given: a cove-dma function whose
/// DSM has a P-384 identity (root CA → intermediate → device leaf) and five DMTF measurements.
///
/// The identity is derived from a fixed seed every time, so the built-in device is the same on every
/// machine without committing key material — its keys and, as certificates are signed with RFC 6979
/// ECDSA, its certificate chain byte for byte — and the TSM's trust anchor is that seed's root.
public struct BuiltInDevice: Sendable {
  /// "Cove" in ASCII: the seed of the built-in identity.
  public static let identitySeed: UInt64 = 0x436F_7665
  /// 2025-01-01T00:00:00Z: certificates are valid from here for a century.
  public static let notBefore: Int64 = 1_735_689_600
  /// PCI-SIG vendor ID of the emulated function, used for the diagnostic echo vendor protocol.
  public static let vendorID: UInt16 = 0x1B36

  public let pki: TestPKI
  public let measurements: [MeasurementBlock]

  public init(seed: UInt64 = BuiltInDevice.identitySeed) throws(CryptoError) {
    pki = try TestPKI.generate(
      entropy: SeededEntropy(seed: seed), commonNamePrefix: "Cove cove-dma", notBefore: Self.notBefore,
      validityDays: 36_525)
    measurements = Self.firmwareMeasurements()
  }

  /// The device's firmware measurements: digests (SHA-384) of its ROM, firmware and configuration,
  /// plus its firmware version as a raw bit stream (DSP0274 Table "DMTF measurement specification").
  public static func firmwareMeasurements() -> [MeasurementBlock] {
    func digest(_ text: String) -> [UInt8] { HashAlgorithm.sha384.hash(Array(text.utf8)) }
    let entries: [(DMTFMeasurementValueType, Bool, [UInt8])] = [
      (.immutableROM, false, digest("cove-dma boot ROM 1.0")),
      (.mutableFirmware, false, digest("cove-dma firmware 2.4.1")),
      (.hardwareConfiguration, false, digest("cove-dma hardware straps: 1 PF, 0 VFs, IDE 1 stream")),
      (.firmwareConfiguration, false, digest("cove-dma firmware config: TDISP on, DMA engine 4 queues")),
      (.mutableFirmwareVersion, true, Array("2.4.1".utf8)),
    ]
    return entries.enumerated().map { offset, entry in
      MeasurementBlock(
        index: UInt8(offset + 1),
        dmtf: DMTFMeasurement(valueType: entry.0, isRawBitStream: entry.1, value: entry.2))
    }
  }

  /// The responder configuration of the device's DSM.
  public var responderConfiguration: SPDMResponderConfiguration {
    SPDMResponderConfiguration(
      certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: measurements)
  }

  /// The TSM's policy for this device: trust its root, expect its measurements.
  public var requesterPolicy: SPDMRequesterPolicy {
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    for block in measurements {
      if let value = block.dmtf?.value { policy.referenceMeasurements[block.index] = value }
    }
    return policy
  }
}

/// A vendor-defined "echo" protocol (PCI-SIG standard ID, the device's vendor ID) that the
/// built-in device answers inside a session, so `cove attest` can show an application message
/// round trip before TDISP exists. The response payload is the request payload, byte-reversed, so
/// a test can tell an answer from a reflection.
public final class EchoVendorProtocol: SPDMVendorDefinedHandler {
  public static let standardID: UInt16 = 0x0003
  public static var vendorIDBytes: [UInt8] {
    [
      UInt8(truncatingIfNeeded: BuiltInDevice.vendorID),
      UInt8(truncatingIfNeeded: BuiltInDevice.vendorID >> 8),
    ]
  }
  public private(set) var requestsServed = 0

  public init() {}

  public func handle(_ request: VendorDefinedRequest, sessionID: UInt32?) -> SPDMVendorDefinedOutcome {
    guard sessionID != nil, request.standardID == Self.standardID, request.vendorID == Self.vendorIDBytes
    else {
      return .unsupported
    }
    requestsServed += 1
    return .response(
      VendorDefinedResponse(
        version: request.version, standardID: request.standardID, vendorID: request.vendorID,
        payload: request.payload.reversed()))
  }
}
