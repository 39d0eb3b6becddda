import CoveCrypto
import TDISP
import Testing

@Suite struct TDITests {
  let context = TDIRequestContext()

  func lock(_ tdi: inout TDI) -> [UInt8] {
    let response = tdi.handle(Sample.request(.lockInterface(Sample.lockParameters)), context: context)
    guard case .lockInterface(let nonce) = response.body else {
      Issue.record("lock failed: \(response)")
      return []
    }
    return nonce
  }

  @Test func nonceComesFromInjectedEntropy() {
    var tdi = Sample.tdi(seed: 42)
    let nonce = lock(&tdi)
    #expect(nonce == SeededEntropy(seed: 42).bytes(count: 32))
    #expect(tdi.hasStartNonce)
    #expect(tdi.lockParameters == Sample.lockParameters)
  }

  @Test func wrongNonceKeepsTheTDILockedAndTheNonceValid() {
    var tdi = Sample.tdi()
    let nonce = lock(&tdi)
    var wrong = nonce
    wrong[0] ^= 0x80
    #expect(
      tdi.handle(Sample.request(.startInterface(nonce: wrong)), context: context).error?.code == .invalidNonce
    )
    #expect(tdi.state == .configLocked)
    #expect(
      tdi.handle(Sample.request(.startInterface(nonce: nonce)), context: context).code == .startInterface)
    #expect(tdi.state == .run)
    #expect(!tdi.hasStartNonce)
  }

  @Test func nonceIsSingleUseAcrossRelock() {
    var tdi = Sample.tdi()
    let first = lock(&tdi)
    _ = tdi.handle(Sample.request(.startInterface(nonce: first)), context: context)
    #expect(tdi.handle(Sample.request(.stopInterface), context: context).code == .stopInterface)
    let second = lock(&tdi)
    #expect(first != second)
    #expect(
      tdi.handle(Sample.request(.startInterface(nonce: first)), context: context).error?.code == .invalidNonce
    )
    #expect(
      tdi.handle(Sample.request(.startInterface(nonce: second)), context: context).code == .startInterface)
  }

  @Test func nonceDestroyedWhenLockedTDIEntersError() {
    var tdi = Sample.tdi()
    let nonce = lock(&tdi)
    tdi.enterError(because: .ideStreamInsecure)
    #expect(!tdi.hasStartNonce)
    _ = tdi.handle(Sample.request(.stopInterface), context: context)
    _ = lock(&tdi)
    #expect(
      tdi.handle(Sample.request(.startInterface(nonce: nonce)), context: context).error?.code == .invalidNonce
    )
  }

  @Test func reportIsServedInPortionsWithTheReportingOffset() throws {
    var tdi = Sample.tdi(portion: 20)
    _ = lock(&tdi)
    var expected = Sample.report
    for index in expected.mmioRanges.indices {
      expected.mmioRanges[index].firstPage += Sample.reportingOffset
    }
    let whole = expected.encode()
    #expect(whole.count == 20 + 3 * 16 + 3)
    var collected: [UInt8] = []
    var offset = 0
    while true {
      let response = tdi.handle(
        Sample.request(.getDeviceInterfaceReport(offset: UInt16(offset), length: 0xFFFF)), context: context)
      guard case .deviceInterfaceReport(let portion) = response.body else {
        Issue.record("\(response)")
        return
      }
      #expect(portion.portion.count <= 20)
      collected += portion.portion
      offset += portion.portion.count
      #expect(Int(portion.remainderLength) == whole.count - offset)
      if portion.remainderLength == 0 { break }
    }
    #expect(collected == whole)
    #expect(try TDISPDeviceInterfaceReport(parsing: collected) == expected)
    // A LENGTH smaller than the device's buffer is honoured.
    let small = tdi.handle(Sample.request(.getDeviceInterfaceReport(offset: 4, length: 3)), context: context)
    #expect(
      small.body
        == .deviceInterfaceReport(
          TDISPReportPortion(portion: Array(whole[4..<7]), remainderLength: UInt16(whole.count - 7))))
  }

  @Test func stopScrubsEverything() {
    var tdi = Sample.tdi()
    let nonce = lock(&tdi)
    _ = tdi.handle(Sample.request(.startInterface(nonce: nonce)), context: context)
    _ = tdi.handle(Sample.request(.bindP2PStream(streamID: 4)), context: context)
    #expect(tdi.boundP2PStreams == [4])
    tdi.enterError(because: .poisonedTLP)
    #expect(tdi.state == .error)
    #expect(tdi.handle(Sample.request(.stopInterface), context: context).code == .stopInterface)
    #expect(tdi.state == .configUnlocked)
    #expect(tdi.lockParameters == nil)
    #expect(tdi.boundP2PStreams.isEmpty)
    #expect(
      tdi.handle(Sample.request(.getDeviceInterfaceReport(offset: 0, length: 16)), context: context).error?
        .code
        == .invalidInterfaceState)
  }

  @Test func stopWhenUnlockedIsANoOpUnlessCompat() {
    var tdi = Sample.tdi()
    #expect(tdi.handle(Sample.request(.stopInterface), context: context).code == .stopInterface)
    tdi.compatibility = .referenceEmulators
    #expect(
      tdi.handle(Sample.request(.stopInterface), context: context).error?.code == .invalidInterfaceState)
    #expect(tdi.state == .configUnlocked)
  }

  @Test func setMMIOAttributeUpdatesOnlyUpdatableRanges() {
    var tdi = Sample.tdi()
    let nonce = lock(&tdi)
    _ = tdi.handle(Sample.request(.startInterface(nonce: nonce)), context: context)
    var range = Sample.report.mmioRanges[2]
    range.firstPage += Sample.reportingOffset
    range.attributes = [.isNonTEEMemory]
    #expect(tdi.handle(Sample.request(.setMMIOAttribute(range)), context: context).code == .setMMIOAttribute)
    #expect(tdi.report.mmioRanges[2].attributes == [.isMemoryAttributeUpdatable, .isNonTEEMemory])
    range.attributes = []
    _ = tdi.handle(Sample.request(.setMMIOAttribute(range)), context: context)
    #expect(tdi.report.mmioRanges[2].attributes == [.isMemoryAttributeUpdatable])
    // Without the reporting offset the range is not one the report named.
    range.firstPage = Sample.report.mmioRanges[2].firstPage
    #expect(
      tdi.handle(Sample.request(.setMMIOAttribute(range)), context: context).error?.code == .invalidRequest)
  }

  @Test func unsupportedRequestsCarryTheCode() {
    var tdi = Sample.tdi()
    let unknown = tdi.handle(
      Sample.request(.unknown(TDISPRequestCode(rawValue: 0x8C), payload: [])), context: context)
    #expect(unknown.error == TDISPErrorResponse(.unsupportedRequest, data: 0x8C))
    // A request the DSM leaves out of REQ_MSGS_SUPPORTED is unsupported too.
    var limited = TDI(
      interfaceID: Sample.interfaceID,
      capabilities: TDISPCapabilities(
        supportedRequests: TDISPRequestCode.allKnown.filter { $0 != .bindP2PStream },
        lockInterfaceFlagsSupported: Sample.allFlags, deviceAddressWidth: 52),
      report: Sample.report, entropy: SeededEntropy(seed: 1))
    #expect(
      limited.handle(Sample.request(.bindP2PStream(streamID: 1)), context: context).error
        == TDISPErrorResponse(.unsupportedRequest, data: 0x88))
  }

  @Test func responsesEchoTheInterfaceAndAnswerVersion() {
    var tdi = Sample.tdi()
    let response = tdi.handle(
      Sample.request(.getVersion, version: TDISPVersion(rawValue: 0x20)), context: context)
    #expect(response.body == .version([.v10]))
    #expect(response.version == .v10)
    #expect(response.interfaceID == Sample.interfaceID)
    let wrong = tdi.handle(
      Sample.request(.getDeviceInterfaceState, id: Sample.otherInterface), context: context)
    #expect(wrong.interfaceID == Sample.otherInterface)
    #expect(wrong.error?.code == .invalidInterface)
    #expect(
      tdi.handle(Sample.request(.getCapabilities(tsmCapabilities: 0)), context: context).body
        == .capabilities(Sample.capabilities))
  }

  @Test func tZeroIsOnlyAnErrorInRun() {
    #expect(!TDIErrorEvent.tZeroRequestInRun.entersError(from: .configLocked))
    #expect(TDIErrorEvent.tZeroRequestInRun.entersError(from: .run))
    #expect(
      TDIErrorEvent.allCases.allSatisfy {
        !$0.entersError(from: .configUnlocked) && !$0.entersError(from: .error)
      })
  }
}
