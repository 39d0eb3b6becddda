/// Collects a run's records in order and stamps each with its sequence number and virtual time. The
/// clock advances by a fixed cost per record kind, plus the bytes a record carries at PCIe Gen5 x16
/// speed, so times are plausible and identical across runs with the same seed.
public final class TraceRecorder {
  public private(set) var records: [TraceRecord] = []
  /// Virtual nanoseconds since the run began.
  public private(set) var now: UInt64 = 0
  /// Called for every record as it is added (the live timeline).
  public var onRecord: ((TraceRecord) -> Void)?
  /// The step records are attributed to now.
  public var currentStep: Int?

  public init() {}

  @discardableResult
  public func add(_ record: TraceRecord) -> TraceRecord {
    var record = record
    now += Self.cost(of: record)
    record.sequence = records.count
    record.time = now
    if record.step == nil { record.step = currentStep }
    records.append(record)
    onRecord?(record)
    return record
  }

  /// Nanoseconds a record stands for: a fixed cost by kind, plus 1 ns per 64 bytes it carries.
  static func cost(of record: TraceRecord) -> UInt64 {
    let base: UInt64 =
      switch record.kind {
      case .doe: 500
      case .spdm, .tdisp, .idekm: 50
      case .tlp: 100
      case .step, .expectation: 0
      default: 200
      }
    return base + UInt64(record.bytes?.count ?? 0) / 64
  }
}
