import CoveCrypto
import Foundation
import TDISP
import Testing

/// A sample TDI: requester 01:02.0, every request supported, every lock flag supported, a report with a
/// plain BAR range, an MSI-X range and one attribute-updatable range.
enum Sample {
  static let interfaceID = TDISPInterfaceID(requesterID: 0x0110)
  static let otherInterface = TDISPInterfaceID(requesterID: 0x0111)
  static let allFlags: TDISPLockFlags = [
    .noFirmwareUpdate, .systemCacheLineSize, .lockMSIX, .bindP2P, .allRequestRedirect,
  ]
  static let capabilities = TDISPCapabilities(
    supportedRequests: TDISPRequestCode.allKnown, lockInterfaceFlagsSupported: allFlags,
    deviceAddressWidth: 52)
  static let report = TDISPDeviceInterfaceReport(
    interfaceInfo: [.dmaWithoutPASID],
    mmioRanges: [
      TDISPMMIORange(firstPage: 0xF000_0000, numberOfPages: 4, attributes: [], rangeID: 0),
      TDISPMMIORange(firstPage: 0xF000_4000, numberOfPages: 1, attributes: [.msixTable], rangeID: 1),
      TDISPMMIORange(
        firstPage: 0xF000_8000, numberOfPages: 2, attributes: [.isMemoryAttributeUpdatable], rangeID: 2),
    ],
    deviceSpecificInfo: [1, 2, 3])
  static let reportingOffset: UInt64 = 0x1_0000_0000
  static let lockParameters = TDISPLockInterfaceParameters(
    flags: [.noFirmwareUpdate, .lockMSIX, .bindP2P], defaultStreamID: 1, mmioReportingOffset: reportingOffset)

  static func tdi(seed: UInt64 = 7, compatibility: TDICompatibility = .specification, portion: Int = 4096)
    -> TDI
  {
    TDI(
      interfaceID: interfaceID, capabilities: capabilities, report: report,
      entropy: SeededEntropy(seed: seed),
      compatibility: compatibility, maximumReportPortion: portion)
  }

  static func request(
    _ body: TDISPRequest.Body, version: TDISPVersion = .v10, id: TDISPInterfaceID = interfaceID
  )
    -> TDISPRequest
  { TDISPRequest(version: version, interfaceID: id, body: body) }
}

/// A TDI driven into a state, remembering the nonce its LOCK returned.
struct Driven {
  var tdi: TDI
  var nonce: [UInt8] = [UInt8](repeating: 0, count: 32)
  let context = TDIRequestContext()

  init(to state: TDIState, condition: String = "ok") {
    tdi = Sample.tdi(compatibility: condition == "compatRejectStop" ? .referenceEmulators : .specification)
    guard state != .configUnlocked else { return }
    var parameters = Sample.lockParameters
    if condition == "lockedWithoutBindP2P" { parameters.flags.remove(.bindP2P) }
    let lock = tdi.handle(Sample.request(.lockInterface(parameters)), context: context)
    guard case .lockInterface(let nonce) = lock.body else { preconditionFailure("lock failed: \(lock)") }
    self.nonce = nonce
    switch state {
    case .configLocked, .configUnlocked: break
    case .run:
      _ = tdi.handle(Sample.request(.startInterface(nonce: nonce)), context: context)
      if parameters.flags.contains(.bindP2P) {
        _ = tdi.handle(Sample.request(.bindP2PStream(streamID: 2)), context: context)
      }
    case .error: tdi.enterError(because: .flr)
    }
    precondition(tdi.state == state)
  }

  mutating func send(_ request: String, condition: String) -> TDISPResponse {
    var context = self.context
    var version = TDISPVersion.v10
    var id = Sample.interfaceID
    switch condition {
    case "keysMissing": context.ideKeysReadyForDefaultStream = false
    case "keysOtherSession": context.ideKeysFromThisSession = false
    case "badDeviceConfiguration": context.deviceConfigurationValid = false
    case "wrongInterface": id = Sample.otherInterface
    case "badVersion": version = TDISPVersion(rawValue: 0x20)
    default: break
    }
    let updatable = Sample.report.mmioRanges[2]
    let body: TDISPRequest.Body
    switch request {
    case "GET_TDISP_VERSION": body = .getVersion
    case "GET_TDISP_CAPABILITIES": body = .getCapabilities(tsmCapabilities: 0)
    case "LOCK_INTERFACE_REQUEST":
      var parameters = Sample.lockParameters
      if condition == "unsupportedFlags" { parameters.flags = TDISPLockFlags(rawValue: 0x20) }
      body = .lockInterface(parameters)
    case "GET_DEVICE_INTERFACE_REPORT":
      switch condition {
      case "offsetPastEnd":
        body = .getDeviceInterfaceReport(offset: UInt16(Sample.report.encodedSize), length: 0xFFFF)
      case "zeroLength": body = .getDeviceInterfaceReport(offset: 0, length: 0)
      default: body = .getDeviceInterfaceReport(offset: 0, length: 0xFFFF)
      }
    case "GET_DEVICE_INTERFACE_STATE": body = .getDeviceInterfaceState
    case "START_INTERFACE_REQUEST":
      var nonce = self.nonce
      if condition == "wrongNonce" { nonce[31] ^= 1 }
      body = .startInterface(nonce: nonce)
    case "STOP_INTERFACE_REQUEST": body = .stopInterface
    case "BIND_P2P_STREAM_REQUEST": body = .bindP2PStream(streamID: condition == "alreadyBound" ? 2 : 3)
    case "UNBIND_P2P_STREAM_REQUEST": body = .unbindP2PStream(streamID: condition == "notBound" ? 9 : 2)
    case "SET_MMIO_ATTRIBUTE_REQUEST":
      var range = updatable
      range.firstPage += Sample.reportingOffset
      range.attributes = [.isNonTEEMemory]
      switch condition {
      case "notUpdatable":
        range = Sample.report.mmioRanges[0]
        range.firstPage += Sample.reportingOffset
        range.attributes = [.isNonTEEMemory]
      case "reservedAttribute": range.attributes = [.isNonTEEMemory, .msixTable]
      case "unknownRange": range.rangeID = 9
      default: break
      }
      body = .setMMIOAttribute(range)
    case "VDM_REQUEST":
      body = .vdm(TDISPVendorDefinedMessage(registryID: 0, vendorID: [0x86, 0x80], data: [1]))
    default:
      let code = UInt8(request.dropFirst(2), radix: 16)!
      body = .unknown(TDISPRequestCode(rawValue: code), payload: [])
    }
    return tdi.handle(Sample.request(body, version: version, id: id), context: context)
  }
}

struct StateTableRow: CustomTestStringConvertible, Sendable {
  var state: TDIState
  var request: String
  var condition: String
  var expected: String
  var nextState: TDIState
  var section: String
  var testDescription: String { "\(state) \(request) [\(condition)] → \(expected), \(nextState)" }
}

struct ErrorTriggerRow: CustomTestStringConvertible, Sendable {
  var event: TDIErrorEvent
  var state: TDIState
  var nextState: TDIState
  var testDescription: String { "\(event) in \(state) → \(nextState)" }
}

enum SpecTables {
  /// Repository root: Tests/TDISPTests/<file> is three levels below it.
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  static func rows(_ name: String) -> [[String]] {
    let text =
      (try? String(contentsOf: root.appendingPathComponent("specs/tdisp/\(name)"), encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.dropFirst().map {
      $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
    }
  }

  static let stateTable: [StateTableRow] = rows("state-table.tsv").map {
    StateTableRow(
      state: TDIState(name: $0[0])!, request: $0[1], condition: $0[2], expected: $0[3],
      nextState: TDIState(name: $0[4])!, section: $0[5])
  }

  static let errorTriggers: [ErrorTriggerRow] = rows("error-triggers.tsv").map {
    ErrorTriggerRow(
      event: TDIErrorEvent(rawValue: $0[0])!, state: TDIState(name: $0[1])!, nextState: TDIState(name: $0[2])!
    )
  }
}

@Suite struct TDIStateTableTests {
  @Test func rowCounts() {
    // 4 states × 11 requests + 20 condition rows + 4 unknown-request rows.
    #expect(SpecTables.stateTable.count == 68)
    #expect(SpecTables.stateTable.filter { $0.condition == "ok" && $0.request != "0x8C" }.count == 44)
    // 12 events × 4 states.
    #expect(SpecTables.errorTriggers.count == 48)
    #expect(Set(SpecTables.errorTriggers.map(\.event)) == Set(TDIErrorEvent.allCases))
    #expect(SpecTables.stateTable.allSatisfy { $0.section.contains("§11.") })
  }

  @Test(arguments: SpecTables.stateTable)
  func stateTableRow(_ row: StateTableRow) {
    var driven = Driven(to: row.state, condition: row.condition)
    let response = driven.send(row.request, condition: row.condition)
    if let error = response.error {
      #expect(error.code.name == row.expected, "\(row.section)")
    } else {
      #expect(response.code.name == row.expected, "\(row.section)")
    }
    #expect(driven.tdi.state == row.nextState)
    // The START nonce lives exactly while CONFIG_LOCKED (§11.3.9).
    #expect(driven.tdi.hasStartNonce == (driven.tdi.state == .configLocked))
    // Every response is well formed on the wire.
    #expect((try? TDISPResponse(parsing: response.encode())) == response)
  }

  @Test(arguments: SpecTables.errorTriggers)
  func errorTriggerRow(_ row: ErrorTriggerRow) {
    var driven = Driven(to: row.state)
    driven.tdi.enterError(because: row.event)
    #expect(driven.tdi.state == row.nextState)
    #expect(driven.tdi.hasStartNonce == (driven.tdi.state == .configLocked))
  }
}
