public import PCIe
public import SPDM

/// One fault to inject on the DOE path between the TSM and a device: which objects it hits (their
/// direction, what they carry, which occurrence) and what happens to them.
public struct DOEFaultRule: Hashable, Sendable, CustomStringConvertible {
  public enum Direction: Hashable, Sendable, CustomStringConvertible {
    /// TSM → device.
    case request
    /// Device → TSM.
    case response

    public var description: String { self == .request ? "request" : "response" }
  }

  /// What an object carries, as far as the wire shows it: DOE discovery, a plain SPDM message (whose
  /// code is visible), or a secured record (opaque: only its position in the flow tells which
  /// message it is).
  public enum Match: Hashable, Sendable, CustomStringConvertible {
    case any
    case discovery
    case anySPDM
    /// A plain SPDM message with this request or response code (DSP0274 Table 4/5).
    case spdm(code: UInt8)
    case secured

    func matches(_ object: DOEDataObject) -> Bool {
      switch self {
      case .any: true
      case .discovery: object.type == DOEDataObjectType.discovery.rawValue
      case .anySPDM: object.type == DOEDataObjectType.spdm.rawValue
      case .spdm(let code):
        object.type == DOEDataObjectType.spdm.rawValue && object.payload.count > 1
          && object.payload[1] == code
      case .secured: object.type == DOEDataObjectType.securedSPDM.rawValue
      }
    }

    public var description: String {
      switch self {
      case .any: "any object"
      case .discovery: "DOE discovery"
      case .anySPDM: "SPDM"
      case .spdm(let code): "SPDM 0x\(String(code, radix: 16))"
      case .secured: "secured SPDM"
      }
    }
  }

  public enum Action: Hashable, Sendable, CustomStringConvertible {
    /// The object is lost.
    case drop
    /// Payload byte `offset` is XORed with `mask`; an offset past the end hits the last byte of the
    /// payload as the wire carries it (DW padding included).
    case corrupt(offset: Int, mask: UInt8)
    /// Only the first `bytes` payload bytes arrive (the DOE length is recomputed, in whole DWs).
    case truncate(bytes: Int)
    /// The object arrives twice.
    case duplicate
    /// An object seen earlier in the same direction that the rule's match also selects arrives
    /// instead (`back` = 1: the latest such object). With no such object the rule does nothing.
    case replay(back: Int)
    /// The object arrives `microseconds` late. Below the DOE timeout only the clock moves; at or past
    /// it the waiting side gives up and the object arrives with the next exchange.
    case delay(microseconds: UInt64)
    /// The object is held back and arrives right after the next object in the same direction has
    /// passed (whatever other rules did to that one); several held objects keep their order.
    case reorder

    public var description: String {
      switch self {
      case .drop: "drop"
      case .corrupt(let offset, let mask): "corrupt byte \(offset) ^ 0x\(String(mask, radix: 16))"
      case .truncate(let bytes): "truncate to \(bytes) bytes"
      case .duplicate: "duplicate"
      case .replay(let back): "replay the object \(back) back"
      case .delay(let us): "delay \(us) µs"
      case .reorder: "reorder"
      }
    }
  }

  /// Which of the matching objects the rule hits, counted from when the rule was added.
  public enum Occurrence: Hashable, Sendable {
    /// The n-th match (1 = the first).
    case nth(Int)
    case every
  }

  public var direction: Direction
  public var match: Match
  public var occurrence: Occurrence
  public var action: Action

  public init(
    _ action: Action, _ direction: Direction, _ match: Match = .any, occurrence: Occurrence = .nth(1)
  ) {
    self.direction = direction
    self.match = match
    self.occurrence = occurrence
    self.action = action
  }

  public var description: String { "\(action) the \(occurrence) \(match) \(direction)" }
}

/// A fault that fired.
public struct DOEFaultRecord: Hashable, Sendable {
  public var rule: DOEFaultRule
  public var object: DOEDataObject
}

/// The rules and the log of a fault-injecting link, shared between the test that installs rules
/// and the transport that applies them (a reference: the transport lives inside the TSM).
public final class DOEFaultInjector {
  /// PCIe 6.x §6.30.2: a DOE request that gets no response within 1 second has timed out.
  public static let timeoutMicroseconds: UInt64 = 1_000_000

  public private(set) var rules: [DOEFaultRule] = []
  private var matchCounts: [Int] = []
  public private(set) var fired: [DOEFaultRecord] = []
  /// Virtual time the link spent in delays and timeouts.
  public private(set) var elapsedMicroseconds: UInt64 = 0

  public init() {}

  public func add(_ rule: DOEFaultRule) {
    rules.append(rule)
    matchCounts.append(0)
  }

  public func removeAllRules() {
    rules = []
    matchCounts = []
  }

  func advanceClock(by microseconds: UInt64) { elapsedMicroseconds += microseconds }

  /// The first rule that hits `object` (each matching rule counts it).
  func rule(for object: DOEDataObject, direction: DOEFaultRule.Direction) -> DOEFaultRule? {
    var chosen: DOEFaultRule?
    for index in rules.indices where rules[index].direction == direction && rules[index].match.matches(object)
    {
      matchCounts[index] += 1
      let hits: Bool
      switch rules[index].occurrence {
      case .every: hits = true
      case .nth(let n): hits = matchCounts[index] == n
      }
      if hits, chosen == nil { chosen = rules[index] }
    }
    return chosen
  }

  /// A rule that did something to `object` (a replay with nothing to replay does not count).
  func record(_ rule: DOEFaultRule, on object: DOEDataObject) {
    fired.append(DOEFaultRecord(rule: rule, object: object))
  }
}

/// A lossy, reordering link between the TSM's DOE driver and the device (a man in the middle on the
/// DOE path): requests and responses pass through the injector's rules. Responses wait in a queue
/// and each exchange takes the first one waiting, so a duplicated or late response is what the
/// next exchange reads, as it would be on a shared wire. A fresh connection's `reset` (DOE Abort)
/// empties the link.
public struct FaultInjectingDOETransport<Inner: TSMTransport & DOEObjectExchange>: TSMTransport,
  DOEObjectExchange
{
  public var inner: Inner
  public let injector: DOEFaultInjector
  private var waitingResponses: [DOEDataObject] = []
  private var lateRequests: [DOEDataObject] = []
  private var lateResponses: [DOEDataObject] = []
  private var heldRequests: [DOEDataObject] = []
  private var heldResponses: [DOEDataObject] = []
  /// Every object each side sent, before faults, across connections.
  public private(set) var requestHistory: [DOEDataObject] = []
  public private(set) var responseHistory: [DOEDataObject] = []

  public init(inner: Inner, injector: DOEFaultInjector) {
    self.inner = inner
    self.injector = injector
  }

  public mutating func exchange(object: DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject {
    var deviceError: SPDMRequesterError?
    // What arrived late since the last exchange reaches its side now.
    let late = lateRequests
    lateRequests = []
    for request in late { deliver(request, error: &deviceError) }
    waitingResponses += lateResponses
    lateResponses = []

    let request = object.paddedToDW()
    let history = requestHistory
    requestHistory.append(request)
    // Objects held back before this one arrive after it, whatever happened to it.
    let released = heldRequests
    heldRequests = []
    switch disposition(of: request, direction: .request, history: history) {
    case .pass(let objects):
      for object in objects { deliver(object, error: &deviceError) }
    case .late(let object): lateRequests.append(object)
    case .held(let object): heldRequests.append(object)
    }
    for held in released { deliver(held, error: &deviceError) }
    guard !waitingResponses.isEmpty else {
      injector.advanceClock(by: DOEFaultInjector.timeoutMicroseconds)
      throw deviceError ?? .timeout("DOE: no response within 1 s (PCIe 6.x §6.30.2)")
    }
    return waitingResponses.removeFirst()
  }

  public mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError)
    -> SPDMTransportMessage
  {
    try SPDMTransportMessage(doeResponse: try exchange(object: DOEDataObject(carrying: message)))
  }

  /// Discovery goes through the faulty link too.
  public mutating func discoverProtocols() throws(SPDMRequesterError) -> [DOEProtocol] {
    try DOEDiscovery.walk { request throws(SPDMRequesterError) in try exchange(object: request) }
  }

  /// DOE Abort: everything in flight or waiting is gone. The history stays, so an object from an
  /// earlier connection can still be replayed into a later one.
  public mutating func reset() {
    waitingResponses = []
    lateRequests = []
    lateResponses = []
    heldRequests = []
    heldResponses = []
    inner.reset()
  }

  private enum Disposition {
    case pass([DOEDataObject])
    case late(DOEDataObject)
    case held(DOEDataObject)
  }

  private func disposition(
    of object: DOEDataObject, direction: DOEFaultRule.Direction, history: [DOEDataObject]
  ) -> Disposition {
    guard let rule = injector.rule(for: object, direction: direction) else { return .pass([object]) }
    let outcome = apply(rule, to: object, history: history)
    if outcome != nil { injector.record(rule, on: object) }
    return outcome ?? .pass([object])
  }

  /// What `rule` does to `object`, or nil when it cannot act (a replay with nothing to replay).
  private func apply(_ rule: DOEFaultRule, to object: DOEDataObject, history: [DOEDataObject]) -> Disposition?
  {
    switch rule.action {
    case .drop:
      return .pass([])
    case .corrupt(let offset, let mask):
      var corrupted = object
      guard !corrupted.payload.isEmpty else { return nil }
      corrupted.payload[min(max(offset, 0), corrupted.payload.count - 1)] ^= mask
      return .pass([corrupted])
    case .truncate(let bytes):
      var truncated = object
      truncated.payload = Array(object.payload.prefix(max(bytes, 0))).paddedToDW()
      return .pass([truncated])
    case .duplicate:
      return .pass([object, object])
    case .replay(let back):
      let candidates = history.filter { rule.match.matches($0) }
      guard back >= 1, back <= candidates.count else { return nil }
      return .pass([candidates[candidates.count - back]])
    case .delay(let microseconds):
      guard microseconds >= DOEFaultInjector.timeoutMicroseconds else {
        injector.advanceClock(by: microseconds)
        return .pass([object])
      }
      return .late(object)
    case .reorder:
      return .held(object)
    }
  }

  /// The device takes one request; its response (if any) passes the response rules.
  private mutating func deliver(_ request: DOEDataObject, error deviceError: inout SPDMRequesterError?) {
    let response: DOEDataObject
    do { response = try inner.exchange(object: request).paddedToDW() } catch {
      deviceError = error
      return
    }
    let history = responseHistory
    responseHistory.append(response)
    let released = heldResponses
    heldResponses = []
    switch disposition(of: response, direction: .response, history: history) {
    case .pass(let objects): waitingResponses += objects
    case .late(let object): lateResponses.append(object)
    case .held(let object): heldResponses.append(object)
    }
    waitingResponses += released
  }
}

extension [UInt8] {
  fileprivate func paddedToDW() -> [UInt8] { self + [UInt8](repeating: 0, count: (4 - count % 4) % 4) }
}
