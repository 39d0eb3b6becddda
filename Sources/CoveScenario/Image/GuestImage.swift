public import IOMMU
public import PCIe
public import TDISP

/// A guest image: a confidential VM and what happens in it (issue 7; the format is documented key by
/// key in guest-images/README.md). Decoded and validated by ``GuestImage/init(yaml:file:)``.
public struct GuestImage: Hashable, Sendable {
  public var name: String
  public var description: String
  /// The default seed for every random choice; `cove run --seed` overrides it.
  public var seed: UInt64
  public var guest: Guest
  /// A second confidential guest beside the first, whose memory a device of the first tries to reach
  /// (`escape` steps); it runs no kernel of its own.
  public var neighbour: Guest?
  public var devices: [Device]
  public var policy: Policy
  /// Drivers registered at boot, by name.
  public var drivers: [String]
  public var steps: [Step]

  /// The confidential VM.
  public struct Guest: Hashable, Sendable {
    public var memory: UInt64 = 16 << 20
    /// The boundary X: below it device addresses are private, at and above it shared. `.max`: all private.
    public var boundary: UInt64 = 1 << 47
    public var viommu: VIOMMUMode = .off
    public var swiotlb: Int = 1 << 20
    public var autoprobe = true
    public var dmaDebug = true
    /// Whether the host TSM connects to the devices at boot (off: a `connect` step does it).
    public var connect = true
    public init() {}
  }

  public enum VIOMMUMode: String, Hashable, Sendable, CaseIterable {
    case off, strict, lazy
  }

  /// An emulated device on its own bus below a root port.
  public struct Device: Hashable, Sendable {
    public var model = "cove-dma"
    public var bus: UInt8 = 3
    public var functions = 2
    public var virtualFunctions = 0
    public var acs = true
    public var pasidBits: UInt8 = 20
    /// Seed of the device's identity (its PKI); devices with the same seed have the same identity.
    public var identitySeed: UInt64 = 0x436F_7665
    /// Firmware measurements (index → DMTF type and value); nil: the built-in five.
    public var measurements: [Measurement]?
    public var report = ReportTweaks()
    /// The reference emulators' behaviour for STOP in CONFIG_UNLOCKED instead of the spec's.
    public var referenceCompat = false
    /// The functions assigned to the guest.
    public var assign: [RequesterID] = []
    public init() {}

    /// The requester ID of function `f` on this device.
    public func function(_ f: Int) -> RequesterID { BDF(bus: bus, device: 0, function: UInt8(f)).requesterID }
    /// Every function, PFs then VFs.
    public var functionIDs: [RequesterID] { (0..<(functions + virtualFunctions)).map(function) }
  }

  public struct Measurement: Hashable, Sendable {
    public var index: UInt8
    public var type: String
    /// The measurement value (a digest, or raw bytes for version strings).
    public var value: [UInt8]
    public var raw: Bool
  }

  public struct ReportTweaks: Hashable, Sendable {
    public var nonTEERanges: [UInt16] = []
    public var deviceInfo: [UInt8] = []
    public init() {}
  }

  /// What the guest checks before it accepts a device.
  public struct Policy: Hashable, Sendable {
    public enum Anchor: Hashable, Sendable {
      /// The root of the device's own identity (by identity seed).
      case device(UInt64)
      /// The root of another PKI (for failure scenarios).
      case other(UInt64)
    }
    public var trustAnchors: [Anchor] = []
    /// nil: the values the device's own measurements have (the reference values).
    public var measurements: [UInt8: [[UInt8]]]?
    public init() {}
  }

  /// One step: an action, where it is written, and what it must produce.
  public struct Step: Hashable, Sendable {
    public var action: Action
    public var expect: Expectation
    /// The line in the image where the step starts.
    public var line: Int
  }

  public enum Action: Hashable, Sendable {
    case bind(RequesterID, driver: String)
    case unbind(RequesterID)
    case lock(RequesterID)
    case verify(RequesterID)
    case accept(RequesterID)
    case unlock(RequesterID)
    case dma(DMAStep)
    case configWrite(RequesterID, offset: Int, size: Int, value: UInt32, byHost: Bool)
    case flr(RequesterID)
    case convert(gpa: UInt64, pages: Int, toShared: Bool)
    case connect
    case disconnect
    case hostStop(RequesterID)
    case inject(InjectionRule)
    case wait
    case claim(RequesterID, cookie: UInt64)
    case release(RequesterID)
    /// The device, acting on its own as a hostile device would, writes to the neighbour guest's memory
    /// (at a guest-physical address used as a device address, or at the host-physical address behind
    /// it); the platform must refuse and the neighbour's page must not change.
    case escape(RequesterID, target: EscapeTarget, address: UInt64)
    /// The host rewrites (or replays) the next evidence it relays for the device.
    case tamperEvidence(RequesterID, mode: String)
    /// A guest process shares its address space with the device (SVA) and has it copy between two
    /// of its buffers by virtual address; `lazy` buffers are populated by IO page faults.
    case sva(RequesterID, size: Int, lazy: Bool)
  }

  public enum EscapeTarget: String, Hashable, Sendable {
    case neighbourGPA = "neighbour-gpa"
    case neighbourHPA = "neighbour-hpa"
  }

  public struct DMAStep: Hashable, Sendable {
    public var device: RequesterID
    public var size: Int
    /// Buffers in shared memory, mapped with DMA_ATTR_CC_SHARED.
    public var shared = false
    /// Through the PASID driver's PASID-tagged queue.
    public var pasid = false
  }

  /// A fault-injection rule on the TSM's DOE mailbox (HostPlatform's DOEFaultInjector).
  public struct InjectionRule: Hashable, Sendable {
    public var action: String
    public var direction: String
    public var occurrence: Int
    public var match: String?

    public init(action: String, direction: String, occurrence: Int, match: String?) {
      self.action = action
      self.direction = direction
      self.occurrence = occurrence
      self.match = match
    }
  }

  /// What a step must produce; every field is optional.
  public struct Expectation: Hashable, Sendable {
    /// The errno the step must fail with; nil: it must succeed.
    public var error: Errno?
    public var check: String?
    public var tdi: TDIState?
    public var trust: String?
    /// The driver bound afterwards ("none": no driver).
    public var driver: String?
    public var bytes: Int?
    public var bounced: Bool?
    public var fault: Bool?
    public init() {}
  }
}
