/// One port of a device as IDE_KM sees it (PCIe 6.x §6.33.3 QUERY_RESP fields): its identity,
/// its IDE capability registers, and its streams.
public struct IDEKMPort: Hashable, Sendable {
  public var deviceFunction: UInt8
  public var bus: UInt8
  public var segment: UInt8
  public var capability: IDECapabilityRegister
  public var control: UInt32
  public var linkBlocks: [LinkIDEStreamRegisterBlock]
  public var selectiveBlocks: [SelectiveIDEStreamRegisterBlock]
  public var endpoint: IDEStreamEndpoint

  public init(
    deviceFunction: UInt8, bus: UInt8, segment: UInt8 = 0, capability: IDECapabilityRegister,
    control: UInt32 = 0, linkBlocks: [LinkIDEStreamRegisterBlock] = [],
    selectiveBlocks: [SelectiveIDEStreamRegisterBlock] = [], streams: [UInt8: IDEStreamKind]
  ) {
    self.deviceFunction = deviceFunction
    self.bus = bus
    self.segment = segment
    self.capability = capability
    self.control = control
    self.linkBlocks = linkBlocks
    self.selectiveBlocks = selectiveBlocks
    endpoint = IDEStreamEndpoint(streams: streams)
  }
}

/// The device (DSM) side of IDE_KM (PCIe 6.x §6.33.3): answers QUERY with QUERY_RESP, KEY_PROG with
/// KP_ACK, K_SET_GO / K_SET_STOP with K_GOSTOP_ACK. No I/O: the caller hands in the decrypted
/// IDE_KM message (after the PCI-SIG protocol ID) and the SPDM session it arrived in, and sends back
/// `response`.
public struct IDEKMResponder: Hashable, Sendable {
  /// What one request produced.
  public struct Output: Hashable, Sendable {
    /// The IDE_KM response message, or nil when none may be sent (see `respond`).
    public var response: [UInt8]?
    /// Stream events, tagged with the port index they happened on.
    public var events: [PortEvent]
  }

  public struct PortEvent: Hashable, Sendable {
    public var portIndex: UInt8
    public var event: IDEStreamEvent
  }

  /// Ports by index, 0…maxPortIndex (§6.33.3: port 0 is the port the DOE mailbox belongs to).
  public private(set) var ports: [IDEKMPort]

  public init(ports: [IDEKMPort]) {
    precondition(!ports.isEmpty && ports.count <= 256, "1…256 ports")
    self.ports = ports
  }

  public var maxPortIndex: UInt8 { UInt8(ports.count - 1) }

  /// Handles one request.
  /// - No session: IDE_KM is accepted only inside a secured SPDM session (§6.33.1); no response.
  /// - KEY_PROG of the wrong length: KP_ACK status 1 (incorrect length), echoing whatever header
  ///   fields are present (missing ones as 0).
  /// - QUERY / K_SET_GO / K_SET_STOP that do not decode, an unknown object, or a response object:
  ///   no response (IDE_KM has no error message; the caller may answer with an SPDM ERROR).
  /// - QUERY or K_SET_GO/STOP for a port that does not exist: no response / ACK with no effect
  ///   (decided: QUERY_RESP cannot describe a missing port, K_GOSTOP_ACK has no status).
  public mutating func respond(to request: [UInt8], session: IDEKMSessionID?) -> Output {
    guard let session else { return Output(response: nil, events: []) }
    guard let first = request.first else { return Output(response: nil, events: []) }
    switch IDEKMObjectID(rawValue: first) {
    case .query:
      guard let query = try? IDEKMQuery(parsing: request), Int(query.portIndex) < ports.count else {
        return Output(response: nil, events: [])
      }
      return Output(response: queryResponse(port: query.portIndex).encode(), events: [])
    case .keyProgram:
      return keyProgram(request, session: session)
    case .keySetGo, .keySetStop:
      guard let command = try? IDEKMKeySetCommand(parsing: request) else {
        return Output(response: nil, events: [])
      }
      var events: [IDEStreamEvent] = []
      let port = Int(command.portIndex)
      if port < ports.count {
        if command.objectID == .keySetGo {
          events = ports[port].endpoint.go(
            streamID: command.streamID, subStream: command.subStream, session: session)
        } else {
          events = ports[port].endpoint.stop(
            streamID: command.streamID, subStream: command.subStream, session: session)
        }
      }
      return Output(
        response: command.acknowledgement.encode(),
        events: events.map { PortEvent(portIndex: command.portIndex, event: $0) })
    default:
      return Output(response: nil, events: [])
    }
  }

  public func queryResponse(port index: UInt8) -> IDEKMQueryResponse {
    let port = ports[Int(index)]
    return IDEKMQueryResponse(
      portIndex: index, deviceFunction: port.deviceFunction, bus: port.bus, segment: port.segment,
      maxPortIndex: maxPortIndex, capability: port.capability, control: port.control,
      linkStreams: port.linkBlocks, selectiveStreams: port.selectiveBlocks)
  }

  mutating func keyProgram(_ request: [UInt8], session: IDEKMSessionID) -> Output {
    func byte(_ index: Int) -> UInt8 { index < request.count ? request[index] : 0 }
    let streamID = byte(3)
    let subStream = IDEKeySubStream(rawValue: byte(5))
    let portIndex = byte(6)
    func ack(_ status: IDEKMKeyProgramStatus, _ events: [IDEStreamEvent] = []) -> Output {
      Output(
        response: IDEKMKeyProgramAck(
          streamID: streamID, status: status, subStream: subStream, portIndex: portIndex
        )
        .encode(),
        events: events.map { PortEvent(portIndex: portIndex, event: $0) })
    }
    guard request.count == IDEKMKeyProgram.size, let message = try? IDEKMKeyProgram(parsing: request) else {
      return ack(.incorrectLength)
    }
    guard Int(message.portIndex) < ports.count else { return ack(.unsupportedPortIndex) }
    do {
      try ports[Int(portIndex)].endpoint.program(
        streamID: message.streamID, subStream: message.subStream, key: message.key,
        initialFieldValue: message.initialFieldValue, session: session)
    } catch {
      return ack(error.status)
    }
    return ack(.success)
  }

  /// The SPDM session ended (SEMANTICS.md §7): its keys are discarded on every port.
  public mutating func sessionEnded(_ session: IDEKMSessionID) -> [PortEvent] {
    var events: [PortEvent] = []
    for index in ports.indices {
      events += ports[index].endpoint.sessionEnded(session).map {
        PortEvent(portIndex: UInt8(index), event: $0)
      }
    }
    return events
  }

  /// `IDEStreamEndpoint.isReady` for port 0, the port TDISP's default stream runs on.
  public func isReady(defaultStream streamID: UInt8, forSession session: IDEKMSessionID, port: UInt8 = 0)
    -> (ready: Bool, fromSession: IDEKMSessionID?)
  {
    ports[Int(port)].endpoint.isReady(defaultStream: streamID, forSession: session)
  }
}
