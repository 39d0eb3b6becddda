import CoveCrypto
// libFuzzer entry point for the SPDM responder's request handling. Each input is a sequence of
// requests (length byte, then bytes) sent to a responder in one of three starting states, chosen by
// the first byte: fresh, after VCA and certificate retrieval, or with an established session, in
// which case requests are sealed with the session's requester keys so the fuzzer reaches in-session
// dispatch. Invariants: no crash; every plain request gets an answer; the responder still answers
// GET_VERSION afterwards (DSP0274: it survives every bad request).
import FuzzSupport
import SPDM

/// Snapshots taken once: the state machines are value types, so each input starts from a copy.
struct Snapshots {
  var fresh: SPDMResponder
  var negotiated: SPDMResponder
  var inSession: SPDMResponder
  var requester: SPDMRequester
  var sessionID: UInt32

  init() {
    // P-256 keeps signing cheap enough for a million runs.
    let pki = try! TestPKI.generate(
      entropy: SeededEntropy(seed: 1), notBefore: 1_735_689_600, deviceCurve: .p256)
    let block = MeasurementBlock(
      index: 1,
      dmtf: DMTFMeasurement(
        valueType: .mutableFirmware, isRawBitStream: false, value: [UInt8](repeating: 0xAB, count: 48)))
    var configuration = SPDMResponderConfiguration(
      certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: [block])
    configuration.dataTransferSize = 256
    fresh = SPDMResponder(configuration: configuration, entropy: SeededEntropy(seed: 2))
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = 1_767_225_600
    policy.baseHashAlgorithms = .sha256
    policy.dheGroups = .secp256r1
    var driver = SPDMRequesterDriver(
      requester: SPDMRequester(policy: policy, entropy: SeededEntropy(seed: 3)),
      transport: DirectSPDMTransport(responder: fresh))
    try! driver.initializeConnection()
    try! driver.retrieveCertificateChain()
    negotiated = driver.transport.responder
    sessionID = try! driver.startSession()
    inSession = driver.transport.responder
    requester = driver.requester
  }
}

// Fuzzing is single-threaded; the snapshots are only ever copied.
nonisolated(unsafe) let snapshots = Snapshots()

runLibFuzzer(fuzzInput)

func fuzzInput(_ input: [UInt8]) {
  guard let mode = input.first else { return }
  var responder: SPDMResponder
  var requester = snapshots.requester
  let secured = mode % 3 == 2
  switch mode % 3 {
  case 0: responder = snapshots.fresh
  case 1: responder = snapshots.negotiated
  default: responder = snapshots.inSession
  }
  responder.allowsTransportPadding = mode & 0x80 != 0
  var index = 1
  // At most 64 requests per input keeps each run short.
  var count = 0
  while index < input.count, count < 64 {
    let length = Int(input[index])
    index += 1
    let end = min(input.count, index + length)
    let request = Array(input[index..<end])
    index = end
    count += 1
    if secured, let record = try? requester.sealSessionRequest(request, sessionID: snapshots.sessionID) {
      _ = responder.respond(to: .secured(record))
    } else {
      precondition(responder.respond(to: .plain(request)) != nil, "a plain request went unanswered")
    }
  }
  guard case .plain(let version)? = responder.respond(to: .plain([0x10, 0x84, 0, 0])), version.count >= 2,
    version[1] == 0x04
  else { preconditionFailure("the responder stopped answering GET_VERSION") }
}
