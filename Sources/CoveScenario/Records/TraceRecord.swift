/// One thing that happened in a run, as a typed record (issue 7): what the timeline prints, what
/// `--trace` writes as one JSON line, what `--pcap` takes its DOE objects from and what the HTML
/// report draws. Records are deterministic for a given image and seed: `time` is virtual.
public struct TraceRecord: Hashable, Sendable {
  /// Who did it.
  public enum Component: String, Hashable, Sendable, CaseIterable {
    case runner, guest, tsm, dsm, tdi, iommu, vmm, device
  }

  /// What kind of record it is.
  public enum Kind: String, Hashable, Sendable, CaseIterable {
    /// A step of the image began (summary: the step) or ended (after: "ok" or the failure).
    case step
    /// An expectation was checked (before: expected, after: actual).
    case expectation
    /// One DOE data object on the mailbox, header included (bytes), request or response.
    case doe
    /// An SPDM, TDISP or IDE_KM message in the clear (bytes), as the TSM sent or received it.
    case spdm, tdisp, idekm
    /// A device request through the IOMMU and its verdict (before: the TLP, after: the verdict).
    case tlp
    /// A blocked access, a vIOMMU fault, a DMA-API debug report.
    case fault
    /// A TDI's state changed (before/after: the states).
    case state
    /// A guest DMA API call (map, unmap, sync, alloc) with its outcome.
    case dmaAPI = "dma-api"
    /// A driver bound, unbound, or a probe failed.
    case driver
    /// A device's trust changed in the guest (before/after).
    case trust
    case interrupt
    /// Page conversions and leaks.
    case memory
    /// Anything else the platform or the kernel reported.
    case event
  }

  /// Lanes of the report's sequence diagram.
  public enum Lane: Hashable, Sendable, CustomStringConvertible {
    case tsm, dsm, guest, iommu, host
    case tdi(String)

    public var description: String {
      switch self {
      case .tsm: "TSM"
      case .dsm: "DSM"
      case .guest: "guest"
      case .iommu: "IOMMU"
      case .host: "host"
      case .tdi(let function): "TDI \(function)"
      }
    }
  }

  /// Position in the run, from 0.
  public var sequence: Int
  /// Virtual nanoseconds since the run began (deterministic; not wall-clock time).
  public var time: UInt64
  public var component: Component
  public var kind: Kind
  /// The function concerned, as "bb:dd.f", if any.
  public var device: String?
  /// One line for people.
  public var summary: String
  public var before: String?
  public var after: String?
  /// The message or payload bytes, when the record carries some.
  public var bytes: [UInt8]?
  /// The image step this happened in (0-based), if any.
  public var step: Int?
  /// For messages: who sent it and to whom (the sequence diagram's arrow).
  public var from: Lane?
  public var to: Lane?
  /// For DOE objects and messages: whether this is a request (false: a response).
  public var isRequest: Bool?

  public init(
    sequence: Int = 0, time: UInt64 = 0, component: Component, kind: Kind, device: String? = nil,
    summary: String,
    before: String? = nil, after: String? = nil, bytes: [UInt8]? = nil, step: Int? = nil, from: Lane? = nil,
    to: Lane? = nil, isRequest: Bool? = nil
  ) {
    self.sequence = sequence
    self.time = time
    self.component = component
    self.kind = kind
    self.device = device
    self.summary = summary
    self.before = before
    self.after = after
    self.bytes = bytes
    self.step = step
    self.from = from
    self.to = to
    self.isRequest = isRequest
  }
}
