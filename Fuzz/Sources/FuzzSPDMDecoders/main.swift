import CoveCrypto
import CoveWire
// libFuzzer entry point for every SPDM decoder (DSP0274 messages, certificate chains, measurement
// records, DSP0277 opaque data and secured records). The first input byte picks the algorithm sizes
// the size-dependent decoders are given; the rest is the message. A decoder may throw WireError;
// it may not crash, and whatever it accepts must re-encode to something it decodes identically.
import FuzzSupport
import SPDM

runLibFuzzer(fuzzInput)

func fuzzInput(_ input: [UInt8]) {
  guard let selector = input.first else { return }
  let bytes = Array(input.dropFirst())
  let hash = selector & 1 == 0 ? 32 : 48
  let signature = selector & 2 == 0 ? 64 : 96
  let exchange = selector & 4 == 0 ? 64 : 96
  let flag = selector & 8 != 0

  roundTrip(bytes, { b throws(WireError) in try GetVersionRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try VersionResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try GetCapabilitiesRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try CapabilitiesResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try NegotiateAlgorithmsRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try AlgorithmsResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try GetDigestsRequest(parsing: b) }, { $0.encode() })
  roundTrip(
    bytes, { b throws(WireError) in try DigestsResponse(parsing: b, hashSize: hash) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try GetCertificateRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try CertificateResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try ChallengeRequest(parsing: b) }, { $0.encode() })
  roundTrip(
    bytes,
    { b throws(WireError) in
      try ChallengeAuthResponse(
        parsing: b, hashSize: hash, signatureSize: signature, measurementSummaryHashPresent: flag)
    }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try GetMeasurementsRequest(parsing: b) }, { $0.encode() })
  roundTrip(
    bytes,
    { b throws(WireError) in try MeasurementsResponse(parsing: b, signatureSize: flag ? signature : nil) },
    { $0.encode() })
  roundTrip(
    bytes, { b throws(WireError) in try KeyExchangeRequest(parsing: b, exchangeDataSize: exchange) },
    { $0.encode() })
  roundTrip(
    bytes,
    { b throws(WireError) in
      try KeyExchangeResponse(
        parsing: b, exchangeDataSize: exchange, hashSize: hash, signatureSize: signature,
        measurementSummaryHashPresent: flag, responderVerifyDataPresent: selector & 16 != 0)
    }, { $0.encode() })
  roundTrip(
    bytes,
    { b throws(WireError) in
      try FinishRequest(parsing: b, hashSize: hash, signatureSize: flag ? signature : nil)
    },
    { $0.encode() })
  roundTrip(
    bytes, { b throws(WireError) in try FinishResponse(parsing: b, verifyDataSize: flag ? hash : nil) },
    { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try HeartbeatRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try HeartbeatAck(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try KeyUpdateRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try KeyUpdateAck(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try EndSessionRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try EndSessionAck(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try VendorDefinedRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try VendorDefinedResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try ErrorResponse(parsing: b) }, { $0.encode() })
  roundTrip(
    bytes, { b throws(WireError) in try SPDMCertificateChain(parsing: b, hashSize: hash) }, { $0.encode() })
  if let chain = try? SPDMCertificateChain(parsing: bytes, hashSize: hash) {
    _ = try? chain.certificateDERs()
  }
  roundTrip(
    bytes, { b throws(WireError) in try MeasurementBlock.parseRecord(b, count: Int(selector >> 4)) },
    { MeasurementBlock.encodeRecord($0) })
  roundTrip(
    bytes, { b throws(WireError) in try SecuredMessageOpaqueData.parse(b) },
    { SecuredMessageOpaqueData.encode($0) })
  // A secured record under fixed keys: open must fail cleanly or return what was sealed.
  var keys = SPDMTrafficKeys(
    secret: [], key: [UInt8](repeating: 7, count: 32), iv: [UInt8](repeating: 9, count: 12))
  _ = try? SecuredMessage.open(bytes, keys: &keys, allowsPadding: flag)
}
