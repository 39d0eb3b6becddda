import CoveCrypto
import CoveWire
import Foundation
import SPDM

/// A device identity and responder/requester pair for tests, deterministic per seed.
struct TestDevice {
  static let notBefore: Int64 = 1_735_689_600  // 2025-01-01
  static let checkTime: Int64 = 1_767_225_600  // 2026-01-01

  let pki: TestPKI
  let measurements: [MeasurementBlock]

  init(seed: UInt64 = 7, curve: EllipticCurve = .p384) throws {
    pki = try TestPKI.generate(
      entropy: SeededEntropy(seed: seed), notBefore: Self.notBefore, validityDays: 3650)
    measurements = (1...4).map { index in
      MeasurementBlock(
        index: UInt8(index),
        dmtf: DMTFMeasurement(
          valueType: DMTFMeasurementValueType(rawValue: UInt8(index - 1)), isRawBitStream: false,
          value: HashAlgorithm.sha384.hash(Array("firmware component \(index)".utf8))))
    }
  }

  func responderConfiguration() -> SPDMResponderConfiguration {
    SPDMResponderConfiguration(
      certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: measurements)
  }

  func responder(
    seed: UInt64 = 11, configure: (inout SPDMResponderConfiguration) -> Void = { _ in }
  ) -> SPDMResponder {
    var configuration = responderConfiguration()
    configure(&configuration)
    return SPDMResponder(configuration: configuration, entropy: SeededEntropy(seed: seed))
  }

  func policy(configure: (inout SPDMRequesterPolicy) -> Void = { _ in }) -> SPDMRequesterPolicy {
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = Self.checkTime
    for block in measurements { policy.referenceMeasurements[block.index] = block.dmtf?.value }
    configure(&policy)
    return policy
  }

  func driver(
    policy: SPDMRequesterPolicy? = nil, responder: SPDMResponder? = nil, seed: UInt64 = 13
  ) -> SPDMRequesterDriver<RecordingTransport> {
    SPDMRequesterDriver(
      requester: SPDMRequester(policy: policy ?? self.policy(), entropy: SeededEntropy(seed: seed)),
      transport: RecordingTransport(responder: responder ?? self.responder()))
  }
}

/// Passes messages to a responder in memory, keeping every exchange, and lets a test rewrite a
/// response on the way back (a man in the middle).
struct RecordingTransport: SPDMRequesterTransport {
  var responder: SPDMResponder
  var exchanges: [(request: SPDMTransportMessage, response: SPDMTransportMessage)] = []
  var tamper: ((SPDMTransportMessage, SPDMTransportMessage) -> SPDMTransportMessage)?

  init(responder: SPDMResponder) {
    self.responder = responder
  }

  mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError) -> SPDMTransportMessage {
    guard var response = responder.respond(to: message) else { throw .timeout("no response") }
    if let tamper { response = tamper(message, response) }
    exchanges.append((message, response))
    return response
  }

  /// The plain request/response pair whose request has `code`.
  func plainExchange(code: SPDMRequestCode) -> (request: [UInt8], response: [UInt8])? {
    for exchange in exchanges {
      if case .plain(let request) = exchange.request, request.count > 1, request[1] == code.rawValue,
        case .plain(let response) = exchange.response
      {
        return (request, response)
      }
    }
    return nil
  }
}

/// Runs a Python helper with JSON in and out.
func runPython(script: String, input: [String: String]) throws -> [String: String] {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["python3", script]
  let stdin = Pipe()
  let stdout = Pipe()
  let stderr = Pipe()
  process.standardInput = stdin
  process.standardOutput = stdout
  process.standardError = stderr
  try process.run()
  stdin.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: input))
  try stdin.fileHandleForWriting.close()
  let output = stdout.fileHandleForReading.readDataToEndOfFile()
  let errors = stderr.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  guard process.terminationStatus == 0 else {
    throw PythonFailure(message: String(decoding: errors, as: UTF8.self))
  }
  return try JSONSerialization.jsonObject(with: output) as? [String: String] ?? [:]
}

struct PythonFailure: Error, CustomStringConvertible {
  var message: String
  var description: String { "python helper failed: \(message)" }
}

func fixturePath(_ name: String) -> String {
  Bundle.module.path(forResource: name, ofType: nil, inDirectory: "Fixtures")
    ?? Bundle.module.path(forResource: name, ofType: nil) ?? name
}
