/// One end of IDE streams — a device port (keys arrive by IDE_KM) or a root port (keys written by
/// the host directly) — holding the streams the host configured on it (PCIe 6.x §6.33).
public struct IDEStreamEndpoint: Hashable, Sendable {
  public private(set) var streams: [UInt8: IDEStream]

  /// `streams`: the stream IDs the host has set in this port's stream register blocks and their kind.
  public init(streams: [UInt8: IDEStreamKind]) {
    var built: [UInt8: IDEStream] = [:]
    for (id, kind) in streams { built[id] = IDEStream(streamID: id, kind: kind) }
    self.streams = built
  }

  public func state(of streamID: UInt8) -> IDEStreamState {
    streams[streamID]?.state ?? .insecure
  }

  public mutating func program(
    streamID: UInt8, subStream: IDEKeySubStream, key: IDEKey, initialFieldValue: [UInt8],
    session: IDEKMSessionID?
  ) throws(IDEKeyProgramRefusal) {
    guard streams[streamID] != nil else { throw .unknownStream }
    guard let slot = Self.slot(subStream) else { throw .unsupportedSubStream }
    try streams[streamID]!.program(slot, key: key, initialFieldValue: initialFieldValue, session: session)
  }

  public mutating func go(streamID: UInt8, subStream: IDEKeySubStream, session: IDEKMSessionID?)
    -> [IDEStreamEvent]
  {
    guard streams[streamID] != nil, let slot = Self.slot(subStream) else { return [] }
    return streams[streamID]!.go(slot, session: session)
  }

  public mutating func stop(streamID: UInt8, subStream: IDEKeySubStream, session: IDEKMSessionID?)
    -> [IDEStreamEvent]
  {
    guard streams[streamID] != nil, let slot = Self.slot(subStream) else { return [] }
    return streams[streamID]!.stop(slot, session: session)
  }

  public mutating func sessionEnded(_ session: IDEKMSessionID) -> [IDEStreamEvent] {
    var events: [IDEStreamEvent] = []
    for id in streams.keys.sorted() { events += streams[id]!.sessionEnded(session) }
    return events
  }

  /// For TDISP LOCK (SEMANTICS.md §7): `ready` when the default stream is SECURE with a key set
  /// programmed entirely by `session`; `fromSession` is who programmed the key set in use (or, when
  /// not SECURE, any programmed key of the stream), so the caller can tell "missing" from "another
  /// session's".
  public func isReady(defaultStream streamID: UInt8, forSession session: IDEKMSessionID)
    -> (ready: Bool, fromSession: IDEKMSessionID?)
  {
    guard let stream = streams[streamID] else { return (false, nil) }
    if case .secure(let set) = stream.state {
      let owners = Set(IDEKeySlotID.all(in: set).map { stream.slots[$0]?.session })
      let owner = owners.count == 1 ? owners.first! : nil
      return (owner == session, owner)
    }
    let anyOwner = stream.slots.sorted { $0.key.keySubStream.rawValue < $1.key.keySubStream.rawValue }
      .first?.value.session
    return (false, anyOwner)
  }

  /// The slot a key sub-stream byte names, or nil if the sub-stream is undefined or reserved bits
  /// are set (§6.33.3: KP_ACK "Unsupported Value").
  static func slot(_ subStream: IDEKeySubStream) -> IDEKeySlotID? {
    guard subStream.subStream.isDefined, subStream.reservedBits == 0 else { return nil }
    return IDEKeySlotID(
      keySet: subStream.keySet, direction: subStream.direction, subStream: subStream.subStream)
  }
}

/// A device port and its root port joined by IDE streams (§6.33.1): a stream is SECURE only when it
/// is SECURE at both ends.
public struct IDELink: Hashable, Sendable {
  public var device: IDEStreamEndpoint
  public var rootPort: IDEStreamEndpoint

  public init(device: IDEStreamEndpoint, rootPort: IDEStreamEndpoint) {
    self.device = device
    self.rootPort = rootPort
  }

  public func isSecure(streamID: UInt8) -> Bool {
    device.state(of: streamID).isSecure && rootPort.state(of: streamID).isSecure
  }

  /// Whether each end's transmit keys of the key set in use are the other end's receive keys, as
  /// they must be for traffic to decrypt (directions are each port's own view, §6.33.3).
  public func keysAgree(streamID: UInt8) -> Bool {
    guard case .secure(let deviceSet) = device.state(of: streamID),
      case .secure(let rootSet) = rootPort.state(of: streamID),
      let deviceStream = device.streams[streamID], let rootStream = rootPort.streams[streamID]
    else { return false }
    for direction in IDEDirection.allCases {
      let opposite: IDEDirection = direction == .receive ? .transmit : .receive
      for sub in IDESubStream.all {
        let mine = deviceStream.slots[IDEKeySlotID(keySet: deviceSet, direction: direction, subStream: sub)]
        let theirs = rootStream.slots[IDEKeySlotID(keySet: rootSet, direction: opposite, subStream: sub)]
        guard let mine, let theirs, mine.key == theirs.key, mine.initialFieldValue == theirs.initialFieldValue
        else { return false }
      }
    }
    return true
  }
}
