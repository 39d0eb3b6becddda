import CoveWire
import SPDM
import Testing

@Suite("SPDM header-only and small messages")
struct SimpleMessageTests {
  @Test func getVersion() throws {
    // DSP0274 GET_VERSION request table: SPDMVersion 0x10, code 0x84, Param1/2 reserved.
    let expected = hex("10 84 00 00")
    #expect(GetVersionRequest().encode() == expected)
    #expect(try GetVersionRequest(parsing: expected) == GetVersionRequest())
    checkStandardRejections(expected) { bytes throws(WireError) in _ = try GetVersionRequest(parsing: bytes) }
    // "SPDMVersion shall be 0x10" for GET_VERSION.
    expectWireError(.invalidValue, at: 0) { () throws(WireError) in
      _ = try GetVersionRequest(parsing: hex("12 84 00 00"))
    }
  }

  @Test func version() throws {
    // DSP0274 VERSION table: header (0x10, 0x04), Reserved, VersionNumberEntryCount = 2,
    // entries u16 LE: 1.2 = 0x1200, 1.3 = 0x1300.
    let message = VersionResponse(versions: [.v12, .v13])
    let expected = hex("10 04 00 00") + hex("00 02") + hex("00 12 00 13")
    #expect(message.encode() == expected)
    let parsed = try VersionResponse(parsing: expected)
    #expect(parsed == message)
    #expect(parsed.versions == [.v12, .v13])
    // Update/alpha nibbles survive decoding; the version ignores them.
    let withUpdate = try VersionResponse(parsing: hex("10 04 00 00 00 01 21 12"))
    #expect(withUpdate.versionNumberEntries == [0x1221] && withUpdate.versions == [.v12])
    checkStandardRejections(expected) { bytes throws(WireError) in _ = try VersionResponse(parsing: bytes) }
    // Count says 3 but only two entries follow: truncated at the third entry (offset 10).
    expectWireError(.truncated, at: 10) { () throws(WireError) in
      _ = try VersionResponse(parsing: hex("10 04 00 00 00 03 00 12 00 13"))
    }
  }

  @Test func versionTypes() {
    #expect(SPDMVersion.v12.description == "1.2")
    #expect(SPDMVersion(versionNumberEntry: 0x1310) == .v13)
    #expect(SPDMVersion.v13.versionNumberEntry == 0x1300)
    #expect(SPDMVersion.v11 < .v12)
    #expect(SPDMMessageCodeName.name(request: .getVersion) == "GET_VERSION")
    #expect(SPDMMessageCodeName.name(response: .challengeAuth) == "CHALLENGE_AUTH")
    #expect(SPDMMessageCodeName.name(code: 0x64) == "KEY_EXCHANGE_RSP")
    #expect(SPDMMessageCodeName.name(code: 0xC0) == "request(0xc0)")
    #expect(SPDMErrorCode(rawValue: 0x42) == .responseNotReady)
  }

  @Test func getCapabilitiesAllVersions() throws {
    let flags: RequesterCapabilities = [.cert, .chal, .encrypt, .mac, .keyEx, .hbeat, .keyUpd]
    #expect(flags.rawValue == 0x62C6)
    // DSP0274 GET_CAPABILITIES table (1.2+): Reserved, CTExponent, Reserved u16, Flags u32,
    // DataTransferSize u32, MaxSPDMmsgSize u32.
    let v12 = GetCapabilitiesRequest(
      version: .v12, ctExponent: 0x0C, flags: flags, dataTransferSize: 0x1200, maxSPDMMessageSize: 0x1200)
    let expected12 =
      hex("12 E1 00 00") + hex("00 0C 00 00") + hex("C6 62 00 00") + hex("00 12 00 00") + hex("00 12 00 00")
    #expect(v12.encode() == expected12)
    #expect(try GetCapabilitiesRequest(parsing: expected12) == v12)
    checkStandardRejections(expected12) { bytes throws(WireError) in
      _ = try GetCapabilitiesRequest(parsing: bytes)
    }
    // 1.1: no DataTransferSize / MaxSPDMmsgSize.
    let v11 = GetCapabilitiesRequest(version: .v11, ctExponent: 0x0C, flags: flags)
    let expected11 = hex("11 E1 00 00 00 0C 00 00 C6 62 00 00")
    #expect(v11.encode() == expected11)
    #expect(try GetCapabilitiesRequest(parsing: expected11) == v11)
    checkStandardRejections(expected11) { bytes throws(WireError) in
      _ = try GetCapabilitiesRequest(parsing: bytes)
    }
    // 1.0: header only.
    #expect(GetCapabilitiesRequest(version: .v10).encode() == hex("10 E1 00 00"))
    #expect(try GetCapabilitiesRequest(parsing: hex("10 E1 00 00")) == GetCapabilitiesRequest(version: .v10))
    // A 1.2 message in the 1.1 layout is truncated at DataTransferSize (offset 12).
    expectWireError(.truncated, at: 12) { () throws(WireError) in
      _ = try GetCapabilitiesRequest(parsing: hex("12 E1 00 00 00 0C 00 00 C6 62 00 00"))
    }
  }

  @Test func capabilities() throws {
    let flags: ResponderCapabilities = [
      .cert, .chal, .measSig, .measFresh, .encrypt, .mac, .keyEx, .hbeat, .keyUpd,
    ]
    #expect(flags.rawValue == 0x62F6)
    let message = CapabilitiesResponse(
      version: .v12, ctExponent: 0x0C, flags: flags, dataTransferSize: 0x1200, maxSPDMMessageSize: 0x1200)
    let expected =
      hex("12 61 00 00") + hex("00 0C 00 00") + hex("F6 62 00 00") + hex("00 12 00 00") + hex("00 12 00 00")
    #expect(message.encode() == expected)
    #expect(try CapabilitiesResponse(parsing: expected) == message)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try CapabilitiesResponse(parsing: bytes)
    }
    // 1.0/1.1 responses are 12 bytes.
    let v11 = hex("11 61 00 00 00 0C 00 00 F6 62 00 00")
    #expect(
      try CapabilitiesResponse(parsing: v11)
        == CapabilitiesResponse(version: .v11, ctExponent: 0x0C, flags: flags))
    checkStandardRejections(v11) { bytes throws(WireError) in _ = try CapabilitiesResponse(parsing: bytes) }
  }

  @Test func getDigestsAndDigests() throws {
    #expect(GetDigestsRequest(version: .v12).encode() == hex("12 81 00 00"))
    checkStandardRejections(hex("12 81 00 00")) { bytes throws(WireError) in
      _ = try GetDigestsRequest(parsing: bytes)
    }
    // DSP0274 DIGESTS table: Param1 SupportedSlotMask (1.3) = 0x07, Param2 ProvisionedSlotMask = 0x05
    // (slots 0 and 2) -> two 32-byte digests.
    let message = DigestsResponse(
      version: .v13, supportedSlotMask: 0x07, provisionedSlotMask: 0x05,
      digests: [repeated(0xAA, 32), repeated(0xBB, 32)])
    let expected = hex("13 01 07 05") + repeated(0xAA, 32) + repeated(0xBB, 32)
    #expect(message.encode() == expected)
    #expect(try DigestsResponse(parsing: expected, hashSize: 32) == message)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try DigestsResponse(parsing: bytes, hashSize: 32)
    }
  }

  @Test func getCertificateAndCertificate() throws {
    // GET_CERTIFICATE table: Param1 SlotID 1, Param2 attributes 0, Offset 0x0000, Length 0x0400.
    let request = GetCertificateRequest(version: .v12, slotID: 1, offset: 0, length: 0x400)
    let expectedRequest = hex("12 82 01 00 00 00 00 04")
    #expect(request.encode() == expectedRequest)
    #expect(try GetCertificateRequest(parsing: expectedRequest) == request)
    checkStandardRejections(expectedRequest) { bytes throws(WireError) in
      _ = try GetCertificateRequest(parsing: bytes)
    }
    // CERTIFICATE table: PortionLength 5, RemainderLength 0x10, CertChain[5].
    let response = CertificateResponse(
      version: .v12, slotID: 1, portion: hex("30 03 02 01 05"), remainderLength: 0x10)
    let expectedResponse = hex("12 02 01 00") + hex("05 00") + hex("10 00") + hex("30 03 02 01 05")
    #expect(response.encode() == expectedResponse)
    #expect(try CertificateResponse(parsing: expectedResponse) == response)
    checkStandardRejections(expectedResponse) { bytes throws(WireError) in
      _ = try CertificateResponse(parsing: bytes)
    }
  }

  @Test func heartbeatKeyUpdateEndSession() throws {
    // Header-only session messages (DSP0274 HEARTBEAT, KEY_UPDATE, END_SESSION tables).
    #expect(HeartbeatRequest(version: .v12).encode() == hex("12 E8 00 00"))
    #expect(HeartbeatAck(version: .v12).encode() == hex("12 68 00 00"))
    #expect(try HeartbeatRequest(parsing: hex("12 E8 00 00")) == HeartbeatRequest(version: .v12))
    #expect(try HeartbeatAck(parsing: hex("12 68 00 00")) == HeartbeatAck(version: .v12))
    checkStandardRejections(hex("12 E8 00 00")) { bytes throws(WireError) in
      _ = try HeartbeatRequest(parsing: bytes)
    }
    checkStandardRejections(hex("12 68 00 00")) { bytes throws(WireError) in
      _ = try HeartbeatAck(parsing: bytes)
    }

    let update = KeyUpdateRequest(version: .v12, operation: .updateKey, tag: 3)
    #expect(update.encode() == hex("12 E9 01 03"))
    #expect(try KeyUpdateRequest(parsing: hex("12 E9 01 03")) == update)
    let ack = KeyUpdateAck(version: .v12, operation: .verifyNewKey, tag: 4)
    #expect(ack.encode() == hex("12 69 03 04"))
    #expect(try KeyUpdateAck(parsing: hex("12 69 03 04")) == ack)
    checkStandardRejections(hex("12 E9 01 03")) { bytes throws(WireError) in
      _ = try KeyUpdateRequest(parsing: bytes)
    }
    checkStandardRejections(hex("12 69 03 04")) { bytes throws(WireError) in
      _ = try KeyUpdateAck(parsing: bytes)
    }

    let end = EndSessionRequest(version: .v12, preserveNegotiatedState: true)
    #expect(end.encode() == hex("12 EC 01 00"))
    #expect(try EndSessionRequest(parsing: hex("12 EC 01 00")) == end)
    #expect(end.negotiatedStateClearingIndicator)
    #expect(EndSessionAck(version: .v12).encode() == hex("12 6C 00 00"))
    #expect(try EndSessionAck(parsing: hex("12 6C 00 00")) == EndSessionAck(version: .v12))
    checkStandardRejections(hex("12 EC 01 00")) { bytes throws(WireError) in
      _ = try EndSessionRequest(parsing: bytes)
    }
    checkStandardRejections(hex("12 6C 00 00")) { bytes throws(WireError) in
      _ = try EndSessionAck(parsing: bytes)
    }
  }

  @Test func vendorDefined() throws {
    // VENDOR_DEFINED_REQUEST table: StandardID 0x0003 (PCI-SIG), Len 2, VendorID 0x0001,
    // ReqLength 4, payload (TDISP protocol id 0x01, then a TDISP header start).
    let request = VendorDefinedRequest(
      version: .v12, standardID: 3, vendorID: hex("01 00"), payload: hex("01 10 81 00"))
    let expected =
      hex("12 FE 00 00") + hex("03 00") + hex("02") + hex("01 00") + hex("04 00") + hex("01 10 81 00")
    #expect(request.encode() == expected)
    #expect(try VendorDefinedRequest(parsing: expected) == request)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try VendorDefinedRequest(parsing: bytes)
    }
    let response = VendorDefinedResponse(
      version: .v12, standardID: 3, vendorID: hex("01 00"), payload: hex("01 10 01 00"))
    let expectedResponse = hex("12 7E 00 00 03 00 02 01 00 04 00 01 10 01 00")
    #expect(response.encode() == expectedResponse)
    #expect(try VendorDefinedResponse(parsing: expectedResponse) == response)
    checkStandardRejections(expectedResponse) { bytes throws(WireError) in
      _ = try VendorDefinedResponse(parsing: bytes)
    }
  }

  @Test func error() throws {
    // ERROR table + ResponseNotReady extended data: RDTExponent 0x0F, RequestCode 0xE0, Token 5, RDTM 2.
    let notReady = ErrorResponse.ResponseNotReady(
      rdtExponent: 0x0F, requestCode: .getMeasurements, token: 5, rdtm: 2)
    let message = ErrorResponse(version: .v12, responseNotReady: notReady)
    let expected = hex("12 7F 42 00") + hex("0F E0 05 02")
    #expect(message.encode() == expected)
    let parsed = try ErrorResponse(parsing: expected)
    #expect(parsed == message)
    #expect(parsed.responseNotReady == notReady)
    #expect(try ErrorResponse(parsing: hex("12 7F 01 00")).responseNotReady == nil)
    // Extended data is variable, so only prefixes shorter than the header are truncated.
    checkStandardRejections(expected, truncationBelow: 4, trailing: false) { bytes throws(WireError) in
      _ = try ErrorResponse(parsing: bytes)
    }
    // ExtendedErrorData is at most 32 bytes.
    #expect(try ErrorResponse(parsing: hex("12 7F 05 00") + repeated(0, 32)).extendedData.count == 32)
    expectWireError(.lengthOutOfRange, at: 4) { () throws(WireError) in
      _ = try ErrorResponse(parsing: hex("12 7F 05 00") + repeated(0, 33))
    }
  }
}
