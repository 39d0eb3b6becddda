public import CoveCrypto
import CoveGuestDrivers
public import GuestABI
import GuestKernel
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
    do { pki = try GuestImage.Device.identity(seed: spec.identitySeed) } catch {
      throw RunError("device identity: \(error)")
    }
    measurements = spec.measurementBlocks
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

}

/// Why a scenario could not be set up or run (exit status 2 territory).
public struct RunError: Error, Hashable, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// The host half of a scenario: the platform a guest image describes, built — host memory, the
/// IOMMU, the VMM, devices with their TSMs, the guest (and its neighbour, if any) with its functions
/// assigned. What `cove run` builds in one process and `cove host` builds for each guest that connects
/// (CoveTransport). The guest half (its kernel, drivers, policy) is ``ScenarioGuest``; the two meet only
/// at the guest's ``GuestHostInterface`` and at ``ScenarioHostControl``.
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
  /// The guest's host interface (the VMM's port with the image's tampering switches).
  public var port: any GuestHostInterface { host }
  let host: ScenarioHost
  /// Where the host's records go as they happen (DOE objects, device TLPs): the runner's recorder in
  /// one process, the guest's connection across processes.
  public var onRecord: (TraceRecord) -> Void = { _ in }
  var platformEventsSeen = 0
  var tsmMessagesSeen: [Int] = []

  /// Builds the platform of `image`. `sharedMemory`: host memory in a memory file another process can
  /// map (``PlatformMemory/shared(base:pages:entropy:)``), as `cove host` needs.
  public init(image: GuestImage, seed: UInt64, sharedMemory: Bool = false) throws(RunError) {
    self.image = image
    self.seed = seed
    let pages = Int(image.guest.memory / 4096) + 4096
    if sharedMemory {
      do { memory = try PlatformMemory.shared(pages: pages, entropy: SeededEntropy(seed: seed &+ 1)) } catch {
        throw RunError("host memory: \(error)")
      }
    } else {
      memory = PlatformMemory(pages: pages, entropy: SeededEntropy(seed: seed &+ 1))
    }
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
      built.append(device)
    }
    devices = built
    tsmMessagesSeen = built.map { _ in 0 }
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
    host = ScenarioHost(port: VMMGuestPort(vmm: vmm, guest: guest.id))
    observe()
  }

  /// Records every DOE object the TSMs send or receive, decoded as a capture reader would see them
  /// (secured ones stay encrypted; their TDISP and IDE_KM contents come from the TSM's log), and every
  /// device request through the IOMMU with its verdict.
  private func observe() {
    var decoder = TraceDecoder()
    var objects = 0
    for device in devices {
      device.tsm.transport.inner.onObject = { [unowned self] bytes, isRequest in
        let message = decoder.decode(dataObject: bytes, isRequest: isRequest, index: objects, time: 0)
        objects += 1
        let plain = message.protocolKind == .spdm
        onRecord(
          TraceRecord(
            component: isRequest ? .tsm : .dsm, kind: .doe, summary: message.name, bytes: bytes,
            from: plain ? (isRequest ? .tsm : .dsm) : nil, to: plain ? (isRequest ? .dsm : .tsm) : nil,
            isRequest: isRequest))
      }
    }
    iommu.accessObserver = { [unowned self] tlp, verdict in
      onRecord(
        TraceRecord(
          component: .device, kind: .tlp, device: "\(tlp.requesterID)", summary: "\(tlp)",
          after: "\(verdict)",
          from: .tdi("\(tlp.requesterID)"), to: .iommu, isRequest: true))
    }
  }

  /// The first TSM connect, when the image asks for it at boot (its DOE objects are records).
  public func connectAtBoot() throws(RunError) {
    guard image.guest.connect else { return }
    for device in devices {
      do { _ = try device.tsm.connect() } catch {
        throw RunError("TSM connect to bus \(device.spec.bus): \(error)")
      }
    }
  }

  static func neighbourPattern(_ count: UInt64) -> [UInt8] {
    (0..<Int(count)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
  }

  /// The device a function belongs to.
  public func device(of function: RequesterID) -> ScenarioDevice? {
    devices.first { $0.device.tdisp.functionIDs.contains(function) }
  }
}

extension GuestImage.Device {
  /// The test PKI of a device with identity seed `seed` (root, intermediate, device certificate and
  /// key, P-384): what a scenario's device presents, `cove responder` serves, and a guest owner who
  /// names the device as a trust anchor derives the root from.
  public static func identity(seed: UInt64) throws(CryptoError) -> TestPKI {
    try TestPKI.generate(
      entropy: SeededEntropy(seed: seed), commonNamePrefix: "Cove cove-dma",
      notBefore: BuiltInDevice.notBefore,
      validityDays: 36_525)
  }

  /// The device's measurement blocks: the image's, or the built-in firmware's when it gives none.
  public var measurementBlocks: [MeasurementBlock] {
    guard let measurements else { return BuiltInDevice.firmwareMeasurements() }
    return measurements.map { m in
      MeasurementBlock(
        index: m.index,
        dmtf: DMTFMeasurement(
          valueType: DMTFMeasurementValueType(rawValue: GuestImage.measurementTypes[m.type] ?? 1),
          isRawBitStream: m.raw, value: m.value))
    }
  }
}
