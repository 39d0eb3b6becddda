public import CoveCrypto
import IDEKM
public import IOMMU
public import PCIe
public import SPDM
import TDISP

/// `cove-dma`: a TDISP-capable copy engine. A ``TDISPDevice`` (configuration spaces, the DSM with its
/// DOE mailbox on function 0, one TDI per function) with a ``CoveDMAEngine`` behind every function's
/// BAR0. The engines reach memory only through the platform's ``DMAPort``; a refused request while a
/// TDI is in RUN takes that TDI to ERROR (an Unsupported Request on a TDI request, PCIe 6.x §11.2).
public final class CoveDMADevice {
  public let tdisp: TDISPDevice
  public let rootPort: IDERootPort
  public let tsmConfiguration: TSMDeviceConfiguration
  public private(set) var engines: [RequesterID: CoveDMAEngine] = [:]
  /// Whether the functions implement ACS (isolated from each other) and PASID width; what the
  /// platform's IOMMU probes them with, so ACS absent puts every function in one group.
  public let acs: Bool

  /// A cove-dma device shaped by `template` (functions, VFs, stream, lock flags) with `identity` as
  /// its DSM's certificate chain, key and firmware measurements.
  public init(
    template: TEEIODeviceTemplate = TEEIODeviceTemplate(), identity: SPDMResponderConfiguration,
    entropy: any EntropySource, acs: Bool = true
  ) throws {
    self.acs = acs
    var template = template
    template.acs = acs
    let built = try template.build(identity: identity, entropy: entropy)
    tdisp = built.device
    rootPort = built.rootPort
    tsmConfiguration = built.tsm
    for function in tdisp.functionIDs {
      let engine = CoveDMAEngine(function: function)
      let device = tdisp
      engine.tdiState = { device.tdi(function)?.state ?? .configUnlocked }
      engine.requestRefused = {
        device.dsm.enterError(UInt32(function.rawValue), because: .unsupportedRequestOrAbortOrTimeout)
      }
      engines[function] = engine
    }
  }

  /// How the platform's IOMMU sees `function`: below the root port (with ACS), one function of a
  /// multi-function device with or without ACS, 20-bit PASIDs.
  public func description(of function: RequesterID) -> DeviceDescription {
    DeviceDescription(
      function.bdf(), upstream: [BridgeInfo(rootPort.requesterID.bdf(), hasACS: true)],
      functionIsolation: acs ? .multiFunctionWithACS : .multiFunctionWithoutACS, maxPASID: 1 << 20)
  }

  /// Connects every engine to the platform's DMA path.
  public func attach(to port: any DMAPort) {
    for engine in engines.values { engine.port = port }
  }

  /// Whether `function`'s default stream is SECURE at the device end.
  public func streamSecure() -> Bool {
    tdisp.dsm.ideKM.ports[0].endpoint.state(of: tsmConfiguration.streamID).isSecure
      && rootPort.state(of: tsmConfiguration.streamID).isSecure
  }

  /// The BAR0 a function decodes, if memory decoding is on.
  public func bar0(of function: RequesterID) -> Range<UInt64>? {
    guard let space = tdisp.configSpaces[function], space.command.contains(.memorySpace),
      let base = space.barAddress(0), let size = space.layout.bars[0]?.size
    else { return nil }
    // A BAR being sized (all ones written) or placed at the very top decodes nothing usable.
    let (end, overflow) = base.addingReportingOverflow(size)
    guard !overflow else { return nil }
    return base..<end
  }

  /// A memory request to the function's BAR0 (a guest's MMIO, trapped and forwarded by the VMM, or
  /// the host's). The TDISP checks of ``TDISPDevice/receive(_:at:)`` run first: a T=0 access to TEE
  /// MMIO of a TDI in RUN is refused (and ERRORs the TDI). Reads of refused or undecoded addresses
  /// return all ones, as an unsupported request completes.
  public func mmio(_ tlp: TLP, at function: RequesterID, value: UInt32 = 0) -> UInt32 {
    guard let bar = bar0(of: function), bar.contains(tlp.address), let engine = engines[function] else {
      return 0xFFFF_FFFF
    }
    guard tdisp.receive(tlp, at: function) == .completed else { return 0xFFFF_FFFF }
    let offset = Int(tlp.address - bar.lowerBound)
    switch tlp.kind {
    case .memoryRead(let length): return engine.mmioRead(offset: offset, size: length)
    case .memoryWrite(let length):
      engine.mmioWrite(offset: offset, size: length, value: value)
      return 0
    case .translationRequest, .translationCompletion: return 0xFFFF_FFFF
    }
  }
}
