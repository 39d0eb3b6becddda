import CoveCrypto
import CoveWire
import PCIe
import SPDM
import Testing

/// SPDM through the DOE mailbox registers, DW by DW, as a host driver moves it (PCIe 6.x §6.30).
@Suite struct DOETransportTests {
  func doeDriver(_ device: TestDevice) -> SPDMRequesterDriver<DOERequesterTransport> {
    var requester = SPDMRequester(policy: device.policy(), entropy: SeededEntropy(seed: 21))
    requester.allowsTransportPadding = true
    return SPDMRequesterDriver(
      requester: requester,
      transport: DOERequesterTransport(endpoint: SPDMDOEEndpoint(responder: device.responder())))
  }

  @Test func discoveryListsDiscoverySPDMAndSecuredSPDM() throws {
    var driver = doeDriver(try TestDevice())
    #expect(try driver.transport.discoverProtocols() == [.discovery, .spdm, .securedSPDM])
  }

  @Test func wholeFlowDripFedThroughTheMailbox() throws {
    var driver = doeDriver(try TestDevice())
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    try driver.challenge()
    _ = try driver.measurements()
    let sessionID = try driver.startSession()
    _ = try driver.measurements(signed: true, sessionID: sessionID)
    try driver.keyUpdate(sessionID: sessionID, operation: .updateAllKeys)
    try driver.endSession(sessionID: sessionID)
    let objects = driver.transport.objects
    #expect(objects.count % 2 == 0)
    // Every object a driver moved re-parses from its DWs; every response answered its request type.
    for pair in stride(from: 0, to: objects.count, by: 2) {
      #expect(try DOEDataObject(parsing: objects[pair].encode()) == objects[pair])
      #expect(objects[pair].type == objects[pair + 1].type)
    }
    // The register traffic is at least one write per request DW plus a read and a write per
    // response DW: nothing bypassed the mailbox.
    let dwords = objects.reduce(0) { $0 + $1.lengthInDWords }
    #expect(driver.transport.registerAccesses >= dwords * 2)
    #expect(driver.transport.endpoint.objectsServed == objects.count / 2)
    #expect(driver.transport.endpoint.responder.errorsSent.isEmpty)
  }

  @Test func keyExchangeIsDWPaddedAndTheResponderTrimsIt() throws {
    var driver = doeDriver(try TestDevice())
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    _ = try driver.startSession()
    let keyExchange = try #require(
      driver.transport.objects.first { $0.type == DOEDataObjectType.spdm.rawValue && $0.payload[1] == 0xE4 })
    // 38-byte fixed part + 96-byte P-384 point + 2 + 16 bytes of opaque data = 154, padded to 156.
    #expect(keyExchange.payload.count == 156)
    #expect(keyExchange.payload.suffix(2) == [0, 0])
  }

  @Test func paddingIsOnlyToleratedUnderDOE() throws {
    let device = try TestDevice()
    var endpoint = SPDMDOEEndpoint(responder: device.responder())
    endpoint.responder.allowsTransportPadding = false
    var requester = SPDMRequester(policy: device.policy(), entropy: SeededEntropy(seed: 21))
    requester.allowsTransportPadding = true
    var driver = SPDMRequesterDriver(
      requester: requester, transport: DOERequesterTransport(endpoint: endpoint))
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    #expect(throws: SPDMRequesterError.responderError(.invalidRequest, data: 0)) { try driver.startSession() }
  }

  @Test func unknownObjectTypeSetsErrorAndTheMailboxRecovers() throws {
    var driver = doeDriver(try TestDevice())
    #expect(throws: SPDMRequesterError.self) {
      try driver.transport.exchange(object: DOEDataObject(vendorID: 1, type: 0x7F, payload: [1, 2, 3, 4]))
    }
    #expect(driver.transport.endpoint.objectsRefused == 1)
    try driver.initializeConnection()
  }

  @Test func abortMidRequestDiscardsThePartialObject() throws {
    var driver = doeDriver(try TestDevice())
    let writes = DOEMailboxDriver.requestWrites(DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0, 0]))
    // Two DWs of three, then ABORT: nothing is delivered.
    for access in writes.prefix(2) {
      driver.transport.endpoint.writeRegister(offset: access.offset, value: access.value)
    }
    driver.transport.endpoint.writeRegister(
      offset: DOEMailboxDriver.abort.offset, value: DOEMailboxDriver.abort.value)
    #expect(driver.transport.endpoint.objectsServed == 0)
    #expect(driver.transport.endpoint.readRegister(offset: DOERegister.status) == 0)
    try driver.initializeConnection()
    #expect(driver.transport.endpoint.objectsServed == 3)
  }
}

/// The same flow over whole DOE objects and over the DW-by-DW mailbox produces the same sequence of
/// objects, byte for byte: both sides draw from seeded entropy and ECDSA signatures are
/// deterministic (RFC 6979), so nothing in the exchange depends on the transport.
@Suite struct WholeObjectVersusMailboxTests {
  func run<T: SPDMRequesterTransport>(_ transport: T) throws -> SPDMRequesterDriver<T> {
    let device = try TestDevice()
    var requester = SPDMRequester(policy: device.policy(), entropy: SeededEntropy(seed: 21))
    requester.allowsTransportPadding = true
    var driver = SPDMRequesterDriver(requester: requester, transport: transport)
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    try driver.challenge()
    _ = try driver.measurements()
    let sessionID = try driver.startSession()
    try driver.keyUpdate(sessionID: sessionID, operation: .updateKey)
    try driver.endSession(sessionID: sessionID)
    return driver
  }

  @Test func sameObjectsEitherWay() throws {
    let device = try TestDevice()
    let whole = try run(WholeObjectDOETransport(endpoint: SPDMDOEEndpoint(responder: device.responder())))
    let mailbox = try run(DOERequesterTransport(endpoint: SPDMDOEEndpoint(responder: device.responder())))
    let shape = { (objects: [DOEDataObject]) in objects.map { "\($0.type):\($0.payload.count)" } }
    #expect(shape(whole.transport.objects) == shape(mailbox.transport.objects))
    #expect(whole.transport.objects == mailbox.transport.objects)
    // VCA (3), GET_DIGESTS, 2 certificate portions, CHALLENGE, GET_MEASUREMENTS, KEY_EXCHANGE, FINISH,
    // KEY_UPDATE, VerifyNewKey, END_SESSION: 13 exchanges.
    #expect(whole.transport.objects.count == 2 * 13)
  }
}
