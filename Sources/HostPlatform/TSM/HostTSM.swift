public import CoveCrypto
public import GuestABI
public import IDEKM
import IOMMU
public import PCIe
public import SPDM
public import TDISP

/// Whether the TSM keys an IDE stream to the device at connect (`cove tsm --ide`).
public enum TSMIDEPolicy: String, Hashable, Sendable, CaseIterable {
  /// IDE_KM QUERY, then KEY_PROG and K_SET_GO of the configured selective stream on both ends; the
  /// connect fails if the device's port has no Selective IDE stream.
  case required
  /// No IDE_KM at all: a TSM for a link without IDE. TDISP still runs; no stream is SECURE, so no
  /// TDI is ready for trusted DMA.
  case off
}

/// How the TSM drives one device: which stream it keys and how it locks the device's TDIs.
public struct TSMDeviceConfiguration: Hashable, Sendable {
  /// The DSM's function (function 0, the one with the DOE mailbox).
  public var dsmFunction: RequesterID
  /// Every TDI reached through the DSM: the DSM function's own, other PFs', VFs'.
  public var interfaces: [RequesterID]
  /// The selective IDE stream the TSM keys and every TDI locks on as its default stream.
  public var streamID: UInt8
  /// LOCK_INTERFACE_REQUEST flags (PCIe 6.x §11.3.8).
  public var lockFlags: TDISPLockFlags
  /// Added by the device to every address in the interface report (the guest's view of the BARs).
  public var mmioReportingOffset: UInt64
  /// LENGTH of each GET_DEVICE_INTERFACE_REPORT (the device may return less).
  public var reportPortionLength: UInt16
  /// Whether connect keys the IDE stream (default) or leaves IDE alone.
  public var ide: TSMIDEPolicy

  public init(
    dsmFunction: RequesterID, interfaces: [RequesterID], streamID: UInt8, lockFlags: TDISPLockFlags = [],
    mmioReportingOffset: UInt64 = 0, reportPortionLength: UInt16 = 0x400, ide: TSMIDEPolicy = .required
  ) {
    self.dsmFunction = dsmFunction
    self.interfaces = interfaces
    self.streamID = streamID
    self.lockFlags = lockFlags
    self.mmioReportingOffset = mmioReportingOffset
    self.reportPortionLength = reportPortionLength
    self.ide = ide
  }
}

/// The TSM's view of one TDI.
public enum TSMInterfaceState: Hashable, Sendable, CustomStringConvertible {
  case unlocked
  case locked
  case run
  /// The connection failed while the TDI was locked or running: the device may have moved it to
  /// ERROR. The next connect brings it back to CONFIG_UNLOCKED.
  case unknown

  public var description: String {
    switch self {
    case .unlocked: "UNLOCKED"
    case .locked: "LOCKED"
    case .run: "RUN"
    case .unknown: "UNKNOWN"
    }
  }
}

/// An interface report as the TSM fetched and keeps it: the bytes, what they say, and their digest
/// under the session's hash (what a guest compares against).
public struct TSMInterfaceReport: Hashable, Sendable {
  public var bytes: [UInt8]
  public var report: TDISPDeviceInterfaceReport
  public var digest: [UInt8]
  /// GET_DEVICE_INTERFACE_REPORT requests it took.
  public var portions: Int
}

public struct TSMInterface: Hashable, Sendable {
  public let interfaceID: TDISPInterfaceID
  public internal(set) var owner: GuestID?
  public internal(set) var state: TSMInterfaceState = .unlocked
  public internal(set) var report: TSMInterfaceReport?
  /// The START nonce LOCK returned: the TSM keeps it and uses it once, on the guest's accept.
  var startNonce: [UInt8]?
}

/// What `connect` established and verified.
public struct TSMConnection: Hashable, Sendable {
  public var doeProtocols: [DOEProtocol]
  public var algorithms: SPDMNegotiatedAlgorithms
  public var certificateChain: [X509Certificate]
  public var measurements: MeasurementsResponse
  public var sessionID: UInt32
  public var tdispVersions: [TDISPVersion]
  public var tdispCapabilities: TDISPCapabilities
  /// QUERY_RESP for port 0; nil with `ide: .off`.
  public var ideQuery: IDEKMQueryResponse?
  /// The key set the stream went SECURE on; nil with `ide: .off`.
  public var keySet: IDEKeySet?
  /// TDIs found outside CONFIG_UNLOCKED at connect and stopped.
  public var stoppedInterfaces: [TDISPInterfaceID]
}

/// The steps of ``HostTSM/connect()``, in order, as ``HostTSM/onConnectEvent`` announces them.
public enum TSMConnectStep: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
  case doeDiscovery = "DOE discovery"
  case vca = "VCA (GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS)"
  case certificateChain = "certificate chain (GET_DIGESTS, GET_CERTIFICATE)"
  case measurements = "signed measurements (GET_MEASUREMENTS)"
  case session = "session (KEY_EXCHANGE, FINISH)"
  case tdispVersion = "TDISP GET_VERSION"
  case tdispCapabilities = "TDISP GET_CAPABILITIES"
  case ideQuery = "IDE_KM QUERY"
  case ideKeyProgramming = "IDE_KM KEY_PROG / K_SET_GO"
  case interfaceStates = "GET_DEVICE_INTERFACE_STATE of every TDI"

  public var description: String { rawValue }
}

/// What ``HostTSM/connect()`` reports as it goes: each step as it starts, and what it verified as
/// it passes, so a caller can say what passed before a failure and which step failed.
public enum TSMConnectEvent: Sendable {
  case starting(TSMConnectStep)
  case discovered([DOEProtocol])
  case negotiated(SPDMNegotiatedAlgorithms)
  /// The chain as the device sent it (root first) and the trust anchor it was verified to.
  case certificateChainVerified([X509Certificate], anchor: X509Certificate?)
  case measurementsVerified(MeasurementsResponse)
  case sessionEstablished(UInt32)
  case tdispVersions([TDISPVersion])
  case tdispCapabilities(TDISPCapabilities)
  /// QUERY_RESP accepted; `zeroSurplus` all-zero bytes beyond its register blocks were ignored.
  case ideQueried(IDEKMQueryResponse)
  case ideStreamSecure(streamID: UInt8, keySet: IDEKeySet)
  /// `ide: .off`: no IDE_KM message was sent.
  case ideSkipped
  /// A TDI found outside CONFIG_UNLOCKED (left by an earlier connection) and stopped.
  case interfaceStopped(TDISPInterfaceID, was: TDIState)
  /// GET_DEVICE_INTERFACE_STATE for this TDI is under way (part of ``TSMConnectStep/interfaceStates``).
  case checkingInterface(TDISPInterfaceID)
  case interfacesUnlocked(Int)
}

/// Evidence about one TDI for its guest (SEMANTICS.md §8): the device's certificate chain, signed
/// measurements carrying the guest's nonce, and the interface report with its digest.
public struct TDIEvidence: Hashable, Sendable {
  public var interfaceID: TDISPInterfaceID
  public var certificateChain: [X509Certificate]
  public var measurements: MeasurementsResponse
  public var signedMeasurements: SignedMeasurementsEvidence
  public var report: TSMInterfaceReport
  /// The TDI's state as the device reported it (GET_DEVICE_INTERFACE_STATE) when the evidence was taken.
  public var state: TDIState
}

/// One PCI-SIG protocol exchange inside the session, in the clear: what traces and tests read.
public struct TSMMessageRecord: Hashable, Sendable {
  public var protocolID: PCISIGProtocolMessage.ProtocolID
  public var request: [UInt8]
  public var response: [UInt8]
}

/// The host TSM for one TEE-IO device (PCIe 6.x §11, SEMANTICS.md §8): connect (SPDM session,
/// certificates, measurements, IDE keys on the device through IDE_KM and on the root port directly,
/// stream enable), then per TDI bind to a guest → lock → fetch and keep the report → start on the
/// guest's accept → stop → unbind, and disconnect (which stops and unbinds every TDI first).
///
/// Failure policy: an SPDM or transport failure inside the session may have desynchronised the
/// session's sequence numbers or left the device mid-request, so the TSM tears the session down
/// (its end of the stream too) and refuses further work with ENOTCONN until a fresh `connect`,
/// which restarts the SPDM connection (ending the device's old sessions, so locked TDIs go to
/// ERROR on the device) and stops every TDI that is not CONFIG_UNLOCKED. A TDISP_ERROR is a
/// well-formed refusal and leaves the session up.
public final class HostTSM<Transport: TSMTransport> {
  public let configuration: TSMDeviceConfiguration
  public let rootPort: IDERootPort
  public private(set) var driver: SPDMRequesterDriver<Transport>
  public private(set) var connection: TSMConnection?
  /// The error that tore the last connection down, until the next connect.
  public private(set) var failure: TSMError?
  /// The SPDM session in use, from KEY_EXCHANGE until teardown (set before `connection`, which
  /// summarises a connect that completed).
  public private(set) var session: UInt32?
  /// The key set the stream uses.
  public private(set) var keySet: IDEKeySet?
  /// What GET_TDISP_CAPABILITIES said on this connection.
  public private(set) var tdispCapabilities: TDISPCapabilities?
  public private(set) var interfaces: [TDISPInterfaceID: TSMInterface]
  /// Every IDE_KM and TDISP exchange, decrypted, in order.
  public private(set) var messages: [TSMMessageRecord] = []
  /// GET_DEVICE_INTERFACE_REPORT requests the TSM makes for one report before giving up: enough for
  /// a 64 KiB report in 64-byte portions.
  public static var maximumReportPortions: Int { 1024 }
  /// Whether the SPDM requester keeps each session's secrets (``sessionSecrets``) so a capture of
  /// this TSM's DOE traffic can be decrypted (`--keys`). Off by default; set it before `connect`.
  public var recordsSessionSecrets = false {
    didSet { driver.requester.recordsSessionSecrets = recordsSessionSecrets }
  }
  /// With ``recordsSessionSecrets``, the secrets of every SPDM session this TSM began, in order,
  /// across reconnects (each connect starts a fresh requester): see ``SPDMSessionSecrets``.
  public var sessionSecrets: [SPDMSessionSecrets] { earlierSessionSecrets + driver.requester.sessionSecrets }
  /// Secrets kept by the requesters of earlier connects.
  private var earlierSessionSecrets: [SPDMSessionSecrets] = []
  /// Called synchronously as ``connect()`` starts and passes each step.
  public var onConnectEvent: ((TSMConnectEvent) -> Void)?
  private let policy: SPDMRequesterPolicy
  private let entropy: any EntropySource

  public init(
    configuration: TSMDeviceConfiguration, transport: Transport, rootPort: IDERootPort,
    policy: SPDMRequesterPolicy, entropy: any EntropySource
  ) {
    self.configuration = configuration
    self.rootPort = rootPort
    self.policy = policy
    self.entropy = entropy
    driver = Self.freshDriver(policy: policy, entropy: entropy, transport: transport)
    interfaces = Dictionary(
      uniqueKeysWithValues: configuration.interfaces.map {
        let id = TDISPInterfaceID(requesterID: $0.rawValue)
        return (id, TSMInterface(interfaceID: id))
      })
  }

  private static func freshDriver(
    policy: SPDMRequesterPolicy, entropy: any EntropySource, transport: Transport
  ) -> SPDMRequesterDriver<Transport> {
    var requester = SPDMRequester(policy: policy, entropy: entropy)
    // DOE pads every object to a DW.
    requester.allowsTransportPadding = true
    requester.securedRecordFormat = transport.securedRecordFormat
    return SPDMRequesterDriver(requester: requester, transport: transport)
  }

  public var transport: Transport {
    get { driver.transport }
    set { driver.transport = newValue }
  }

  public var isConnected: Bool { session != nil }

  public func interface(_ function: RequesterID) -> TSMInterface? {
    interfaces[TDISPInterfaceID(requesterID: function.rawValue)]
  }

  // MARK: Connect and disconnect

  /// Establishes trust in the device and keys its link (SEMANTICS.md §8, "connect"):
  /// 1. DOE Abort, then DOE discovery: the mailbox must offer SPDM and secured SPDM (PCIe 6.x §6.31);
  /// 2. GET_VERSION / CAPABILITIES / ALGORITHMS (which ends any session the device still holds),
  ///    the certificate chain verified to a trust anchor, signed measurements checked against the
  ///    policy's reference values;
  /// 3. KEY_EXCHANGE / FINISH;
  /// 4. TDISP version and capabilities;
  /// 5. IDE_KM QUERY, KEY_PROG for all six sub-streams of a key set on the device, the same keys
  ///    (directions swapped) into the root port, K_SET_GO on both ends: the stream is SECURE;
  /// 6. every TDI not in CONFIG_UNLOCKED (left over from a failed connection) is stopped.
  @discardableResult
  public func connect() throws(TSMError) -> TSMConnection {
    guard session == nil else { throw TSMError(.EISCONN, .alreadyConnected) }
    var transport = driver.transport
    transport.reset()
    earlierSessionSecrets += driver.requester.sessionSecrets
    driver = Self.freshDriver(policy: policy, entropy: entropy, transport: transport)
    driver.requester.recordsSessionSecrets = recordsSessionSecrets
    failure = nil
    _ = rootPort.clear(streamID: configuration.streamID)
    let protocols: [DOEProtocol]
    let algorithms: SPDMNegotiatedAlgorithms
    let chain: [X509Certificate]
    let measurements: MeasurementsResponse
    let sessionID: UInt32
    let event = onConnectEvent ?? { _ in }
    do {
      event(.starting(.doeDiscovery))
      protocols = try driver.transport.discoverProtocols()
      guard protocols.contains(.spdm), protocols.contains(.securedSPDM) else {
        throw TSMError(.EIO, .missingProtocols(protocols))
      }
      event(.discovered(protocols))
      event(.starting(.vca))
      algorithms = try driver.initializeConnection()
      event(.negotiated(algorithms))
      event(.starting(.certificateChain))
      chain = try driver.retrieveCertificateChain()
      event(.certificateChainVerified(chain, anchor: driver.requester.trustAnchor))
      event(.starting(.measurements))
      measurements = try driver.measurements(signed: true)
      event(.measurementsVerified(measurements))
      event(.starting(.session))
      sessionID = try driver.startSession(summaryType: .all)
      event(.sessionEstablished(sessionID))
    } catch let error as TSMError {
      failure = error
      throw error
    } catch let error as SPDMRequesterError {
      throw fail(.spdm(error))
    } catch {
      throw fail(TSMError(.EIO, .unexpectedResponse("\(error)")))
    }
    session = sessionID
    do throws(TSMError) {
      let dsm = TDISPInterfaceID(requesterID: configuration.dsmFunction.rawValue)
      event(.starting(.tdispVersion))
      guard case .version(let versions) = try tdisp(dsm, .getVersion, expecting: .tdispVersion),
        versions.contains(.v10)
      else {
        throw fail(
          TSMError(.EIO, .unexpectedResponse("the device offers no TDISP version Cove speaks (1.0)")))
      }
      event(.tdispVersions(versions))
      event(.starting(.tdispCapabilities))
      guard
        case .capabilities(let capabilities) = try tdisp(
          dsm, .getCapabilities(tsmCapabilities: 0), expecting: .tdispCapabilities)
      else { throw fail(TSMError(.EIO, .unexpectedResponse("GET_TDISP_CAPABILITIES"))) }
      event(.tdispCapabilities(capabilities))
      var ideQuery: IDEKMQueryResponse?
      switch configuration.ide {
      case .required:
        event(.starting(.ideQuery))
        let answer = try query()
        event(.ideQueried(answer))
        event(.starting(.ideKeyProgramming))
        // Cove keys a selective stream (the one every TDI locks on): a port without one cannot
        // carry it, whatever Link IDE it has. The answer is well-formed, only unusable: a refusal,
        // not a protocol failure, so the session is ended (END_SESSION) rather than torn down.
        guard answer.capability.selectiveStreamCount > 0 else {
          throw TSMError(
            .EIO,
            .ideKeyProgramming(
              "the device has no Selective IDE stream: QUERY_RESP for port 0 has IDE Capability \(answer.capability.hexDescription) (Selective IDE Streams Supported is 0\(answer.capability.linkIDESupported ? ", Link IDE only" : ", no Link IDE either")), so selective stream \(configuration.streamID) cannot be keyed; for a link without IDE use --ide off"
            ))
        }
        ideQuery = answer
        try programStream(keySet: .k0)
        event(.ideStreamSecure(streamID: configuration.streamID, keySet: .k0))
      case .off:
        event(.ideSkipped)
      }
      event(.starting(.interfaceStates))
      var stopped: [TDISPInterfaceID] = []
      for id in interfaces.keys.sorted(by: { $0.functionID < $1.functionID }) {
        event(.checkingInterface(id))
        guard
          case .deviceInterfaceState(let state) = try tdisp(
            id, .getDeviceInterfaceState, expecting: .deviceInterfaceState)
        else { throw fail(TSMError(.EIO, .unexpectedResponse("GET_DEVICE_INTERFACE_STATE"))) }
        if state != .configUnlocked {
          _ = try tdisp(id, .stopInterface, expecting: .stopInterface)
          stopped.append(id)
          event(.interfaceStopped(id, was: state))
        }
        interfaces[id]?.state = .unlocked
        interfaces[id]?.report = nil
        interfaces[id]?.startNonce = nil
      }
      event(.interfacesUnlocked(interfaces.count))
      tdispCapabilities = capabilities
      connection = TSMConnection(
        doeProtocols: protocols, algorithms: algorithms, certificateChain: chain, measurements: measurements,
        sessionID: sessionID, tdispVersions: versions, tdispCapabilities: capabilities, ideQuery: ideQuery,
        keySet: self.keySet, stoppedInterfaces: stopped)
      return connection!
    } catch {
      // A refusal (not a transport failure) still leaves a session open: end it, the connect failed.
      // The refusal stays the reported cause even if ending the session fails too.
      if session != nil { try? endSessionQuietly() }
      failure = error
      throw error
    }
  }

  /// Stops and unbinds every TDI, stops the stream's keys on both ends, and ends the session.
  /// After a failure there is no session to use: the TSM forgets its state and unbinds (the next
  /// connect stops whatever the device still has locked). If a STOP is refused while the session is
  /// up, the disconnect stops there and throws: TDIs that are still locked keep their owner, so no
  /// other guest can take them.
  public func disconnect() throws(TSMError) {
    guard session != nil else {
      failure = nil
      for id in interfaces.keys {
        interfaces[id]?.owner = nil
        if interfaces[id]?.state != .unlocked { interfaces[id]?.state = .unknown }
      }
      return
    }
    for id in interfaces.keys.sorted(by: { $0.functionID < $1.functionID }) {
      if interfaces[id]?.state != .unlocked { try stopInterface(id) }
      interfaces[id]?.owner = nil
    }
    if let keySet {
      for slot in IDEKeySlotID.all(in: keySet) {
        let stop = IDEKMKeySetCommand.stop(
          streamID: configuration.streamID, subStream: slot.keySubStream, portIndex: 0)
        let ack = try ideKM(stop.encode())
        guard (try? IDEKMKeySetCommand(parsing: ack)) == stop.acknowledgement else {
          throw fail(TSMError(.EIO, .ideKeyProgramming("K_SET_STOP \(slot) not acknowledged")))
        }
      }
    }
    rootPort.clear(streamID: configuration.streamID)
    try endSessionQuietly()
  }

  private func endSessionQuietly() throws(TSMError) {
    guard let sessionID = session else { return }
    session = nil
    connection = nil
    keySet = nil
    rootPort.clear(streamID: configuration.streamID)
    do { try driver.endSession(sessionID: sessionID) } catch { throw fail(.spdm(error)) }
  }

  // MARK: Per-TDI operations (guest requests are checked against the owner)

  /// Assigns the TDI to `guest`. EBUSY when another guest holds it (SEMANTICS.md §8).
  public func bind(_ function: RequesterID, to guest: GuestID) throws(TSMError) {
    let id = try known(function)
    guard session != nil else { throw .notConnected }
    if let owner = interfaces[id]!.owner, owner != guest {
      throw TSMError(.EBUSY, .boundToAnotherGuest(owner))
    }
    interfaces[id]!.owner = guest
  }

  /// LOCK_INTERFACE_REQUEST with the configured flags on the configured stream, then fetches the
  /// interface report in portions and keeps it (PCIe 6.x §11.3.8–§11.3.11). The START nonce the
  /// device returns stays with the TSM. Flags the device said it does not support are refused here
  /// (EOPNOTSUPP) before anything is sent; a report the TSM cannot accept undoes the lock.
  @discardableResult
  public func lock(_ function: RequesterID, for guest: GuestID) throws(TSMError) -> TSMInterfaceReport {
    let id = try owned(function, by: guest)
    guard session != nil else { throw .notConnected }
    guard interfaces[id]!.state == .unlocked else {
      throw TSMError(.EINVAL, .invalidState("LOCK needs an unlocked TDI, it is \(interfaces[id]!.state)"))
    }
    let unsupported = configuration.lockFlags.subtracting(
      tdispCapabilities?.lockInterfaceFlagsSupported ?? [])
    guard unsupported.isEmpty else {
      throw TSMError(
        .EOPNOTSUPP,
        .invalidState("the device does not support lock flags 0x\(String(unsupported.rawValue, radix: 16))"))
    }
    let parameters = TDISPLockInterfaceParameters(
      flags: configuration.lockFlags, defaultStreamID: configuration.streamID,
      mmioReportingOffset: configuration.mmioReportingOffset)
    guard
      case .lockInterface(let nonce) = try changeState(
        id, .lockInterface(parameters), expecting: .lockInterface)
    else { throw fail(TSMError(.EIO, .unexpectedResponse("LOCK_INTERFACE"))) }
    interfaces[id]!.state = .locked
    interfaces[id]!.startNonce = nonce
    do {
      let report = try fetchReport(id)
      interfaces[id]!.report = report
      return report
    } catch {
      // No report the TSM accepts, no TDI a guest could accept: undo the lock while the session is
      // up (a failing STOP tears the session down, and the next connect stops the TDI).
      if session != nil { try? stopInterface(id) }
      throw error
    }
  }

  /// START_INTERFACE_REQUEST with the nonce LOCK returned (the guest's accept): the TDI is in RUN.
  /// Only a TDI whose report the TSM fetched and kept can be started.
  public func start(_ function: RequesterID, for guest: GuestID) throws(TSMError) {
    let id = try owned(function, by: guest)
    guard session != nil else { throw .notConnected }
    guard interfaces[id]!.state == .locked, interfaces[id]!.report != nil,
      let nonce = interfaces[id]!.startNonce
    else {
      throw TSMError(.EINVAL, .invalidState("START needs a locked TDI, it is \(interfaces[id]!.state)"))
    }
    _ = try changeState(id, .startInterface(nonce: nonce), expecting: .startInterface)
    interfaces[id]!.startNonce = nil
    interfaces[id]!.state = .run
  }

  /// STOP_INTERFACE_REQUEST: back to CONFIG_UNLOCKED, report and nonce forgotten.
  public func stop(_ function: RequesterID, for guest: GuestID) throws(TSMError) {
    let id = try owned(function, by: guest)
    guard session != nil else { throw .notConnected }
    try stopInterface(id)
  }

  /// Releases the TDI from `guest`, stopping it first if it is not unlocked.
  public func unbind(_ function: RequesterID, from guest: GuestID) throws(TSMError) {
    let id = try owned(function, by: guest)
    if interfaces[id]!.state != .unlocked, session != nil { try stopInterface(id) }
    interfaces[id]!.owner = nil
  }

  /// The TDI's state as the device reports it (GET_DEVICE_INTERFACE_STATE).
  public func deviceState(_ function: RequesterID) throws(TSMError) -> TDIState {
    let id = try known(function)
    guard
      case .deviceInterfaceState(let state) = try tdisp(
        id, .getDeviceInterfaceState, expecting: .deviceInterfaceState)
    else { throw TSMError(.EIO, .unexpectedResponse("GET_DEVICE_INTERFACE_STATE")) }
    return state
  }

  /// Whether the TDI can do trusted DMA now: bound, in RUN on the device (asked, not assumed), and its
  /// default stream SECURE at the root port.
  public func isReadyForTrustedDMA(_ function: RequesterID) throws(TSMError) -> Bool {
    let id = try known(function)
    guard interfaces[id]!.owner != nil, interfaces[id]!.state == .run else { return false }
    return try deviceState(function) == .run && rootPort.state(of: configuration.streamID).isSecure
  }

  /// Evidence for the TDI's guest: the certificate chain, signed measurements over the guest's
  /// 32-byte nonce (in the session, so the device signs what the guest asked for), the report kept
  /// at LOCK with its digest, and the TDI's state as the device reports it now. Only for a TDI owned
  /// by `guest` that is locked or running on the device.
  public func evidence(for function: RequesterID, guest: GuestID, nonce: [UInt8]) throws(TSMError)
    -> TDIEvidence
  {
    let id = try owned(function, by: guest)
    guard let sessionID = session else { throw .notConnected }
    guard let report = interfaces[id]!.report, [.locked, .run].contains(interfaces[id]!.state) else {
      throw TSMError(.EINVAL, .invalidState("evidence needs a locked TDI, it is \(interfaces[id]!.state)"))
    }
    guard nonce.count == 32 else { throw TSMError(.EINVAL, .invalidState("the nonce must be 32 bytes")) }
    let deviceState = try deviceState(function)
    guard deviceState == .configLocked || deviceState == .run else {
      throw TSMError(.EINVAL, .invalidState("evidence needs a locked TDI, the device says \(deviceState)"))
    }
    let measurements: MeasurementsResponse
    do { measurements = try driver.measurements(signed: true, sessionID: sessionID, nonce: nonce) } catch {
      throw fail(.spdm(error))
    }
    guard let signed = driver.requester.lastSignedMeasurements, signed.nonce == nonce else {
      throw fail(TSMError(.EIO, .unexpectedResponse("signed measurements missing")))
    }
    return TDIEvidence(
      interfaceID: id, certificateChain: driver.requester.certificateChain, measurements: measurements,
      signedMeasurements: signed, report: report, state: deviceState)
  }

  /// IDE key refresh (PCIe 6.x §6.33.4): the other key set is programmed on both ends and set to
  /// GO; the stream switches to it and stays SECURE throughout.
  public func refreshKeys() throws(TSMError) {
    guard session != nil else { throw .notConnected }
    guard let current = keySet else {
      throw TSMError(.EINVAL, .invalidState("no IDE stream is keyed on this connection (ide: off)"))
    }
    try programStream(keySet: current.other)
  }

  // MARK: Internals

  private func known(_ function: RequesterID) throws(TSMError) -> TDISPInterfaceID {
    let id = TDISPInterfaceID(requesterID: function.rawValue)
    guard interfaces[id] != nil else { throw TSMError(.ENODEV, .unknownInterface(id)) }
    return id
  }

  private func owned(_ function: RequesterID, by guest: GuestID) throws(TSMError) -> TDISPInterfaceID {
    let id = try known(function)
    guard let owner = interfaces[id]!.owner else {
      throw TSMError(.EINVAL, .invalidState("TDI \(id) is not bound"))
    }
    guard owner == guest else { throw TSMError(.EPERM, .notOwner(guest)) }
    return id
  }

  private func stopInterface(_ id: TDISPInterfaceID) throws(TSMError) {
    _ = try changeState(id, .stopInterface, expecting: .stopInterface)
    interfaces[id]!.state = .unlocked
    interfaces[id]!.report = nil
    interfaces[id]!.startNonce = nil
  }

  /// A request that changes the TDI's state. Until the answer arrives the TSM cannot tell whether
  /// the device acted, so the TDI is UNKNOWN; a refusal (TDISP_ERROR, session still up) restores
  /// what it was, anything else tore the session down and leaves it UNKNOWN for the next connect.
  private func changeState(
    _ id: TDISPInterfaceID, _ body: TDISPRequest.Body, expecting code: TDISPResponseCode
  ) throws(TSMError) -> TDISPResponse.Body {
    let previous = interfaces[id]!.state
    interfaces[id]!.state = .unknown
    do {
      return try tdisp(id, body, expecting: code)
    } catch {
      if case .device = error.reason { interfaces[id]!.state = previous }
      throw error
    }
  }

  /// Reads the whole report: OFFSET advances by each PORTION_LENGTH until REMAINDER_LENGTH is 0
  /// (§11.3.10). The first REMAINDER_LENGTH fixes the total; a device that changes its mind, sends
  /// an empty portion or more than was asked is refused.
  private func fetchReport(_ id: TDISPInterfaceID) throws(TSMError) -> TSMInterfaceReport {
    var bytes: [UInt8] = []
    var total: Int?
    var portions = 0
    while true {
      let length = configuration.reportPortionLength
      // A device that answers in slivers is refused rather than followed for 64 Ki exchanges.
      guard portions < Self.maximumReportPortions else {
        throw fail(TSMError(.EIO, .unexpectedResponse("report not complete after \(portions) portions")))
      }
      guard
        case .deviceInterfaceReport(let portion) = try tdisp(
          id, .getDeviceInterfaceReport(offset: UInt16(bytes.count), length: length),
          expecting: .deviceInterfaceReport)
      else { throw fail(TSMError(.EIO, .unexpectedResponse("DEVICE_INTERFACE_REPORT"))) }
      portions += 1
      guard !portion.portion.isEmpty, portion.portion.count <= Int(length) else {
        throw fail(
          TSMError(
            .EIO, .unexpectedResponse("report portion of \(portion.portion.count) bytes for \(length)")))
      }
      bytes += portion.portion
      let expected = total ?? bytes.count + Int(portion.remainderLength)
      total = expected
      // The whole report must have a u16 OFFSET for every byte (§11.3.10).
      guard expected <= TDISPDeviceInterfaceReport.maximumSize else {
        throw fail(TSMError(.EIO, .unexpectedResponse("report of \(expected) bytes, over 65535")))
      }
      guard bytes.count + Int(portion.remainderLength) == expected else {
        throw fail(TSMError(.EIO, .unexpectedResponse("REMAINDER_LENGTH inconsistent with earlier portions")))
      }
      if portion.remainderLength == 0 { break }
    }
    let report: TDISPDeviceInterfaceReport
    do { report = try TDISPDeviceInterfaceReport(parsing: bytes) } catch {
      // Well-formed TDISP carrying a malformed report: the device is refused, the session kept.
      throw TSMError(.EIO, .unexpectedResponse("interface report malformed: \(error)"))
    }
    let hash = driver.requester.algorithms?.hash ?? .sha384
    return TSMInterfaceReport(bytes: bytes, report: report, digest: hash.hash(bytes), portions: portions)
  }

  /// QUERY for port 0. The answer is decoded accepting an all-zero surplus after its register
  /// blocks (see ``IDEKMQueryResponse``: DMTF's sample device sends one); the caller learns of it from
  /// `zeroSurplus`. Anything else malformed, or an answer for another port, fails the connect with
  /// what exactly was wrong.
  private func query() throws(TSMError) -> IDEKMQueryResponse {
    let response = try ideKM(IDEKMQuery(portIndex: 0).encode())
    let answer: IDEKMQueryResponse
    do { answer = try IDEKMQueryResponse(parsing: response, allowingZeroSurplus: true) } catch {
      throw fail(
        TSMError(.EIO, .ideKeyProgramming("QUERY_RESP (\(response.count) bytes) malformed: \(error)")))
    }
    guard answer.portIndex == 0 else {
      throw fail(
        TSMError(.EIO, .ideKeyProgramming("QUERY_RESP is for port \(answer.portIndex), asked for port 0")))
    }
    return answer
  }

  /// KEY_PROG ×6 and K_SET_GO ×6 on the device, the matching keys into the root port (the device's
  /// receive keys are the root port's transmit keys and the other way round), GO on the root port.
  private func programStream(keySet: IDEKeySet) throws(TSMError) {
    let stream = configuration.streamID
    var keys: [IDEKeySlotID: IDEKey] = [:]
    for slot in IDEKeySlotID.all(in: keySet) {
      keys[slot] = IDEKey(aes256: entropy.bytes(count: IDEKey.byteCount))
    }
    let ifv: [UInt8] = [0, 0, 0, 0, 1, 0, 0, 0]
    for slot in IDEKeySlotID.all(in: keySet) {
      let program = IDEKMKeyProgram(
        streamID: stream, subStream: slot.keySubStream, portIndex: 0, key: keys[slot]!, initialFieldValue: ifv
      )
      let response = try ideKM(program.encode())
      guard let ack = try? IDEKMKeyProgramAck(parsing: response) else {
        throw fail(TSMError(.EIO, .ideKeyProgramming("KP_ACK malformed")))
      }
      guard ack.streamID == stream, ack.subStream == slot.keySubStream, ack.portIndex == 0 else {
        throw fail(TSMError(.EIO, .ideKeyProgramming("KP_ACK for another slot")))
      }
      guard ack.status == .success else {
        throw fail(TSMError(.EIO, .ideKeyProgramming("KEY_PROG \(slot) refused: status \(ack.status)")))
      }
      do {
        try rootPort.program(streamID: stream, slot: slot.opposite, key: keys[slot]!, initialFieldValue: ifv)
      } catch {
        throw fail(TSMError(.EIO, .ideKeyProgramming("root port refused \(slot.opposite): \(error)")))
      }
    }
    for slot in IDEKeySlotID.all(in: keySet) {
      let go = IDEKMKeySetCommand.go(streamID: stream, subStream: slot.keySubStream, portIndex: 0)
      guard (try? IDEKMKeySetCommand(parsing: try ideKM(go.encode()))) == go.acknowledgement else {
        throw fail(TSMError(.EIO, .ideKeyProgramming("K_SET_GO \(slot) not acknowledged")))
      }
      rootPort.go(streamID: stream, slot: slot.opposite)
    }
    guard rootPort.state(of: stream) == .secure(keySet) else {
      throw fail(TSMError(.EIO, .ideKeyProgramming("root port stream \(stream) not SECURE on \(keySet)")))
    }
    self.keySet = keySet
    connection?.keySet = keySet
  }

  private func ideKM(_ message: [UInt8]) throws(TSMError) -> [UInt8] {
    try exchange(.ideKM, message)
  }

  /// One TDISP request; TDISP_ERROR becomes `.device` (EIO; the session stays up), a response with
  /// another code or for another interface is refused.
  private func tdisp(
    _ id: TDISPInterfaceID, _ body: TDISPRequest.Body, expecting code: TDISPResponseCode
  ) throws(TSMError) -> TDISPResponse.Body {
    let bytes = try exchange(.tdisp, TDISPRequest(interfaceID: id, body: body).encode())
    let response: TDISPResponse
    do { response = try TDISPResponse(parsing: bytes) } catch {
      throw fail(TSMError(.EIO, .unexpectedResponse("TDISP response malformed: \(error)")))
    }
    // A response about another interface, in another version, or of another kind comes from a
    // device that does not follow the protocol: nothing it says is trusted, the session is torn down.
    guard response.interfaceID == id, response.version == .v10 else {
      throw fail(
        TSMError(
          .EIO,
          .unexpectedResponse("TDISP \(response.version) response for \(response.interfaceID), asked \(id)")))
    }
    if case .error(let error) = response.body { throw TSMError(.EIO, .device(error.code, data: error.data)) }
    guard response.body.code == code else {
      throw fail(TSMError(.EIO, .unexpectedResponse("\(response.body.code) for \(id), expected \(code)")))
    }
    return response.body
  }

  /// One vendor-defined exchange inside the session. Any SPDM failure tears the session down.
  private func exchange(_ protocolID: PCISIGProtocolMessage.ProtocolID, _ message: [UInt8]) throws(TSMError)
    -> [UInt8]
  {
    guard let sessionID = session else { throw .notConnected }
    let response: VendorDefinedResponse
    do {
      response = try driver.vendorDefined(
        standardID: PCISIGProtocolMessage.standardID, vendorID: PCISIGProtocolMessage.vendorID,
        payload: PCISIGProtocolMessage(protocolID: protocolID, message: message).payload, sessionID: sessionID
      )
    } catch {
      throw fail(.spdm(error))
    }
    guard let answer = try? PCISIGProtocolMessage(response), answer.protocolID == protocolID else {
      throw fail(TSMError(.EIO, .unexpectedResponse("vendor-defined response is not \(protocolID)")))
    }
    messages.append(TSMMessageRecord(protocolID: protocolID, request: message, response: answer.message))
    return answer.message
  }

  /// Tears the connection down after `error`: no session, nothing keyed at the root port, every TDI
  /// that was not unlocked in an unknown state.
  private func fail(_ error: TSMError) -> TSMError {
    // The first failure is the cause; a later one while tearing down is not.
    if session != nil || failure == nil { failure = error }
    session = nil
    connection = nil
    keySet = nil
    rootPort.clear(streamID: configuration.streamID)
    for id in interfaces.keys where interfaces[id]!.state != .unlocked {
      interfaces[id]!.state = .unknown
      interfaces[id]!.startNonce = nil
    }
    return error
  }
}

extension IDEKeySlotID {
  /// The root port's slot for the key the device holds in this one: the same key set and
  /// sub-stream, the other direction (what one end transmits with, the other receives with).
  var opposite: IDEKeySlotID {
    IDEKeySlotID(
      keySet: keySet, direction: direction == .receive ? .transmit : .receive, subStream: subStream)
  }
}

extension TDIEvidence {
  /// The evidence as it crosses to the guest (GuestABI): raw bytes the guest checks itself.
  public func crossingToGuest(mmioReportingOffset: UInt64) -> DeviceEvidence {
    DeviceEvidence(
      certificateChain: certificateChain.map(\.der), measurementsResponse: measurements.encode(),
      signedMeasurements: signedMeasurements, interfaceReport: report.bytes, reportDigest: report.digest,
      tdiState: state, mmioReportingOffset: mmioReportingOffset)
  }
}
