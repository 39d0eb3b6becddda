public import CoveScenario
public import HostPlatform
import IDEKM
public import PCIe
public import SPDM
public import TDISP

/// What the responder does after answering a frame.
public enum SPDMSocketDisposition: Hashable, Sendable {
  /// Keep reading frames on this connection.
  case keepOpen
  /// Close this connection and accept the next one (CONTINUE, an unknown command, a peer error).
  case closeConnection
  /// Close this connection and stop serving (SHUTDOWN).
  case shutdown
}

/// The answer to one frame: what to send (nil: nothing) and what happens to the connection.
public struct SPDMSocketReply: Hashable, Sendable {
  public var frame: SPDMSocketFrame?
  public var disposition: SPDMSocketDisposition

  public init(frame: SPDMSocketFrame?, disposition: SPDMSocketDisposition) {
    self.frame = frame
    self.disposition = disposition
  }
}

/// The responder's side of the SPDM socket protocol, with no I/O (STYLE.md: the machine does no I/O,
/// the NIO handler moves the bytes): it owns a Cove device and answers each frame for it.
///
/// - TEST → "Server Hello!\0"; SHUTDOWN and CONTINUE are echoed (empty), SHUTDOWN then stops the
///   server, CONTINUE closes the connection and lets the next one in.
/// - NORMAL: for PCI_DOE the payload is a DOE object, served by the DSM's DOE endpoint (discovery
///   index 0, 1, 2 → DOE discovery, SPDM, secured SPDM, as the DMTF requester expects); for MCTP
///   and NONE the SPDM message goes straight to the DSM's SPDM responder. A request that gets no
///   answer (a TDISP request outside a session; a record for no session) is answered by an empty
///   NORMAL frame, so a requester never waits forever on a frame that will not come.
/// - Any other command, the OOB ones included (Cove's responder runs no encapsulated requests) →
///   0xFFFF, and the connection is dropped. A frame for another transport, or a NORMAL payload that
///   is not what the transport carries, is a typed error: the connection is dropped.
///
/// The device persists across connections, like hardware across requester restarts. Every TDI
/// state change and IDE stream state change an exchange caused is recorded (`.state` records), so
/// a human sees what an external requester does to the device; every exchanged object is recorded
/// for the capture (``captureRecords``) and the sessions' secrets for the key log.
public final class SPDMSocketResponderCore {
  public let device: CoveDMADevice
  public let binding: SPDMSocketBinding
  public let recorder: TraceRecorder
  /// The capture: one entry per request and per response, in order, as ``captureLinkType`` frames it.
  public private(set) var captureRecords: [PcapRecord] = []
  /// The secrets of every session the device began, in order (updated after each exchange).
  public private(set) var sessionSecrets: [SPDMSessionSecrets] = []
  /// Frames served, and connections dropped for a peer's error.
  public private(set) var exchanges = 0
  public private(set) var peerErrors: [SPDMSocketError] = []

  private var tdiStates: [RequesterID: TDIState]
  private var streamStates: [String: String]

  public init(device: CoveDMADevice, binding: SPDMSocketBinding, recorder: TraceRecorder = TraceRecorder()) {
    self.device = device
    self.binding = binding
    self.recorder = recorder
    device.tdisp.setSecuredRecordFormat(binding.securedRecordFormat)
    tdiStates = [:]
    streamStates = [:]
    tdiStates = currentTDIStates()
    streamStates = currentStreamStates()
  }

  /// LINKTYPE_PCI_DOE (292) for DOE, LINKTYPE_MCTP (291) for MCTP. NONE has no link type of its own:
  /// its messages are written as the DOE objects that would carry them (292), so DMTF spdm-dump
  /// decodes them, secured records included (DOE's records, like NONE's, carry no sequence number).
  public var captureLinkType: UInt32 {
    binding == .mctp ? PcapFormat.linkTypeMCTP : PcapFormat.linkTypePCIDOE
  }

  /// The TDI states as the device holds them now.
  public func currentTDIStates() -> [RequesterID: TDIState] {
    var states: [RequesterID: TDIState] = [:]
    for function in device.tdisp.functionIDs { states[function] = device.tdisp.tdi(function)?.state }
    return states
  }

  private func currentStreamStates() -> [String: String] {
    var states: [String: String] = [:]
    for (index, port) in device.tdisp.dsm.ideKM.ports.enumerated() {
      for (id, stream) in port.endpoint.streams {
        states["port \(index) stream \(id)"] = "\(stream.state)"
      }
    }
    return states
  }

  /// A new connection was accepted (recorded, so the live output shows requester restarts).
  public func connectionOpened(peer: String) {
    recorder.add(TraceRecord(component: .device, kind: .event, summary: "connection from \(peer)"))
  }

  /// The connection ended (by either side or by an error).
  public func connectionClosed(peer: String, error: SPDMSocketError?) {
    if let error { peerErrors.append(error) }
    let why = error.map { ": \($0)" } ?? ""
    recorder.add(
      TraceRecord(component: .device, kind: .event, summary: "connection from \(peer) closed\(why)"))
  }

  /// The answer to one frame. Throws for a frame the connection cannot survive (the caller drops it).
  public func handle(_ frame: SPDMSocketFrame) throws(SPDMSocketError) -> SPDMSocketReply {
    guard frame.transportType == binding.transportType else {
      throw .wrongTransport(got: frame.transportType, expected: binding.transportType)
    }
    let type = binding.transportType
    switch frame.command {
    case .test:
      return SPDMSocketReply(
        frame: SPDMSocketFrame(command: .test, transportType: type, payload: SPDMSocketFrame.serverHello),
        disposition: .keepOpen)
    case .shutdown:
      return SPDMSocketReply(
        frame: SPDMSocketFrame(command: .shutdown, transportType: type), disposition: .shutdown)
    case .continue:
      return SPDMSocketReply(
        frame: SPDMSocketFrame(command: .continue, transportType: type), disposition: .closeConnection)
    case .normal:
      let response = try serve(frame.payload)
      return SPDMSocketReply(
        frame: SPDMSocketFrame(command: .normal, transportType: type, payload: response),
        disposition: .keepOpen)
    default:
      recorder.add(
        TraceRecord(
          component: .device, kind: .event, summary: "unknown command \(frame.command): answered 0xFFFF"))
      return SPDMSocketReply(
        frame: SPDMSocketFrame(command: .unknown, transportType: type), disposition: .closeConnection)
    }
  }

  /// One NORMAL payload in, the response payload out (empty: no answer).
  public func serve(_ payload: [UInt8]) throws(SPDMSocketError) -> [UInt8] {
    exchanges += 1
    let response: [UInt8]
    switch binding {
    case .doe:
      let object = try SPDMSocketBinding.doeObject(payload)
      capture(payload, isRequest: true)
      response = device.tdisp.serveDOEObject(object).map { $0.paddedToDW().encode() } ?? []
    case .mctp, .none:
      let sessions = Set(device.tdisp.spdmResponder.sessions.keys)
      let message = try binding.message(payload, sessions: sessions)
      capture(payload, isRequest: true, message: message)
      if let answer = device.tdisp.respondSPDM(message) {
        response = binding.payload(for: answer)
        capture(response, isRequest: false, message: answer)
      } else {
        response = []
      }
    }
    if binding == .doe, !response.isEmpty { capture(response, isRequest: false) }
    if response.isEmpty {
      recorder.add(
        TraceRecord(component: .dsm, kind: .event, summary: "request got no answer (empty NORMAL sent)"))
    }
    recordChanges()
    return response
  }

  private func capture(_ payload: [UInt8], isRequest: Bool, message: SPDMTransportMessage? = nil) {
    let bytes: [UInt8]
    switch binding {
    case .doe: bytes = payload
    // spdm-emu's MCTP records: a 4-byte MCTP transport header (version 0, EIDs 0, SOM|EOM tag 0xC0).
    case .mctp: bytes = [0, 0, 0, 0xC0] + payload
    case .none: bytes = message.map { DOEDataObject(carrying: $0).paddedToDW().encode() } ?? payload
    }
    let record = recorder.add(
      TraceRecord(
        component: isRequest ? .tsm : .dsm, kind: .doe, summary: isRequest ? "request" : "response",
        bytes: bytes, from: isRequest ? .tsm : .dsm, to: isRequest ? .dsm : .tsm, isRequest: isRequest))
    captureRecords.append(PcapRecord(time: record.time, bytes: bytes))
  }

  /// Records each TDI and IDE stream whose state the last exchange changed, and refreshes the key log.
  private func recordChanges() {
    let tdis = currentTDIStates()
    for function in device.tdisp.functionIDs where tdis[function] != tdiStates[function] {
      recorder.add(
        TraceRecord(
          component: .tdi, kind: .state, device: "\(function.bdf())",
          summary:
            "TDI \(function.bdf()) \(tdiStates[function].map { "\($0)" } ?? "?") → \(tdis[function].map { "\($0)" } ?? "?")",
          before: tdiStates[function].map { "\($0)" }, after: tdis[function].map { "\($0)" }))
    }
    tdiStates = tdis
    let streams = currentStreamStates()
    for key in Set(streams.keys).union(streamStates.keys).sorted() where streams[key] != streamStates[key] {
      recorder.add(
        TraceRecord(
          component: .device, kind: .state,
          summary: "IDE \(key) \(streamStates[key] ?? "absent") → \(streams[key] ?? "absent")",
          before: streamStates[key], after: streams[key]))
    }
    streamStates = streams
    // Secrets are derived again only when a session is new or has just reached its data phase.
    for session in device.tdisp.spdmResponder.sessions.values {
      let index = sessionSecrets.lastIndex {
        $0.sessionID == session.sessionID && $0.sharedSecret == session.sharedSecret
      }
      if let index {
        if sessionSecrets[index].data == nil, session.th2 != nil {
          sessionSecrets[index] = SPDMSessionSecrets(session)
        }
      } else {
        sessionSecrets.append(SPDMSessionSecrets(session))
      }
    }
  }

  /// The capture so far as a pcap file.
  public func pcap() -> [UInt8] {
    PcapWriter.write(captureRecords, linkType: captureLinkType)
  }
}
