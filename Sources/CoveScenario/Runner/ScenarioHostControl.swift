public import GuestABI
import HostPlatform
import IOMMU
public import PCIe
public import SPDM
public import TDISP

/// A step of an image that the host takes, not the guest: the host's own configuration writes, its
/// TSM's connect, disconnect and STOP, DOE fault injection, tampering with the evidence it relays, and
/// a hostile device writing where it should not. None of these is a guest hypercall, so they travel
/// beside the guest's interface (``ScenarioHostControl``), never through it.
public enum HostStep: Hashable, Sendable {
  /// A configuration write by the host (not trapped from the guest): FLR, Bus Master Enable off.
  case configWrite(RequesterID, offset: Int, size: Int, value: UInt32)
  /// The TSMs connect to (or disconnect from) every device that is not (or is) connected.
  case connect
  case disconnect
  /// The host's TSM stops the function's TDI (STOP_INTERFACE) without the guest asking.
  case stop(RequesterID)
  /// A DOE fault rule for every device's mailbox.
  case inject(GuestImage.InjectionRule)
  /// The next evidence relayed for the guest is tampered with (`ScenarioHost.Tamper`'s raw value).
  case tamper(String)
  /// The function writes one page into the neighbour guest's memory on its own.
  case escape(RequesterID, target: GuestImage.EscapeTarget, address: UInt64)
}

/// What a scenario's runner needs of the host besides the guest's ``GuestHostInterface``: the image's
/// host steps, and what it observes to check expectations and to record the run (TDI states as the
/// device holds them, platform faults, the platform's and TSMs' logs, the SPDM sessions' secrets).
/// In one process the ``ScenarioPlatform`` itself; across processes the guest's connection to
/// `cove host`.
public protocol ScenarioHostControl: AnyObject {
  /// Takes a host step. The error carries the errno the step's expectation compares.
  func perform(_ step: HostStep) throws(HypercallError)
  /// Each function of each device, in device then function order, with its TDI's state.
  func tdiStates() throws(HypercallError) -> [TDIStateEntry]
  /// Platform DMA faults so far, logged or not.
  func faultCount() throws(HypercallError) -> Int
  /// Records of what the VMM and the TSMs logged since the last call, in order.
  func collect() throws(HypercallError) -> [TraceRecord]
  /// Every SPDM session the TSMs established, with what decrypts a capture of it.
  func sessions() throws(HypercallError) -> [SPDMSessionSecrets]
  /// Why the host can no longer be reached (it went away), or nil: the runner takes no further step.
  var unreachable: String? { get }
}

extension ScenarioHostControl {
  public var unreachable: String? { nil }
}

public struct TDIStateEntry: Hashable, Sendable {
  public var function: RequesterID
  public var state: TDIState?
  public init(function: RequesterID, state: TDIState?) {
    self.function = function
    self.state = state
  }
}

extension ScenarioPlatform: ScenarioHostControl {
  public func perform(_ step: HostStep) throws(HypercallError) {
    switch step {
    case .configWrite(let function, let offset, let size, let value):
      do throws(VMMError) {
        _ = try vmm.hostConfigWrite(function, offset: offset, size: size, value: value)
      } catch {
        throw HypercallError(error.errno, error.message)
      }
    case .connect:
      for device in devices where !device.tsm.isConnected {
        do throws(TSMError) { _ = try device.tsm.connect() } catch {
          throw HypercallError(error.errno, "\(error)")
        }
      }
    case .disconnect:
      for device in devices where device.tsm.isConnected {
        do throws(TSMError) { try device.tsm.disconnect() } catch {
          throw HypercallError(error.errno, "\(error)")
        }
      }
    case .stop(let function):
      guard let device = device(of: function), let owner = device.tsm.owner(of: function) else {
        throw HypercallError(.EINVAL, "\(function) is not bound to a guest")
      }
      do throws(TSMError) { try device.tsm.stop(function, for: owner) } catch {
        throw HypercallError(error.errno, "\(error)")
      }
    case .inject(let rule):
      for device in devices { device.injector.add(ScenarioRunner.faultRule(rule)) }
    case .tamper(let mode):
      host.tamper = ScenarioHost.Tamper(rawValue: mode)
    case .escape(let function, let target, let address):
      try escape(function, target: target, address: address)
    }
  }

  /// A device of the guest writes into the neighbour's memory on its own (no driver asked): what a
  /// hostile device would try. The platform must refuse the TLP (EFAULT when it does not), and the
  /// neighbour's memory must be exactly as before (EIO when it is not).
  private func escape(_ function: RequesterID, target: GuestImage.EscapeTarget, address: UInt64)
    throws(HypercallError)
  {
    guard let neighbour, let owner = device(of: function) else {
      throw HypercallError(.ENODEV, "no neighbour guest or no such device")
    }
    let gpa = address % neighbour.memoryBytes & ~0xFFF
    let deviceAddress: UInt64 =
      switch target {
      case .neighbourGPA: gpa
      case .neighbourHPA: neighbour.hostAddress(of: gpa)?.rawValue ?? 0
      }
    let running = owner.device.tdisp.tdi(function)?.state == .run
    let payload = [UInt8](repeating: 0xEE, count: 4096)
    let verdict = payload.withUnsafeBytes { bytes in
      iommu.dmaWrite(
        TLP(requesterID: function, address: deviceAddress, tBit: running, kind: .memoryWrite(length: 4096)),
        from: bytes)
    }
    // The device gets an Unsupported Request back; on a TDI's request that takes the TDI to ERROR
    // (PCIe 6.x §11.2), as for any refused request of its engine.
    if !verdict.isCompleted, running { owner.device.engines[function]?.requestRefused() }
    let expected = Array(Self.neighbourPattern(neighbour.memoryBytes)[Int(gpa)..<Int(gpa) + 4096])
    let now = (try? vmm.guestRead(neighbour.id, gpa: gpa, count: 4096)) ?? []
    onRecord(
      TraceRecord(
        component: .device, kind: .tlp, device: "\(function)",
        summary:
          "hostile write to the neighbour's \(target == .neighbourGPA ? "GPA" : "host page") 0x\(String(deviceAddress, radix: 16)) (T=\(running ? 1 : 0))",
        before: "4096 bytes", after: "\(verdict)", from: .tdi("\(function)"), to: .iommu))
    if verdict.isCompleted {
      throw HypercallError(.EFAULT, "the platform let the write through")
    } else if now != expected {
      throw HypercallError(.EIO, "the neighbour's memory changed")
    }
  }

  public func tdiStates() -> [TDIStateEntry] {
    devices.flatMap { device in
      device.device.tdisp.functionIDs.map {
        TDIStateEntry(function: $0, state: device.device.tdisp.tdi($0)?.state)
      }
    }
  }

  public func faultCount() -> Int { iommu.faults.count + iommu.faultsNotLogged }

  public func collect() -> [TraceRecord] {
    var records: [TraceRecord] = []
    let events = vmm.events
    for event in events.dropFirst(platformEventsSeen) { records.append(ScenarioRunner.record(event)) }
    platformEventsSeen = events.count
    for (index, device) in devices.enumerated() {
      let messages = device.tsm.messages
      for message in messages.dropFirst(tsmMessagesSeen[index]) {
        records += ScenarioRunner.records(message, dsm: device.device.tdisp.dsmFunction)
      }
      tsmMessagesSeen[index] = messages.count
    }
    return records
  }

  public func sessions() -> [SPDMSessionSecrets] { devices.flatMap(\.tsm.sessionSecrets) }
}
