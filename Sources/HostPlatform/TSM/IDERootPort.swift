public import IDEKM
public import PCIe

/// The root port above a TEE-IO device: the platform end of its IDE streams. The host writes its
/// keys straight into the port's key registers (no IDE_KM: the root port belongs to the platform),
/// so its slots carry no SPDM session (PCIe 6.x §6.33.3, SEMANTICS.md §8).
public final class IDERootPort {
  public let requesterID: RequesterID
  public private(set) var endpoint: IDEStreamEndpoint

  /// `streams`: the stream IDs the host set in the port's stream register blocks.
  public init(requesterID: RequesterID, streams: [UInt8: IDEStreamKind]) {
    self.requesterID = requesterID
    endpoint = IDEStreamEndpoint(streams: streams)
  }

  public func state(of streamID: UInt8) -> IDEStreamState { endpoint.state(of: streamID) }

  func program(streamID: UInt8, slot: IDEKeySlotID, key: IDEKey, initialFieldValue: [UInt8])
    throws(IDEKeyProgramRefusal)
  {
    try endpoint.program(
      streamID: streamID, subStream: slot.keySubStream, key: key, initialFieldValue: initialFieldValue,
      session: nil)
  }

  @discardableResult
  func go(streamID: UInt8, slot: IDEKeySlotID) -> [IDEStreamEvent] {
    endpoint.go(streamID: streamID, subStream: slot.keySubStream, session: nil)
  }

  /// Clears every key of the stream: the host's teardown of its end.
  @discardableResult
  func clear(streamID: UInt8) -> [IDEStreamEvent] {
    var events: [IDEStreamEvent] = []
    for keySet in IDEKeySet.allCases {
      for slot in IDEKeySlotID.all(in: keySet) {
        events += endpoint.stop(streamID: streamID, subStream: slot.keySubStream, session: nil)
      }
    }
    return events
  }
}
