import CoveCrypto
import CoveWire
public import SPDM

/// The `--keys FILE` format: the secrets of each SPDM session of a run, so its capture can be
/// decrypted (by `TraceDecoder`, or by DMTF spdm-dump from the `dhe` value). Text, one session per
/// line, like a TLS key log:
///
///     # comment (from '#' at the start of a line, leading blanks allowed); blank lines are ignored
///     session 0xfffefffe version 1.2 hash sha384 dhe <hex> req_hs_secret <hex> rsp_hs_secret <hex> req_app_secret <hex> rsp_app_secret <hex>
///
/// - A line is `session <ID>` followed by `name value` pairs separated by blanks, in any order, each
///   name once. `<ID>` is `0x` and 1–8 hex digits (RspSessionID << 16 | ReqSessionID, as DSP0277
///   records carry it).
/// - `version` is the SPDM version, `1.0`…`1.3`; `hash` is `sha256` or `sha384` (what Cove negotiates).
/// - `dhe` is the ECDH shared secret (DSP0274 §12: the X coordinate; spdm-dump's `--dhe_secret`),
///   1–512 bytes (512: FFDHE4096, the largest DHE group).
/// - `req_hs_secret`/`rsp_hs_secret` are the handshake secrets ("req/rsp hs data" with TH1) and
///   `req_app_secret`/`rsp_app_secret` the data secrets as established ("req/rsp app data" with TH2),
///   each exactly one hash long. The app pair is absent for a session whose FINISH did not complete.
/// - Hex digits in either case. Sessions keep their order: a session ID may repeat (a reconnect can
///   draw the same IDs), and a decoder takes them in order.
///
/// Why secrets rather than keys: see ``SPDMSessionSecrets``.
public enum SessionKeysFile {
  /// Longest line accepted: a full line with a 512-byte `dhe` is about 1.5 KB.
  public static let maximumLineLength = 4096

  public static let header = """
    # Cove SPDM session secrets, one line per session (format: SessionKeysFile.swift). They decrypt
    # the DOE capture of the same run, with Cove's TraceDecoder or with DMTF spdm-dump:
    # `spdm_dump -r CAPTURE -d --dhe_secret <the session's dhe>`. Keep this file as secret as the sessions.
    """

  public static func write(_ sessions: [SPDMSessionSecrets]) -> String {
    var lines = [header]
    for session in sessions {
      var fields = [
        "session 0x" + hex8(session.sessionID), "version \(session.version)",
        "hash \(hashName(session.hash))", "dhe " + Hex.encode(session.sharedSecret),
        "req_hs_secret " + Hex.encode(session.handshake.requester),
        "rsp_hs_secret " + Hex.encode(session.handshake.responder),
      ]
      if let data = session.data {
        fields.append("req_app_secret " + Hex.encode(data.requester))
        fields.append("rsp_app_secret " + Hex.encode(data.responder))
      }
      lines.append(fields.joined(separator: " "))
    }
    return lines.joined(separator: "\n") + "\n"
  }

  public static func parse(_ text: String) throws(SessionKeysFileError) -> [SPDMSessionSecrets] {
    var sessions: [SPDMSessionSecrets] = []
    var lineNumber = 0
    for rawLine in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
      lineNumber += 1
      guard rawLine.count <= maximumLineLength else {
        throw SessionKeysFileError(.lineTooLong, line: lineNumber, "\(rawLine.count) bytes")
      }
      let tokens = rawLine.split(whereSeparator: { [9, 13, 32].contains($0) }).map {
        String(decoding: $0, as: UTF8.self)
      }
      guard let first = tokens.first, !first.hasPrefix("#") else { continue }
      sessions.append(try parseSession(tokens, line: lineNumber))
    }
    return sessions
  }

  private static let names = [
    "session", "version", "hash", "dhe", "req_hs_secret", "rsp_hs_secret", "req_app_secret", "rsp_app_secret",
  ]

  private static func parseSession(_ tokens: [String], line: Int) throws(SessionKeysFileError)
    -> SPDMSessionSecrets
  {
    guard tokens[0] == "session" else {
      throw SessionKeysFileError(.unknownRecord, line: line, "'\(tokens[0].prefix(32))' (expected 'session')")
    }
    guard tokens.count % 2 == 0 else {
      throw SessionKeysFileError(.missingValue, line: line, "'\(tokens[tokens.count - 1].prefix(32))'")
    }
    var values: [String: String] = [:]
    for pair in stride(from: 0, to: tokens.count, by: 2) {
      let name = tokens[pair]
      guard names.contains(name) else {
        throw SessionKeysFileError(.unknownField, line: line, "'\(name.prefix(32))'")
      }
      guard values[name] == nil else { throw SessionKeysFileError(.duplicateField, line: line, name) }
      values[name] = tokens[pair + 1]
    }
    func required(_ name: String) throws(SessionKeysFileError) -> String {
      guard let value = values[name] else { throw SessionKeysFileError(.missingField, line: line, name) }
      return value
    }
    func invalid(_ name: String, _ why: String) -> SessionKeysFileError {
      SessionKeysFileError(.invalidValue, line: line, "\(name): \(why)")
    }
    let idText = try required("session")
    guard idText.hasPrefix("0x") || idText.hasPrefix("0X"), (3...10).contains(idText.utf8.count),
      idText.utf8.dropFirst(2).allSatisfy(isHexDigit), let sessionID = UInt32(idText.dropFirst(2), radix: 16)
    else { throw invalid("session", "'\(idText.prefix(32))' is not 0x and 1-8 hex digits") }
    let versionText = try required("version")
    guard let version = versionNames[versionText] else {
      throw invalid("version", "'\(versionText.prefix(32))' (1.0, 1.1, 1.2 or 1.3)")
    }
    let hashText = try required("hash")
    guard let hash = hashNames[hashText] else {
      throw invalid("hash", "'\(hashText.prefix(32))' (sha256 or sha384)")
    }
    func bytes(_ name: String, count: ClosedRange<Int>) throws(SessionKeysFileError) -> [UInt8] {
      let text = try required(name)
      // Hex.decode would skip '_'; only digits are hex here.
      guard text.utf8.allSatisfy(isHexDigit), let value = Hex.decode(text) else {
        throw invalid(name, "not an even number of hex digits")
      }
      guard count.contains(value.count) else {
        throw invalid(
          name,
          "\(value.count) bytes, expected "
            + (count.lowerBound == count.upperBound
              ? "\(count.lowerBound)" : "\(count.lowerBound)-\(count.upperBound)"))
      }
      return value
    }
    let secret = hash.digestSize...hash.digestSize
    let sharedSecret = try bytes("dhe", count: 1...512)
    let handshake = SPDMSecretPair(
      requester: try bytes("req_hs_secret", count: secret),
      responder: try bytes("rsp_hs_secret", count: secret))
    var data: SPDMSecretPair?
    switch (values["req_app_secret"] != nil, values["rsp_app_secret"] != nil) {
    case (true, true):
      data = SPDMSecretPair(
        requester: try bytes("req_app_secret", count: secret),
        responder: try bytes("rsp_app_secret", count: secret))
    case (false, false): data = nil
    case (true, false): throw SessionKeysFileError(.missingField, line: line, "rsp_app_secret")
    case (false, true): throw SessionKeysFileError(.missingField, line: line, "req_app_secret")
    }
    return SPDMSessionSecrets(
      sessionID: sessionID, version: version, hash: hash, sharedSecret: sharedSecret, handshake: handshake,
      data: data)
  }

  private static let versionNames: [String: SPDMVersion] = [
    "1.0": .v10, "1.1": .v11, "1.2": .v12, "1.3": .v13,
  ]
  private static let hashNames: [String: HashAlgorithm] = ["sha256": .sha256, "sha384": .sha384]

  private static func hashName(_ hash: HashAlgorithm) -> String {
    switch hash {
    case .sha256: "sha256"
    case .sha384: "sha384"
    }
  }

  private static func isHexDigit(_ byte: UInt8) -> Bool {
    (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
  }

  private static func hex8(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
  }
}

/// Why a keys file was refused, and on which line (1-based).
public struct SessionKeysFileError: Error, Hashable, Sendable, CustomStringConvertible {
  public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A line that is neither blank, a comment, nor a `session` line.
    public static let unknownRecord = Code(rawValue: "unknown record")
    /// A field name with no value after it.
    public static let missingValue = Code(rawValue: "missing value")
    public static let unknownField = Code(rawValue: "unknown field")
    public static let duplicateField = Code(rawValue: "duplicate field")
    public static let missingField = Code(rawValue: "missing field")
    /// Bad hex, a wrong length, an unknown version or hash.
    public static let invalidValue = Code(rawValue: "invalid value")
    /// Over ``SessionKeysFile/maximumLineLength``.
    public static let lineTooLong = Code(rawValue: "line too long")

    public var description: String { rawValue }
  }

  public var code: Code
  public var line: Int
  public var detail: String

  public init(_ code: Code, line: Int, _ detail: String) {
    self.code = code
    self.line = line
    self.detail = detail
  }

  public var description: String { "keys file line \(line): \(code): \(detail)" }
}
