import CoveCrypto
import CoveScenario
import SPDM
import Testing

@Suite struct SessionKeysFileTests {
  static let session = SPDMSessionSecrets(
    sessionID: 0xFFFE_0001, version: .v12, hash: .sha256, sharedSecret: [UInt8](repeating: 0xAB, count: 32),
    handshake: SPDMSecretPair(
      requester: [UInt8](repeating: 1, count: 32), responder: [UInt8](repeating: 2, count: 32)),
    data: SPDMSecretPair(
      requester: [UInt8](repeating: 3, count: 32), responder: [UInt8](repeating: 4, count: 32)))

  @Test func oneLinePerSessionAfterACommentHeader() throws {
    var unfinished = Self.session
    unfinished.data = nil
    unfinished.version = .v13
    let text = SessionKeysFile.write([Self.session, unfinished])
    let lines = text.split(separator: "\n")
    #expect(lines.count == 5 && lines.prefix(3).allSatisfy { $0.hasPrefix("# ") })
    #expect(
      lines[3]
        == "session 0xfffe0001 version 1.2 hash sha256 dhe \(String(repeating: "ab", count: 32)) req_hs_secret "
        + String(repeating: "01", count: 32) + " rsp_hs_secret " + String(repeating: "02", count: 32)
        + " req_app_secret " + String(repeating: "03", count: 32) + " rsp_app_secret "
        + String(repeating: "04", count: 32))
    #expect(!lines[4].contains("app") && lines[4].contains("version 1.3"))
    #expect(try SessionKeysFile.parse(text) == [Self.session, unfinished])
  }

  @Test func fieldsInAnyOrderCommentsBlankLinesCRLFAndUppercaseHexAreRead() throws {
    let text =
      "\r\n  # a comment\r\n\tsession 0XFFFE0001 hash sha256 version 1.2 rsp_hs_secret "
      + String(repeating: "02", count: 32) + " dhe " + String(repeating: "AB", count: 32) + " req_hs_secret "
      + String(repeating: "01", count: 32) + " rsp_app_secret " + String(repeating: "04", count: 32)
      + " req_app_secret " + String(repeating: "03", count: 32) + "\r\n"
    #expect(try SessionKeysFile.parse(text) == [Self.session])
    #expect(try SessionKeysFile.parse("").isEmpty)
  }

  static let valid = SessionKeysFile.write([session]).split(separator: "\n").last.map(String.init)!

  static let malformed: [(String, SessionKeysFileError.Code)] = [
    ("sesion 0x1", SessionKeysFileError.Code.unknownRecord),
    (valid + " hash", .missingValue),
    (valid + " colour blue", .unknownField),
    (valid + " hash sha256", .duplicateField),
    (valid.replacing(" version 1.2", with: ""), .missingField),
    (valid.replacing(" dhe ", with: " dhe 0"), .invalidValue),
    (valid.replacing("0xfffe0001", with: "0x1fffe0001"), .invalidValue),
    (valid.replacing("0xfffe0001", with: "65534"), .invalidValue),
    (valid.replacing("1.2", with: "1.4"), .invalidValue),
    (valid.replacing("sha256", with: "sha512"), .invalidValue),
    (valid.replacing("sha256", with: "sha384"), .invalidValue),
    (valid.replacing("dhe ab", with: "dhe a_"), .invalidValue),
    (valid.replacing(" rsp_app_secret " + String(repeating: "04", count: 32), with: ""), .missingField),
    ("session " + String(repeating: "x", count: 5000), .lineTooLong),
  ]

  @Test(arguments: malformed)
  func aMalformedLineIsATypedErrorWithItsLineNumber(line: String, code: SessionKeysFileError.Code) {
    #expect(throws: SessionKeysFileError.self) { try SessionKeysFile.parse("# keys\n\n" + line + "\n") }
    do { _ = try SessionKeysFile.parse("# keys\n\n" + line + "\n") } catch {
      #expect(error.code == code && error.line == 3, "\(error)")
    }
  }
}
