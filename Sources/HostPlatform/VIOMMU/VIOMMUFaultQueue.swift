public import GuestABI

/// The fault event queue the guest drains: bounded, with a sticky overflow flag that behaves as VT-d's
/// Primary Fault Overflow (Fault Status register, PFO): set when a fault arrives while the queue is
/// full, and while it is set no new fault is recorded — even after the guest has drained records —
/// until the guest clears it. A guest therefore always learns that it lost faults, and the records it
/// does see are the oldest ones, in order.
public struct VIOMMUFaultQueue: Sendable {
  /// Records held at most.
  public let capacity: Int
  /// Set on overflow; cleared only by ``clearOverflow()``.
  public private(set) var overflowed = false
  /// Faults not recorded (queue full or overflow set), since creation: for the platform's logs, not
  /// the guest's interface.
  public private(set) var droppedCount = 0
  /// Records held.
  public private(set) var count = 0

  /// A ring of `capacity` slots; the oldest record is at `head`.
  private var slots: [VIOMMUFaultRecord?]
  private var head = 0

  /// The most records a queue may hold: what the 16-bit capacity field of CAP can show.
  public static let maximumCapacity = 0xFFFF

  /// - Precondition: `capacity` in 1…``maximumCapacity`` (platform configuration, not guest input).
  public init(capacity: Int) {
    precondition((1...Self.maximumCapacity).contains(capacity), "fault queue capacity \(capacity)")
    self.capacity = capacity
    slots = Array(repeating: nil, count: capacity)
  }

  /// Records `record` unless the queue is full or has overflowed.
  public mutating func report(_ record: VIOMMUFaultRecord) {
    guard !overflowed, count < capacity else {
      overflowed = true
      droppedCount += 1
      return
    }
    slots[(head + count) % capacity] = record
    count += 1
  }

  /// The records held, oldest first.
  public var records: [VIOMMUFaultRecord] {
    (0..<count).map { slots[(head + $0) % capacity]! }
  }

  /// The oldest record, or nil.
  public var oldest: VIOMMUFaultRecord? { count == 0 ? nil : slots[head] }

  /// Removes and returns the oldest record. The overflow flag stays as it is.
  @discardableResult
  public mutating func pop() -> VIOMMUFaultRecord? {
    guard count > 0 else { return nil }
    defer {
      slots[head] = nil
      head = (head + 1) % capacity
      count -= 1
    }
    return slots[head]
  }

  /// Removes and returns every record, oldest first. The overflow flag stays as it is.
  public mutating func drain() -> [VIOMMUFaultRecord] {
    defer { while pop() != nil {} }
    return records
  }

  public mutating func clearOverflow() { overflowed = false }
}
