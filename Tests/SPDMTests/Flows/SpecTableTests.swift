import CoveCrypto
import Foundation
import SPDM
import Testing

/// Rows of the machine-readable tables in specs/, one test case per row.
enum SpecTable {
  static func rows(_ name: String) -> [[String]] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
    let text = (try? String(contentsOf: root.appendingPathComponent("specs/\(name)"), encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map {
      $0.split(separator: "\t").map(String.init)
    }
  }

  static func byte(_ text: String) -> UInt8 { UInt8(text.dropFirst(2), radix: 16)! }
}

@Suite struct SpecTableTests {
  static let requestRows = SpecTable.rows("spdm-request-codes.tsv")
  static let errorRows = SpecTable.rows("spdm-error-codes.tsv")

  @Test func tablesAreLoaded() {
    #expect(Self.requestRows.count == 22)
    #expect(Self.errorRows.count == 21)
  }

  @Test(arguments: requestRows)
  func requestCodeRow(_ row: [String]) throws {
    let request = SpecTable.byte(row[0])
    let response = SpecTable.byte(row[2])
    #expect(SPDMRequestCode(rawValue: request).name == row[1])
    #expect(SPDMResponseCode(rawValue: response).name == row[3])
    // DSP0274 §7: a response code is its request code with bit 7 cleared.
    #expect(response == request & 0x7F)
    // The responder either handles the request or says UnsupportedRequest naming the code.
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    let version = try #require(driver.requester.version)
    guard
      case .plain(let answer)? = driver.transport.responder.respond(
        to: .plain([version.rawValue, request, 0, 0]))
    else {
      Issue.record("no answer to \(row[1])")
      return
    }
    let unsupported =
      (try? ErrorResponse(parsing: answer)).map {
        $0.errorCode == .unsupportedRequest && $0.errorData == request
      } ?? false
    #expect(unsupported == (row[4] == "unsupported"), "\(row[1]) should be \(row[4])")
  }

  @Test(arguments: errorRows)
  func errorCodeRow(_ row: [String]) {
    #expect(SPDMErrorCode(rawValue: SpecTable.byte(row[0])).name == row[1])
  }
}
