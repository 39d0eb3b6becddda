/// Link or Selective IDE (PCIe 6.x §6.33.1): a Link IDE stream protects one link hop per TC; a
/// Selective IDE stream is end to end, selected by RID and address association.
public enum IDEStreamKind: Hashable, Sendable, CustomStringConvertible {
  case link
  case selective
  public var description: String { self == .link ? "link" : "selective" }
}

/// One key slot's coordinates: key set × direction × sub-stream (§6.33.3). Every stream has
/// 2 × 2 × 3 = 12 slots; one key set's 6 slots cover both directions of all three sub-streams.
public struct IDEKeySlotID: Hashable, Sendable, CustomStringConvertible {
  public var keySet: IDEKeySet
  public var direction: IDEDirection
  public var subStream: IDESubStream

  public init(keySet: IDEKeySet, direction: IDEDirection, subStream: IDESubStream) {
    precondition(subStream.isDefined, "only PR, NPR and CPL have key slots")
    self.keySet = keySet
    self.direction = direction
    self.subStream = subStream
  }

  /// The six slots of one key set.
  public static func all(in keySet: IDEKeySet) -> [IDEKeySlotID] {
    IDEDirection.allCases.flatMap { direction in
      IDESubStream.all.map { IDEKeySlotID(keySet: keySet, direction: direction, subStream: $0) }
    }
  }

  public var keySubStream: IDEKeySubStream {
    IDEKeySubStream(keySet: keySet, direction: direction, subStream: subStream)
  }

  public var description: String { keySubStream.description }
}

/// A programmed key slot: the key and IFV from KEY_PROG, who programmed it, and whether K_SET_GO has
/// been received for it.
public struct IDEKeySlot: Hashable, Sendable {
  public var key: IDEKey
  public var initialFieldValue: [UInt8]
  /// The SPDM session whose KEY_PROG filled this slot; nil for keys the host wrote directly into a
  /// root port's key registers (no IDE_KM involved).
  public var session: IDEKMSessionID?
  public var isGo: Bool

  public init(key: IDEKey, initialFieldValue: [UInt8], session: IDEKMSessionID?, isGo: Bool = false) {
    self.key = key
    self.initialFieldValue = initialFieldValue
    self.session = session
    self.isGo = isGo
  }
}

/// Whether a stream protects traffic (§6.33.4: "Secure" once keys are programmed and the key set
/// is in use on every sub-stream in both directions).
public enum IDEStreamState: Hashable, Sendable, CustomStringConvertible {
  case insecure
  case secure(IDEKeySet)
  public var isSecure: Bool { self != .insecure }
  public var description: String {
    switch self {
    case .insecure: "INSECURE"
    case .secure(let set): "SECURE(\(set))"
    }
  }
}

/// What a key operation did to a stream, for the layers above (TDISP moves a bound TDI to ERROR on
/// `streamBecameInsecure`, SEMANTICS.md §7).
public enum IDEStreamEvent: Hashable, Sendable {
  case streamBecameSecure(streamID: UInt8, keySet: IDEKeySet)
  /// Key refresh (§6.33.4): the other key set is now in use and the stream stayed SECURE.
  case keySetSwitched(streamID: UInt8, from: IDEKeySet, to: IDEKeySet)
  case streamBecameInsecure(streamID: UInt8)
}

/// Why a KEY_PROG was refused; `status` is the KP_ACK status the device answers with.
public enum IDEKeyProgramRefusal: Error, Hashable, Sendable {
  /// The stream ID is not one this port has a stream register block set to (status 3).
  case unknownStream
  /// The key sub-stream byte names a sub-stream other than PR/NPR/CPL or sets reserved bits
  /// (status 3).
  case unsupportedSubStream
  /// Another live session already programmed part of this key set (status 4, decided: nothing in
  /// the message is malformed, the refusal is about who sent it).
  case keySetOwnedByAnotherSession(IDEKMSessionID?)
  /// The slot belongs to the key set the SECURE stream is using right now; it must be stopped
  /// before it is reprogrammed (status 4, decided).
  case keySetInUse

  public var status: IDEKMKeyProgramStatus {
    switch self {
    case .unknownStream, .unsupportedSubStream: .unsupportedValue
    case .keySetOwnedByAnotherSession, .keySetInUse: .unspecifiedFailure
    }
  }
}

/// One IDE stream at one end of the link: its twelve key slots and its state (§6.33.4).
///
/// Rules (PCIe 6.x §6.33.3–§6.33.4, with Cove's decisions marked):
/// - KEY_PROG fills one slot and clears its GO; all six slots of a key set must come from one SPDM
///   session (decided: another session gets status 4 while the first session's keys remain).
/// - K_SET_GO marks a programmed slot in use; a GO for an empty slot has no effect (K_GOSTOP_ACK
///   has no status field, §6.33.3, so nothing can be reported).
/// - The stream is SECURE once all six slots of one key set are programmed and GO. If it was
///   already SECURE on the other set, it switches sets and stays SECURE (key refresh); the old
///   set's slots are discarded (decided) so a late K_SET_STOP for them is harmless.
/// - K_SET_STOP discards the slot's key; stopping a slot of the set in use takes the stream out of
///   SECURE.
public struct IDEStream: Hashable, Sendable {
  public let streamID: UInt8
  public let kind: IDEStreamKind
  public private(set) var slots: [IDEKeySlotID: IDEKeySlot] = [:]
  public private(set) var state: IDEStreamState = .insecure

  public init(streamID: UInt8, kind: IDEStreamKind) {
    self.streamID = streamID
    self.kind = kind
  }

  public func isComplete(_ keySet: IDEKeySet) -> Bool {
    IDEKeySlotID.all(in: keySet).allSatisfy { slots[$0]?.isGo == true }
  }

  public mutating func program(
    _ slot: IDEKeySlotID, key: IDEKey, initialFieldValue: [UInt8], session: IDEKMSessionID?
  ) throws(IDEKeyProgramRefusal) {
    if state == .secure(slot.keySet) { throw .keySetInUse }
    for other in IDEKeySlotID.all(in: slot.keySet) {
      if let existing = slots[other], existing.session != session {
        throw .keySetOwnedByAnotherSession(existing.session)
      }
    }
    slots[slot] = IDEKeySlot(key: key, initialFieldValue: initialFieldValue, session: session)
  }

  public mutating func go(_ slot: IDEKeySlotID, session: IDEKMSessionID?) -> [IDEStreamEvent] {
    guard var entry = slots[slot], entry.session == session else { return [] }
    entry.isGo = true
    slots[slot] = entry
    guard isComplete(slot.keySet), state != .secure(slot.keySet) else { return [] }
    switch state {
    case .insecure:
      state = .secure(slot.keySet)
      return [.streamBecameSecure(streamID: streamID, keySet: slot.keySet)]
    case .secure(let old):
      state = .secure(slot.keySet)
      discard(old)
      return [.keySetSwitched(streamID: streamID, from: old, to: slot.keySet)]
    }
  }

  public mutating func stop(_ slot: IDEKeySlotID, session: IDEKMSessionID?) -> [IDEStreamEvent] {
    guard let entry = slots[slot], entry.session == session else { return [] }
    slots[slot] = nil
    guard state == .secure(slot.keySet) else { return [] }
    state = .insecure
    return [.streamBecameInsecure(streamID: streamID)]
  }

  /// The SPDM session ended: every key it programmed is discarded (SEMANTICS.md §7 — the keys'
  /// owner is gone), and the stream leaves SECURE if its key set was among them.
  public mutating func sessionEnded(_ session: IDEKMSessionID) -> [IDEStreamEvent] {
    let owned = slots.filter { $0.value.session == session }.map(\.key)
    for slot in owned { slots[slot] = nil }
    if case .secure(let set) = state, !isComplete(set) {
      state = .insecure
      return [.streamBecameInsecure(streamID: streamID)]
    }
    return []
  }

  mutating func discard(_ keySet: IDEKeySet) {
    for slot in IDEKeySlotID.all(in: keySet) { slots[slot] = nil }
  }
}
