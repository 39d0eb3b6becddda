import CoveWire
import IDEKM
import SPDM
import TDISP

/// Why a message's fields could not all be read (a codec's complaint, or context the trace lacks).
struct DecodeProblem: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

extension TraceDecoder {
  /// Decodes a message that a JSON trace carries in the clear (kinds `spdm`, `tdisp`, `idekm`). It
  /// never touches the sessions being followed: the same exchange also appears as DOE objects.
  public mutating func decode(
    clearMessage bytes: [UInt8], kind: TraceRecord.Kind, isRequest: Bool, index: Int, time: UInt64
  ) -> DecodedMessage {
    var message = DecodedMessage(
      index: index, time: time, direction: isRequest ? .request : .response, bytes: bytes)
    switch kind {
    case .spdm: describeSPDM(bytes, padded: false, fromCapture: false, into: &message)
    case .tdisp:
      message.protocolKind = .tdisp
      describeTDISP(bytes, into: &message)
    case .idekm:
      message.protocolKind = .ideKM
      describeIDEKM(bytes, into: &message)
    default:
      message.name = kind.rawValue
    }
    return message
  }

  // MARK: SPDM (DSP0274)

  /// Names the SPDM message and reads its key fields with Cove's codecs; a VENDOR_DEFINED carrying a
  /// PCI-SIG protocol is decoded down to TDISP or IDE_KM. `padded`: DOE may have added up to three
  /// zero bytes (``TransportPadding``). `fromCapture`: the message is from the DOE traffic itself, so
  /// a KEY_EXCHANGE_RSP starts its session afresh.
  mutating func describeSPDM(
    _ bytes: [UInt8], padded: Bool, fromCapture: Bool = true, into message: inout DecodedMessage
  ) {
    message.protocolKind = .spdm
    message.bytes = bytes
    guard bytes.count >= 4 else {
      message.name = "SPDM message"
      message.problem = "truncated: \(bytes.count) bytes, the header alone is 4"
      return
    }
    message.name = SPDMMessageCodeName.name(code: bytes[1])
    message.fields = [.init("version", "\(SPDMVersion(rawValue: bytes[0]))")]
    var body = bytes
    do throws(DecodeProblem) {
      try describeSPDMBody(bytes[1], &body, padded: padded, fromCapture: fromCapture, into: &message)
    } catch {
      message.problem = error.description
    }
    // A carried protocol put its own message in `bytes`.
    if message.protocolKind == .spdm { message.bytes = body }
  }

  private func parse<Message>(
    _ body: inout [UInt8], _ padded: Bool, _ decode: ([UInt8]) throws(WireError) -> Message
  ) throws(DecodeProblem) -> Message {
    do { return try TransportPadding.decode(&body, allowsPadding: padded, decode) } catch {
      throw DecodeProblem("\(error)")
    }
  }

  private func known<Value>(_ value: Value?, _ what: String) throws(DecodeProblem) -> Value {
    guard let value else { throw DecodeProblem("\(what) unknown: no ALGORITHMS earlier in the trace") }
    return value
  }

  private mutating func describeSPDMBody(
    _ code: UInt8, _ body: inout [UInt8], padded: Bool, fromCapture: Bool, into message: inout DecodedMessage
  ) throws(DecodeProblem) {
    typealias Field = DecodedMessage.Field
    func hex<Value: FixedWidthInteger>(_ value: Value) -> String { "0x" + TraceDecoder.hex(value) }
    switch code {
    case SPDMRequestCode.getVersion.rawValue:
      _ = try parse(&body, padded) { b throws(WireError) in try GetVersionRequest(parsing: b) }
    case SPDMResponseCode.version.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try VersionResponse(parsing: b) }
      message.fields.append(Field("versions", m.versions.map(\.description).joined(separator: ",")))
    case SPDMRequestCode.getCapabilities.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try GetCapabilitiesRequest(parsing: b) }
      message.fields += [
        Field("ct_exponent", "\(m.ctExponent)"), Field("flags", hex(m.flags.rawValue)),
        Field("data_transfer_size", "\(m.dataTransferSize)"),
        Field("max_spdm_msg_size", "\(m.maxSPDMMessageSize)"),
      ]
    case SPDMResponseCode.capabilities.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try CapabilitiesResponse(parsing: b) }
      message.fields += [
        Field("ct_exponent", "\(m.ctExponent)"), Field("flags", hex(m.flags.rawValue)),
        Field("data_transfer_size", "\(m.dataTransferSize)"),
        Field("max_spdm_msg_size", "\(m.maxSPDMMessageSize)"),
      ]
    case SPDMRequestCode.negotiateAlgorithms.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try NegotiateAlgorithmsRequest(parsing: b) }
      message.fields += [
        Field("base_hash", hex(m.baseHashAlgorithms.rawValue)),
        Field("base_asym", hex(m.baseAsymAlgorithms.rawValue)),
        Field("dhe", hex(m.dheGroups.rawValue)), Field("aead", hex(m.aeadCipherSuites.rawValue)),
      ]
    case SPDMResponseCode.algorithms.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try AlgorithmsResponse(parsing: b) }
      context.hashSize = m.baseHashSelection.hashSize
      context.signatureSize = m.baseAsymSelection.signatureSize
      context.requesterSignatureSize = m.requesterBaseAsymAlgorithm.signatureSize
      context.exchangeDataSize = m.dheGroup.exchangeDataSize
      message.fields += [
        Field("base_hash", hex(m.baseHashSelection.rawValue)),
        Field("base_asym", hex(m.baseAsymSelection.rawValue)),
        Field("dhe", hex(m.dheGroup.rawValue)), Field("aead", hex(m.aeadCipherSuite.rawValue)),
        Field("measurement_hash", hex(m.measurementHashAlgorithm.rawValue)),
      ]
    case SPDMRequestCode.getDigests.rawValue:
      _ = try parse(&body, padded) { b throws(WireError) in try GetDigestsRequest(parsing: b) }
    case SPDMResponseCode.digests.rawValue:
      let hashSize = try known(context.hashSize, "hash size")
      let m = try parse(&body, padded) { b throws(WireError) in
        try DigestsResponse(parsing: b, hashSize: hashSize)
      }
      message.fields += [
        Field("slot_mask", hex(m.provisionedSlotMask)), Field("digests", "\(m.digests.count)"),
      ]
    case SPDMRequestCode.getCertificate.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try GetCertificateRequest(parsing: b) }
      message.fields += [
        Field("slot", "\(m.slotID)"), Field("offset", "\(m.offset)"), Field("length", "\(m.length)"),
      ]
    case SPDMResponseCode.certificate.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try CertificateResponse(parsing: b) }
      message.fields += [
        Field("slot", "\(m.slotID)"), Field("portion_length", "\(m.portion.count)"),
        Field("remainder_length", "\(m.remainderLength)"),
      ]
    case SPDMRequestCode.challenge.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try ChallengeRequest(parsing: b) }
      context.summaryType = m.measurementSummaryHashType
      message.fields += [
        Field("slot", "\(m.slotID)"), Field("summary_hash_type", hex(m.measurementSummaryHashType.rawValue)),
        Field("nonce", Hex.encode(m.nonce)),
      ]
    case SPDMResponseCode.challengeAuth.rawValue:
      let hashSize = try known(context.hashSize, "hash size")
      let signatureSize = try known(context.signatureSize, "signature size")
      let present = context.summaryType.summaryHashPresent
      let m = try parse(&body, padded) { b throws(WireError) in
        try ChallengeAuthResponse(
          parsing: b, hashSize: hashSize, signatureSize: signatureSize, measurementSummaryHashPresent: present
        )
      }
      message.fields += [Field("slot", "\(m.slotID)"), Field("nonce", Hex.encode(m.nonce))]
    case SPDMRequestCode.getMeasurements.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try GetMeasurementsRequest(parsing: b) }
      context.measurementsSigned = m.signatureRequested
      message.fields += [Field("operation", hex(m.operation)), Field("signed", "\(m.signatureRequested)")]
      if let nonce = m.nonce { message.fields.append(Field("nonce", Hex.encode(nonce))) }
    case SPDMResponseCode.measurements.rawValue:
      let signatureSize =
        context.measurementsSigned ? try known(context.signatureSize, "signature size") : nil
      let m = try parse(&body, padded) { b throws(WireError) in
        try MeasurementsResponse(parsing: b, signatureSize: signatureSize)
      }
      message.fields += [
        Field("total_indices", "\(m.totalMeasurementIndices)"),
        Field("block_indices", m.blocks.map { "\($0.index)" }.joined(separator: ",")),
        Field("signed", "\(signatureSize != nil)"),
      ]
    case SPDMRequestCode.keyExchange.rawValue:
      let size = try known(context.exchangeDataSize, "DHE exchange data size")
      let m = try parse(&body, padded) { b throws(WireError) in
        try KeyExchangeRequest(parsing: b, exchangeDataSize: size)
      }
      context.summaryType = m.measurementSummaryHashType
      context.requesterSessionID = m.requesterSessionID
      message.fields += [
        Field("req_session_id", hex(m.requesterSessionID)),
        Field("summary_hash_type", hex(m.measurementSummaryHashType.rawValue)), Field("slot", "\(m.slotID)"),
      ]
    case SPDMResponseCode.keyExchangeRsp.rawValue:
      let (exchange, hash, signature) = (
        try known(context.exchangeDataSize, "DHE exchange data size"),
        try known(context.hashSize, "hash size"),
        try known(context.signatureSize, "signature size")
      )
      let present = context.summaryType.summaryHashPresent
      // ResponderVerifyData is absent only with HANDSHAKE_IN_THE_CLEAR (DSP0274 KEY_EXCHANGE_RSP).
      let m = try parse(&body, padded) { b throws(WireError) in
        do throws(WireError) {
          return try KeyExchangeResponse(
            parsing: b, exchangeDataSize: exchange, hashSize: hash, signatureSize: signature,
            measurementSummaryHashPresent: present, responderVerifyDataPresent: true)
        } catch {
          return try KeyExchangeResponse(
            parsing: b, exchangeDataSize: exchange, hashSize: hash, signatureSize: signature,
            measurementSummaryHashPresent: present, responderVerifyDataPresent: false)
        }
      }
      message.fields.append(Field("rsp_session_id", hex(m.responderSessionID)))
      if let requesterSessionID = context.requesterSessionID {
        // ReqSessionID ‖ RspSessionID on the wire (RspSessionID in the high half of the u32), as Cove
        // and libspdm compose it; a new session forgets the state of both spellings, so captures
        // made before Cove fixed its order still decode.
        let sessionID = UInt32(m.responderSessionID) << 16 | UInt32(requesterSessionID)
        message.fields.append(Field("session_id", hex(sessionID)))
        if fromCapture {
          sessions[sessionID] = nil
          sessions[UInt32(m.responderSessionID) << 16 | UInt32(requesterSessionID)] = nil
        }
      }
      message.fields += [
        Field("mut_auth_requested", hex(m.mutAuthRequested)),
        Field("heartbeat_period", "\(m.heartbeatPeriod)"),
      ]
    case SPDMRequestCode.finish.rawValue:
      let hashSize = try known(context.hashSize, "hash size")
      let signatureSize = context.requesterSignatureSize
      let m = try parse(&body, padded) { b throws(WireError) in
        try FinishRequest(parsing: b, hashSize: hashSize, signatureSize: signatureSize)
      }
      message.fields += [
        Field("signature_included", "\(m.signatureIncluded)"),
        Field("verify_data", Hex.encode(m.requesterVerifyData)),
      ]
    case SPDMResponseCode.finishRsp.rawValue:
      let hashSize = context.hashSize
      let m = try parse(&body, padded) { b throws(WireError) in
        do throws(WireError) { return try FinishResponse(parsing: b, verifyDataSize: nil) } catch {
          // With HANDSHAKE_IN_THE_CLEAR the response carries its verify data (DSP0274 FINISH_RSP).
          guard let hashSize else { throw error }
          return try FinishResponse(parsing: b, verifyDataSize: hashSize)
        }
      }
      if !m.responderVerifyData.isEmpty {
        message.fields.append(Field("verify_data", Hex.encode(m.responderVerifyData)))
      }
    case SPDMRequestCode.heartbeat.rawValue:
      _ = try parse(&body, padded) { b throws(WireError) in try HeartbeatRequest(parsing: b) }
    case SPDMResponseCode.heartbeatAck.rawValue:
      _ = try parse(&body, padded) { b throws(WireError) in try HeartbeatAck(parsing: b) }
    case SPDMRequestCode.keyUpdate.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try KeyUpdateRequest(parsing: b) }
      message.fields += [Field("operation", Self.name(m.operation)), Field("tag", hex(m.tag))]
    case SPDMResponseCode.keyUpdateAck.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try KeyUpdateAck(parsing: b) }
      message.fields += [Field("operation", Self.name(m.operation)), Field("tag", hex(m.tag))]
    case SPDMRequestCode.endSession.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try EndSessionRequest(parsing: b) }
      message.fields.append(Field("preserve_negotiated_state", "\(m.preserveNegotiatedState)"))
    case SPDMResponseCode.endSessionAck.rawValue:
      _ = try parse(&body, padded) { b throws(WireError) in try EndSessionAck(parsing: b) }
    case SPDMRequestCode.vendorDefinedRequest.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try VendorDefinedRequest(parsing: b) }
      describeVendorDefined(
        standardID: m.standardID, vendorID: m.vendorID, payload: m.payload, into: &message)
    case SPDMResponseCode.vendorDefinedResponse.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try VendorDefinedResponse(parsing: b) }
      describeVendorDefined(
        standardID: m.standardID, vendorID: m.vendorID, payload: m.payload, into: &message)
    case SPDMResponseCode.error.rawValue:
      let m = try parse(&body, padded) { b throws(WireError) in try ErrorResponse(parsing: b) }
      message.fields += [Field("error", "\(m.errorCode)"), Field("data", hex(m.errorData))]
    default:
      break
    }
  }

  private static func name(_ operation: KeyUpdateOperation) -> String {
    switch operation {
    case .updateKey: "UpdateKey"
    case .updateAllKeys: "UpdateAllKeys"
    case .verifyNewKey: "VerifyNewKey"
    default: "0x" + TraceDecoder.hex(operation.rawValue)
    }
  }

  // MARK: PCI-SIG protocols in VENDOR_DEFINED (PCIe 6.x §6.31.3)

  private func describeVendorDefined(
    standardID: UInt16, vendorID: [UInt8], payload: [UInt8], into message: inout DecodedMessage
  ) {
    guard
      let carried = try? PCISIGProtocolMessage(standardID: standardID, vendorID: vendorID, payload: payload)
    else {
      message.fields += [
        .init("standard_id", "0x" + TraceDecoder.hex(standardID)), .init("vendor_id", Hex.encode(vendorID)),
        .init("payload_length", "\(payload.count)"),
      ]
      return
    }
    message.carrier = message.name
    message.fields = []
    message.bytes = carried.message
    switch carried.protocolID {
    case .tdisp:
      message.protocolKind = .tdisp
      describeTDISP(carried.message, into: &message)
    case .ideKM:
      message.protocolKind = .ideKM
      describeIDEKM(carried.message, into: &message)
    default:
      message.protocolKind = .vendorDefined
      message.name = "\(carried.protocolID)"
      message.fields = [.init("length", "\(carried.message.count)")]
    }
  }

  /// A TDISP message (PCIe 6.x §11.3); the direction picks the request or the response codec.
  func describeTDISP(_ bytes: [UInt8], into message: inout DecodedMessage) {
    typealias Field = DecodedMessage.Field
    func hex<Value: FixedWidthInteger>(_ value: Value) -> String { "0x" + TraceDecoder.hex(value) }
    do throws(WireError) {
      if message.direction == .request {
        let request = try TDISPRequest(parsing: bytes)
        message.name = request.code.description
        message.fields = [Field("interface", "\(request.interfaceID)")]
        switch request.body {
        case .getCapabilities(let caps): message.fields.append(Field("tsm_caps", hex(caps)))
        case .lockInterface(let p):
          message.fields += [
            Field("flags", hex(p.flags.rawValue)), Field("default_stream", "\(p.defaultStreamID)"),
            Field("mmio_reporting_offset", hex(p.mmioReportingOffset)),
            Field("bind_p2p_address_mask", hex(p.bindP2PAddressMask)),
          ]
        case .getDeviceInterfaceReport(let offset, let length):
          message.fields += [Field("offset", "\(offset)"), Field("length", "\(length)")]
        case .startInterface(let nonce): message.fields.append(Field("nonce", Hex.encode(nonce)))
        case .bindP2PStream(let id), .unbindP2PStream(let id): message.fields.append(Field("stream", "\(id)"))
        case .setMMIOAttribute(let range):
          message.fields += [
            Field("first_page", hex(range.firstPage)), Field("pages", "\(range.numberOfPages)"),
            Field("attributes", hex(range.attributes.rawValue)), Field("range_id", "\(range.rangeID)"),
          ]
        case .vdm(let vdm):
          message.fields += [Field("registry", "\(vdm.registryID)"), Field("length", "\(vdm.data.count)")]
        case .unknown(_, let payload): message.fields.append(Field("length", "\(payload.count)"))
        case .getVersion, .getDeviceInterfaceState, .stopInterface: break
        }
      } else {
        let response = try TDISPResponse(parsing: bytes)
        message.name = response.code.description
        message.fields = [Field("interface", "\(response.interfaceID)")]
        switch response.body {
        case .version(let versions):
          message.fields.append(Field("versions", versions.map(\.description).joined(separator: ",")))
        case .capabilities(let c):
          message.fields += [
            Field("dsm_caps", hex(c.dsmCapabilities)),
            Field("lock_flags_supported", hex(c.lockInterfaceFlagsSupported.rawValue)),
            Field("dev_addr_width", "\(c.deviceAddressWidth)"),
            Field("num_req_this", "\(c.numberOfRequestsThisTDI)"),
            Field("num_req_all", "\(c.numberOfRequestsAllTDIs)"),
          ]
        case .lockInterface(let nonce): message.fields.append(Field("nonce", Hex.encode(nonce)))
        case .deviceInterfaceReport(let portion):
          message.fields += [
            Field("portion_length", "\(portion.portion.count)"),
            Field("remainder_length", "\(portion.remainderLength)"),
          ]
        case .deviceInterfaceState(let state): message.fields.append(Field("state", "\(state)"))
        case .vdm(let vdm):
          message.fields += [Field("registry", "\(vdm.registryID)"), Field("length", "\(vdm.data.count)")]
        case .error(let error):
          message.fields += [Field("error", "\(error.code)"), Field("data", hex(error.data))]
        case .startInterface, .stopInterface, .bindP2PStream, .unbindP2PStream, .setMMIOAttribute: break
        }
      }
    } catch {
      message.name =
        bytes.count >= 2
        ? (message.direction == .request
          ? TDISPRequestCode(rawValue: bytes[1]).description
          : TDISPResponseCode(rawValue: bytes[1]).description)
        : "TDISP message"
      message.problem = "\(error)"
    }
  }

  /// An IDE_KM message (PCIe 6.x §6.33.3). Key material is not printed (it is in `bytes`).
  func describeIDEKM(_ bytes: [UInt8], into message: inout DecodedMessage) {
    typealias Field = DecodedMessage.Field
    do throws(WireError) {
      let decoded = try IDEKMMessage(parsing: bytes)
      message.name = decoded.objectID.description
      switch decoded {
      case .query(let query): message.fields = [Field("port", "\(query.portIndex)")]
      case .queryResponse(let r):
        message.fields = [
          Field("port", "\(r.portIndex)"), Field("bus", "0x" + TraceDecoder.hex(r.bus)),
          Field("dev_func", "0x" + TraceDecoder.hex(r.deviceFunction)), Field("segment", "\(r.segment)"),
          Field("max_port", "\(r.maxPortIndex)"), Field("link_streams", "\(r.capability.linkStreamCount)"),
          Field("selective_streams", "\(r.capability.selectiveStreamCount)"),
        ]
      case .keyProgram(let k):
        message.fields = [
          Field("stream", "\(k.streamID)"), Field("sub_stream", "\(k.subStream)"),
          Field("port", "\(k.portIndex)"),
          Field("key", "(\(IDEKMKeyProgram.keyBytes) bytes)"),
        ]
      case .keyProgramAck(let a):
        message.fields = [
          Field("stream", "\(a.streamID)"), Field("status", "\"\(a.status)\""),
          Field("sub_stream", "\(a.subStream)"),
          Field("port", "\(a.portIndex)"),
        ]
      case .keySetGo(let c), .keySetStop(let c), .keyGoStopAck(let c):
        message.fields = [
          Field("stream", "\(c.streamID)"), Field("sub_stream", "\(c.subStream)"),
          Field("port", "\(c.portIndex)"),
        ]
      }
    } catch {
      message.name = bytes.first.map { IDEKMObjectID(rawValue: $0).description } ?? "IDE_KM message"
      message.problem = "\(error)"
    }
  }
}
