public import CoveCrypto
import CoveGuestDrivers
import GuestABI
public import GuestKernel
public import HostPlatform
import IOMMU
public import PCIe
public import SPDM
import TDISP

/// The TSM transport a scenario uses: the device's DOE mailbox behind a fault injector, so an
/// image's `inject` steps can drop, corrupt or replay objects.
public typealias ScenarioTransport = FaultInjectingDOETransport<DOEMailboxTransport<ConfigSpaceDOEPort>>

/// One emulated device of a scenario with its TSM.
public final class ScenarioDevice {
  public let spec: GuestImage.Device
  public let device: CoveDMADevice
  public let tsm: HostTSM<ScenarioTransport>
  public let injector: DOEFaultInjector
  public let pki: TestPKI
  public let measurements: [MeasurementBlock]

  init(spec: GuestImage.Device, seed: UInt64, index: Int) throws(RunError) {
    self.spec = spec
    do {
      pki = try TestPKI.generate(
        entropy: SeededEntropy(seed: spec.identitySeed), commonNamePrefix: "Cove cove-dma",
        notBefore: BuiltInDevice.notBefore, validityDays: 36_525)
    } catch { throw RunError("device identity: \(error)") }
    measurements = spec.measurements.map(Self.blocks) ?? BuiltInDevice.firmwareMeasurements()
    var template = TEEIODeviceTemplate(
      bus: spec.bus, physicalFunctions: spec.functions, virtualFunctions: spec.virtualFunctions,
      reportTweaks: InterfaceReportTweaks(
        nonTEERangeIDs: Set(spec.report.nonTEERanges), deviceSpecificInfo: spec.report.deviceInfo),
      compatibility: spec.referenceCompat ? .referenceEmulators : .specification, pasidWidth: spec.pasidBits)
    template.acs = spec.acs
    do {
      device = try CoveDMADevice(
        template: template,
        identity: SPDMResponderConfiguration(
          certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: measurements),
        entropy: SeededEntropy(seed: seed &+ 100 &+ UInt64(index)), acs: spec.acs)
    } catch { throw RunError("device \(spec.bus): \(error)") }
    injector = DOEFaultInjector()
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = BuiltInDevice.notBefore + 86_400
    for block in measurements {
      if let value = block.dmtf?.value { policy.referenceMeasurements[block.index] = value }
    }
    tsm = HostTSM(
      configuration: device.tsmConfiguration,
      transport: FaultInjectingDOETransport(
        inner: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device.tdisp)), injector: injector),
      rootPort: device.rootPort, policy: policy, entropy: SeededEntropy(seed: seed &+ 200 &+ UInt64(index)))
  }

  static func blocks(_ measurements: [GuestImage.Measurement]) -> [MeasurementBlock] {
    measurements.map { m in
      MeasurementBlock(
        index: m.index,
        dmtf: DMTFMeasurement(
          valueType: DMTFMeasurementValueType(rawValue: GuestImage.measurementTypes[m.type] ?? 1),
          isRawBitStream: m.raw, value: m.value))
    }
  }
}

/// Why a scenario could not be set up or run (exit status 2 territory).
public struct RunError: Error, Hashable, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// The platform a guest image describes, built: host memory, the IOMMU, the VMM, devices with their
/// TSMs, the guest and its kernel with the image's drivers registered.
public final class ScenarioPlatform {
  public let image: GuestImage
  public let seed: UInt64
  public let memory: PlatformMemory
  public let iommu: PlatformIOMMU
  public let vmm: VMM
  public let devices: [ScenarioDevice]
  public let guest: VMMGuest
  /// The second guest, when the image has one.
  public let neighbour: VMMGuest?
  public let kernel: GuestKernel
  public let drivers: [String: any PCIDriver]
  public let policy: AttestationPolicy
  /// The guest's host interface (the VMM's port with the image's tampering switches).
  let host: ScenarioHost

  /// `onDOEObject` is told every DOE data object each TSM sends (true) or receives (false), from the
  /// first connect on: what `--pcap` is made of.
  public init(
    image: GuestImage, seed: UInt64, onDOEObject: ((_ bytes: [UInt8], _ isRequest: Bool) -> Void)? = nil
  )
    throws(RunError)
  {
    self.image = image
    self.seed = seed
    let pages = Int(image.guest.memory / 4096) + 4096
    memory = PlatformMemory(pages: pages, entropy: SeededEntropy(seed: seed &+ 1))
    do {
      let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 4096))
      iommu = PlatformIOMMU(core: core, memory: memory)
    } catch { throw RunError("IOMMU: \(error)") }
    vmm = VMM(memory: memory, iommu: iommu)
    var built: [ScenarioDevice] = []
    for (index, spec) in image.devices.enumerated() {
      let device = try ScenarioDevice(spec: spec, seed: seed, index: index)
      do { try vmm.plug(device.device, tsm: device.tsm) } catch { throw RunError("plug: \(error)") }
      device.tsm.recordsSessionSecrets = true
      device.tsm.transport.inner.onObject = onDOEObject
      built.append(device)
    }
    devices = built
    do {
      guest = try vmm.createGuest(
        GuestConfiguration(
          memoryBytes: image.guest.memory, boundary: image.guest.boundary, viommu: image.guest.viommu != .off)
      )
      for device in built {
        for function in device.spec.assign { try vmm.assign(function, to: guest.id) }
      }
      if let spec = image.neighbour {
        let other = try vmm.createGuest(GuestConfiguration(memoryBytes: spec.memory, boundary: spec.boundary))
        // Its memory holds a known pattern, so any write that reached it would show.
        try vmm.guestWrite(other.id, gpa: 0, bytes: Self.neighbourPattern(other.memoryBytes))
        neighbour = other
      } else {
        neighbour = nil
      }
    } catch { throw RunError("guest: \(error)") }
    if image.guest.connect {
      for device in built {
        do { _ = try device.tsm.connect() } catch {
          throw RunError("TSM connect to bus \(device.spec.bus): \(error)")
        }
      }
    }
    host = ScenarioHost(port: VMMGuestPort(vmm: vmm, guest: guest.id))
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
    policy = try Self.policy(image.policy, devices: built)
  }

  /// Registers the image's drivers (autoprobe binds them if the image says so).
  func registerDrivers() throws(KernelError) {
    for name in image.drivers { try kernel.register(drivers[name]!) }
  }

  static func policy(_ policy: GuestImage.Policy, devices: [ScenarioDevice]) throws(RunError)
    -> AttestationPolicy
  {
    var anchors: [[UInt8]] = []
    for anchor in policy.trustAnchors {
      switch anchor {
      case .device(let seed):
        if let device = devices.first(where: { $0.spec.identitySeed == seed }) {
          anchors.append(device.pki.root.der)
        }
      case .other(let seed):
        do {
          let other = try TestPKI.generate(
            entropy: SeededEntropy(seed: seed), commonNamePrefix: "Other", notBefore: BuiltInDevice.notBefore,
            validityDays: 36_525)
          anchors.append(other.root.der)
        } catch { throw RunError("policy: \(error)") }
      }
    }
    var measurements: [UInt8: Set<[UInt8]>] = [:]
    if let explicit = policy.measurements {
      for (index, values) in explicit { measurements[index] = Set(values) }
    } else if let device = devices.first(where: { !$0.spec.assign.isEmpty }) {
      for block in device.measurements {
        if let value = block.dmtf?.value { measurements[block.index] = [value] }
      }
    }
    return AttestationPolicy(
      trustAnchors: anchors, measurements: measurements, validationTime: BuiltInDevice.notBefore + 86_400)
  }

  static func neighbourPattern(_ count: UInt64) -> [UInt8] {
    (0..<Int(count)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
  }

  /// The device a function belongs to.
  public func device(of function: RequesterID) -> ScenarioDevice? {
    devices.first { $0.device.tdisp.functionIDs.contains(function) }
  }
}
