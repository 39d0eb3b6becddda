import CoveCrypto
import CoveGuestDrivers
public import GuestABI
public import GuestKernel
import SPDM

/// The guest half of a scenario: the guest kernel booted on a host interface, the image's drivers and
/// the attestation policy its owner configured. It holds nothing of the host: in one process its host
/// interface is the VMM's port, across processes a connection to `cove host` (CoveTransport).
public final class ScenarioGuest {
  public let image: GuestImage
  public let seed: UInt64
  public let kernel: GuestKernel
  public let drivers: [String: any PCIDriver]
  public let policy: AttestationPolicy

  public init(image: GuestImage, seed: UInt64, host: any GuestHostInterface) throws(RunError) {
    self.image = image
    self.seed = seed
    do {
      kernel = try GuestKernel(
        host: host,
        options: KernelOptions(
          autoprobe: image.guest.autoprobe, swiotlbBytes: image.guest.swiotlb,
          iommuStrict: image.guest.viommu == .strict, dmaDebug: image.guest.dmaDebug),
        entropy: SeededEntropy(seed: seed &+ 300))
    } catch { throw RunError("guest kernel boot: \(error)") }
    var drivers: [String: any PCIDriver] = [:]
    for name in image.drivers {
      guard let driver = DriverRegistry.make(name) else {
        throw RunError("no driver registered as '\(name)'")
      }
      drivers[name] = driver
    }
    self.drivers = drivers
    policy = try Self.policy(image)
  }

  /// Registers the image's drivers (autoprobe binds them if the image says so).
  func registerDrivers() throws(KernelError) {
    for name in image.drivers { try kernel.register(drivers[name]!) }
  }

  /// The owner's policy from the image alone: a trust anchor named by a device's identity seed is that
  /// vendor's root, derived as the device derives its own (the owner knows its vendor's root; it
  /// never takes it from the host); reference measurements are the image's, or the firmware's.
  static func policy(_ image: GuestImage) throws(RunError) -> AttestationPolicy {
    let policy = image.policy
    var anchors: [[UInt8]] = []
    for anchor in policy.trustAnchors {
      do {
        switch anchor {
        case .device(let identity):
          guard image.devices.contains(where: { $0.identitySeed == identity }) else { continue }
          anchors.append(try GuestImage.Device.identity(seed: identity).root.der)
        case .other(let identity):
          let other = try TestPKI.generate(
            entropy: SeededEntropy(seed: identity), commonNamePrefix: "Other",
            notBefore: BuiltInDevice.notBefore,
            validityDays: 36_525)
          anchors.append(other.root.der)
        }
      } catch { throw RunError("policy: \(error)") }
    }
    var measurements: [UInt8: Set<[UInt8]>] = [:]
    if let explicit = policy.measurements {
      for (index, values) in explicit { measurements[index] = Set(values) }
    } else if let device = image.devices.first(where: { !$0.assign.isEmpty }) {
      for block in device.measurementBlocks {
        if let value = block.dmtf?.value { measurements[block.index] = [value] }
      }
    }
    return AttestationPolicy(
      trustAnchors: anchors, measurements: measurements, validationTime: BuiltInDevice.notBefore + 86_400)
  }
}
