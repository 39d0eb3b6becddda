import CoveCrypto
import CoveWire
import HostPlatform
import IDEKM
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// The host TSM driving a two-function TEE-IO device through the DSM's DOE mailbox in configuration
/// space (SEMANTICS.md §8; PCIe 6.x §11, §6.33).
@Suite struct HostTSMTests {
  /// Hand-derived from PROTOCOLS.md "TDISP 1.0": the 16-byte header (0x10, 0x83, rsvd u16,
  /// FUNCTION_ID 0x00000301 LE, 8 rsvd) and the 20-byte LOCK payload (flags 0x0001 NO_FW_UPDATE,
  /// stream 1, rsvd, MMIO reporting offset 0, P2P mask 0).
  static let lockRequestPF1: [UInt8] =
    [0x10, 0x83, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00] + [UInt8](repeating: 0, count: 8)
    + [0x01, 0x00, 0x01, 0x00] + [UInt8](repeating: 0, count: 16)

  /// 03:00.1's report as its configuration implies it (PROTOCOLS.md "Report"): INTERFACE_INFO 0x0007
  /// (no FW update while locked, DMA without and with PASID), rsvd, MSI-X control 0, LNR 0, TPH 0, one range:
  /// BAR0 at 0xE0200000 (after PF0's BAR0 64 KiB and 1 MiB-aligned BAR2), 16 pages, no attributes,
  /// RANGE_ID 0; no device-specific data.
  static let reportPF1: [UInt8] =
    [0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]
    + [0x00, 0x00, 0x20, 0xE0, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    + [0x00, 0x00, 0x00, 0x00]

  @Test func connectLockReportStartStopDisconnectOnTwoFunctions() throws {
    let rig = try TEEIORig()
    let tsm = rig.tsm

    // connect: DOE discovery, SPDM with a verified chain and measurements, a session, keys on both
    // ends of stream 1, every TDI checked to be CONFIG_UNLOCKED.
    let connection = try tsm.connect()
    #expect(connection.doeProtocols == [.discovery, .spdm, .securedSPDM])
    #expect(connection.certificateChain.count == 3)
    #expect(connection.measurements.blocks.map(\.index) == [1, 2])
    #expect(connection.tdispVersions == [.v10])
    #expect(connection.keySet == .k0)
    #expect(connection.stoppedInterfaces.isEmpty)
    #expect(connection.ideQuery?.maxPortIndex == 0)
    #expect(rig.link.isSecure(streamID: 1))
    #expect(rig.link.keysAgree(streamID: 1))
    #expect(rig.device.doe.responder.sessions.count == 1)
    // IDE_KM: QUERY, 6 KEY_PROG, 6 K_SET_GO; TDISP: VERSION, CAPABILITIES, 2 × STATE.
    #expect(tsm.messages.filter { $0.protocolID == .ideKM }.count == 13)
    #expect(tsm.messages.filter { $0.protocolID == .tdisp }.count == 4)

    // bind and lock 03:00.1: exact LOCK bytes, a 32-byte nonce, CONFIG_LOCKED on the device.
    try tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)
    let report = try tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    let lockExchange = tsm.messages.first { $0.request.count > 1 && $0.request[1] == 0x83 }
    #expect(lockExchange?.request == Self.lockRequestPF1)
    #expect(lockExchange?.response.count == 16 + 32)
    #expect(Array(lockExchange?.response.prefix(2) ?? []) == [0x10, 0x03])
    #expect(rig.state(TEEIORig.pf1) == .configLocked)
    #expect(rig.state(TEEIORig.pf0) == .configUnlocked)

    // The report, fetched and kept: its exact bytes and their SHA-384 digest.
    #expect(report.bytes == Self.reportPF1)
    #expect(report.digest == HashAlgorithm.sha384.hash(Self.reportPF1))
    #expect(report.portions == 1)
    #expect(tsm.interface(TEEIORig.pf1)?.report == report)

    // start on the guest's accept: the START request carries LOCK's nonce; RUN on the device.
    let nonce = Array(lockExchange!.response.suffix(32))
    try tsm.start(TEEIORig.pf1, for: TEEIORig.guest)
    let startExchange = tsm.messages.last!
    #expect(Array(startExchange.request.prefix(2)) == [0x10, 0x86])
    #expect(Array(startExchange.request.suffix(32)) == nonce)
    #expect(rig.state(TEEIORig.pf1) == .run)
    #expect(rig.device.tdi(TEEIORig.pf1)?.hasStartNonce == false)

    // DMA-ready: bound, RUN as the device reports it, stream SECURE on both ends with matching keys,
    // and a T=1 request to the TDI's MMIO is served.
    #expect(try tsm.isReadyForTrustedDMA(TEEIORig.pf1))
    #expect(try !tsm.isReadyForTrustedDMA(TEEIORig.pf0))
    let mmio = TLP(
      requesterID: rig.rootPort.requesterID, address: 0xE020_0000, tBit: true, kind: .memoryRead(length: 4))
    #expect(rig.device.receive(mmio, at: TEEIORig.pf1) == .completed)
    #expect(rig.state(TEEIORig.pf1) == .run)

    // stop: CONFIG_UNLOCKED, the report forgotten.
    try tsm.stop(TEEIORig.pf1, for: TEEIORig.guest)
    #expect(rig.state(TEEIORig.pf1) == .configUnlocked)
    #expect(tsm.interface(TEEIORig.pf1)?.state == .unlocked)
    #expect(tsm.interface(TEEIORig.pf1)?.report == nil)

    // disconnect: K_SET_STOP on the device, keys cleared at the root port, session ended, unbound.
    try tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    try tsm.disconnect()
    #expect(rig.state(TEEIORig.pf1) == .configUnlocked)
    #expect(tsm.interface(TEEIORig.pf1)?.owner == nil)
    #expect(!tsm.isConnected)
    #expect(rig.device.doe.responder.sessions.count == 0)
    #expect(rig.device.dsm.ideKM.ports[0].endpoint.state(of: 1) == .insecure)
    #expect(rig.rootPort.state(of: 1) == .insecure)
    #expect(rig.rootPort.endpoint.streams[1]?.slots.isEmpty == true)
  }

  @Test func bothFunctionsRunSideBySideAndDisconnectStopsThem() throws {
    let rig = try TEEIORig()
    try rig.run(TEEIORig.pf0)
    try rig.run(TEEIORig.pf1)
    #expect(rig.state(TEEIORig.pf0) == .run)
    #expect(rig.state(TEEIORig.pf1) == .run)
    try rig.tsm.disconnect()
    #expect(rig.state(TEEIORig.pf0) == .configUnlocked)
    #expect(rig.state(TEEIORig.pf1) == .configUnlocked)
  }

  @Test func guestRequestsAreCheckedAgainstTheOwner() throws {
    let rig = try TEEIORig()
    let tsm = rig.tsm
    #expect(throws: TSMError(.ENOTCONN, .notConnected)) { try tsm.bind(TEEIORig.pf1, to: TEEIORig.guest) }
    try tsm.connect()
    #expect(throws: TSMError(.EISCONN, .alreadyConnected)) { try tsm.connect() }
    let unknown = BDF(bus: 3, device: 0, function: 5).requesterID
    #expect(throws: TSMError(.ENODEV, .unknownInterface(TDISPInterfaceID(requesterID: unknown.rawValue)))) {
      try tsm.bind(unknown, to: TEEIORig.guest)
    }
    #expect(throws: TSMError(.EINVAL, .invalidState("TDI 03:00.1 is not bound"))) {
      try tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    }
    try tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)
    try tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)  // the same guest again: no change
    #expect(throws: TSMError(.EBUSY, .boundToAnotherGuest(TEEIORig.guest))) {
      try tsm.bind(TEEIORig.pf1, to: TEEIORig.otherGuest)
    }
    for operation: (RequesterID, GuestID) throws -> Void in [
      { try tsm.lock($0, for: $1) }, { try tsm.start($0, for: $1) }, { try tsm.stop($0, for: $1) },
      { try tsm.unbind($0, from: $1) },
      { _ = try tsm.evidence(for: $0, guest: $1, nonce: [UInt8](repeating: 1, count: 32)) },
    ] {
      #expect(throws: TSMError(.EPERM, .notOwner(TEEIORig.otherGuest))) {
        try operation(TEEIORig.pf1, TEEIORig.otherGuest)
      }
    }
    #expect(rig.state(TEEIORig.pf1) == .configUnlocked)
    // START before LOCK, evidence before LOCK: EINVAL, nothing sent.
    let sent = tsm.messages.count
    #expect(throws: TSMError(.EINVAL, .invalidState("START needs a locked TDI, it is UNLOCKED"))) {
      try tsm.start(TEEIORig.pf1, for: TEEIORig.guest)
    }
    #expect(tsm.messages.count == sent)
    try tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    #expect(throws: TSMError(.EINVAL, .invalidState("LOCK needs an unlocked TDI, it is LOCKED"))) {
      try tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    }
    // Unbinding a locked TDI stops it first; then another guest may take it.
    try tsm.unbind(TEEIORig.pf1, from: TEEIORig.guest)
    #expect(rig.state(TEEIORig.pf1) == .configUnlocked)
    try tsm.bind(TEEIORig.pf1, to: TEEIORig.otherGuest)
  }

  @Test func evidenceCarriesTheGuestsNonceAndVerifiesWithoutTheTSM() throws {
    let rig = try TEEIORig()
    try rig.run(TEEIORig.pf1)
    let nonce = (0..<32).map { UInt8($0 * 7 & 0xFF) }
    let evidence = try rig.tsm.evidence(for: TEEIORig.pf1, guest: TEEIORig.guest, nonce: nonce)
    #expect(evidence.signedMeasurements.nonce == nonce)
    #expect(evidence.state == .run)
    // A guest checks the signature with the leaf key of the chain it was given.
    let leaf = try #require(try evidence.certificateChain.last?.publicKey())
    #expect(evidence.signedMeasurements.verify(with: leaf))
    var tampered = evidence.signedMeasurements
    tampered.signedTranscript[tampered.signedTranscript.count - 1] ^= 1
    #expect(!tampered.verify(with: leaf))
    #expect(evidence.report.digest == HashAlgorithm.sha384.hash(evidence.report.bytes))
    #expect(evidence.measurements.blocks.count == 2)
    #expect(throws: TSMError(.EINVAL, .invalidState("the nonce must be 32 bytes"))) {
      _ = try rig.tsm.evidence(for: TEEIORig.pf1, guest: TEEIORig.guest, nonce: [1, 2, 3])
    }
  }

  @Test func keyRefreshSwitchesKeySetsWithoutLeavingSecure() throws {
    let rig = try TEEIORig()
    try rig.run(TEEIORig.pf1)
    try rig.tsm.refreshKeys()
    #expect(rig.tsm.keySet == .k1)
    #expect(rig.device.dsm.ideKM.ports[0].endpoint.state(of: 1) == .secure(.k1))
    #expect(rig.rootPort.state(of: 1) == .secure(.k1))
    #expect(rig.link.keysAgree(streamID: 1))
    #expect(rig.state(TEEIORig.pf1) == .run)
    try rig.tsm.refreshKeys()
    #expect(rig.rootPort.state(of: 1) == .secure(.k0))
    #expect(rig.state(TEEIORig.pf1) == .run)
  }

  @Test func anUntrustedDeviceIsNotKeyed() throws {
    let rig = try TEEIORig(trustAnchorSeed: 99)
    let error = try #require(throws: TSMError.self) { try rig.tsm.connect() }
    guard case .spdm(.certificateChain(let chainError)) = error.reason else {
      Issue.record("expected a certificate chain rejection, got \(error)")
      return
    }
    #expect(chainError.code == .untrustedRoot)
    #expect(error.errno == .EIO)
    #expect(!rig.tsm.isConnected)
    #expect(rig.tsm.failure == error)
    // Refused before KEY_EXCHANGE: no session on the device, no IDE_KM or TDISP message sent.
    #expect(rig.device.doe.responder.sessions.isEmpty)
    #expect(rig.tsm.messages.isEmpty)
    #expect(rig.tsm.transport.requestHistory.allSatisfy { $0.type != DOEDataObjectType.securedSPDM.rawValue })
  }

  @Test func lockFlagsTheDeviceDoesNotSupportAreRefusedBeforeSending() throws {
    var template = TEEIODeviceTemplate()
    template.lockFlags = [.allRequestRedirect]
    let rig = try TEEIORig(template: template)
    try rig.tsm.connect()
    try rig.tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)
    let sent = rig.tsm.messages.count
    #expect(throws: TSMError(.EOPNOTSUPP, .invalidState("the device does not support lock flags 0x10"))) {
      try rig.tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    }
    #expect(rig.tsm.messages.count == sent)
    #expect(rig.tsm.isConnected)
    #expect(rig.tsm.interface(TEEIORig.pf1)?.state == .unlocked)
  }

  @Test func theReportIsShiftedByTheMMIOReportingOffset() throws {
    let rig = try TEEIORig { $0.mmioReportingOffset = 0x1_0000_0000 }
    try rig.tsm.connect()
    try rig.tsm.bind(TEEIORig.pf1, to: TEEIORig.guest)
    let report = try rig.tsm.lock(TEEIORig.pf1, for: TEEIORig.guest)
    #expect(report.report.mmioRanges.map(\.firstPage) == [0x1_E020_0000])
    // The LOCK request carried the offset (bytes 20…27 of the message, little-endian).
    let lock = try #require(rig.tsm.messages.first { $0.request.count > 1 && $0.request[1] == 0x83 })
    #expect(Array(lock.request[20..<28]) == [0, 0, 0, 0, 1, 0, 0, 0])
  }

  @Test func evidenceIsRefusedOnceTheDeviceSaysError() throws {
    let rig = try TEEIORig()
    try rig.run(TEEIORig.pf1)
    rig.device.configWrite(TEEIORig.pf1, offset: PCIHeaderRegister.command, size: 2, value: 0x0002)
    #expect(throws: TSMError(.EINVAL, .invalidState("evidence needs a locked TDI, the device says ERROR"))) {
      _ = try rig.tsm.evidence(
        for: TEEIORig.pf1, guest: TEEIORig.guest, nonce: [UInt8](repeating: 9, count: 32))
    }
    #expect(rig.tsm.isConnected)
  }
}
