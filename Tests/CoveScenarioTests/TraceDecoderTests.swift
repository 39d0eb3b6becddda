import CoveScenario
import HostPlatform
import PCIe
import SPDM
import Testing

@Suite struct TraceDecoderTests {
  @Test func everyRecordReadsBackFromItsJSONLine() {
    let records = [
      TraceRecord(
        sequence: 4, time: 1_234_567, component: .tsm, kind: .tdisp, device: "03:00.1",
        summary: "LOCK \"quoted\" \\ tab\t nl\n \u{1} é 🐚", before: "CONFIG_UNLOCKED", after: "CONFIG_LOCKED",
        bytes: [0x10, 0x83, 0xAB], step: 2, from: .tsm, to: .tdi("03:00.1"), isRequest: true),
      TraceRecord(sequence: 0, time: 0, component: .runner, kind: .dmaAPI, summary: ""),
      TraceRecord(
        sequence: 9, time: UInt64.max, component: .iommu, kind: .fault, summary: "x", from: .iommu, to: .host,
        isRequest: false),
      TraceRecord(
        sequence: 1, time: 1, component: .guest, kind: .trust, summary: "y", from: .guest, to: .dsm),
    ]
    for record in records {
      #expect(throws: Never.self) { try TraceRecord(jsonLine: record.jsonLine) }
      #expect((try? TraceRecord(jsonLine: record.jsonLine)) == record, "\(record.jsonLine)")
    }
    // Whitespace, escapes Cove does not write (\/, \u surrogate pairs), null and unknown keys are fine.
    let loose =
      #"  { "seq" : 1 , "time_ns":2,"component":"dsm","kind":"event","summary":"a\/b \ud83d\udc1a \u00e9","device":null,"future":true }  "#
    #expect(
      (try? TraceRecord(jsonLine: loose))
        == TraceRecord(sequence: 1, time: 2, component: .dsm, kind: .event, summary: "a/b 🐚 é"))
  }

  @Test(arguments: [
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe"}"#, "missing \"summary\""),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":"","seq":3}"#, "duplicate key"),
    (#"{"seq":-1,"time_ns":2,"component":"tsm","kind":"doe","summary":""}"#, "unsupported value"),
    (#"{"seq":1.5,"time_ns":2,"component":"tsm","kind":"doe","summary":""}"#, "only unsigned integers"),
    (#"{"seq":01,"time_ns":2,"component":"tsm","kind":"doe","summary":""}"#, "leading zero"),
    (#"{"seq":1,"time_ns":99999999999999999999,"component":"tsm","kind":"doe","summary":""}"#, "over 2^64"),
    (#"{"seq":1,"time_ns":2,"component":"cpu","kind":"doe","summary":""}"#, "unknown component"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":1}"#, "is not a string"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":"","bytes":"0G"}"#, "lowercase hex"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":"","from":"CPU"}"#, "unknown lane"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":"\ud800"}"#, "lone surrogate"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":""} x"#, "bytes after the object"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":"#, "value missing"),
    (#"{"seq":1,"time_ns":2,"component":"tsm","kind":"doe","summary":"x}"#, "string not closed"),
    (#"{"seq":[1]}"#, "unsupported value"),
    (#"[]"#, "expected '{'"),
  ])
  func aMalformedTraceLineIsATypedErrorWithItsLineNumber(line: String, detail: String) {
    let text =
      #"{"seq":0,"time_ns":0,"component":"runner","kind":"step","summary":"ok"}"# + "\r\n\n" + line + "\n"
    #expect(throws: TraceJSONError.self) { try TraceDecoder.decode(jsonLines: text) }
    do { _ = try TraceDecoder.decode(jsonLines: text) } catch {
      #expect(error.line == 3 && error.detail.contains(detail), "\(error)")
    }
  }

  /// The JSON trace of a run decodes to the same messages as its capture (the trace has the true
  /// directions and nanosecond times), and its other records become lines of their own.
  @Test func aJSONTraceDecodesLikeTheCaptureOfTheSameRun() throws {
    let rig = try PcapRig()
    rig.recorder.add(TraceRecord(component: .runner, kind: .step, summary: "connect"))
    try rig.runLifecycle()
    rig.recorder.add(
      TraceRecord(
        component: .tdi, kind: .state, device: "03:00.1", summary: "stopped", before: "RUN", after: "UNLOCKED"
      ))
    let secrets = rig.tsm.sessionSecrets
    let jsonLines = rig.recorder.records.map(\.jsonLine).joined(separator: "\n") + "\n"
    let fromJSON = try TraceDecoder.decode(jsonLines: jsonLines, sessions: secrets)
    let fromPcap = try TraceDecoder.decode(pcap: PcapWriter.write(records: rig.doeRecords), sessions: secrets)
    #expect(fromJSON.lines.count == rig.recorder.records.count)
    #expect(fromJSON.messages.count == fromPcap.messages.count)
    func untimed(_ message: DecodedMessage) -> DecodedMessage {
      var message = message
      (message.index, message.time) = (0, 0)
      return message
    }
    #expect(fromJSON.messages.map(untimed) == fromPcap.messages.map(untimed))
    #expect(fromJSON.messages.map(\.index) == rig.doeRecords.map(\.sequence))
    #expect(fromJSON.lines.first == "#0 0.000000000 runner step connect")
    #expect(fromJSON.lines.last?.hasSuffix("tdi state 03:00.1 stopped (RUN → UNLOCKED)") == true)

    // Clear-text records decode with the codecs, outside any session.
    var decoder = TraceDecoder()
    let lockRequest = try #require(
      rig.tsm.messages.first { $0.protocolID == .tdisp && $0.request[1] == 0x83 })
    let lock = decoder.decode(
      TraceRecord(
        sequence: 7, component: .tsm, kind: .tdisp, summary: "", bytes: lockRequest.request, isRequest: true))
    #expect(lock?.name == "LOCK_INTERFACE_REQUEST" && lock?.protocolKind == .tdisp && lock?.problem == nil)
    #expect(
      lock?.line.hasPrefix("#7 0.000000000 TSM→DSM clear: TDISP LOCK_INTERFACE_REQUEST interface=03:00.1")
        == true)
  }

  @Test func directionIsTakenFromTheSPDMCodeElseByAlternation() {
    var decoder = TraceDecoder()
    let version = DOEDataObject(protocol: .spdm, payload: [0x10, 0x04, 0, 0, 0, 1, 0, 0x12]).encode()
    let discovery = DOEDataObject(protocol: .discovery, payload: [1, 0, 0, 0]).encode()
    // A response first (a capture that starts mid-way): SPDM says so, and the next object is a request.
    #expect(decoder.decode(dataObject: version, index: 0, time: 0).direction == .response)
    let question = decoder.decode(dataObject: discovery, index: 1, time: 0)
    #expect(question.direction == .request && question.name == "DISCOVERY" && question[field: "index"] == "1")
    let answer = decoder.decode(dataObject: discovery, index: 2, time: 0)
    #expect(answer.direction == .response && answer.name == "DISCOVERY_RESPONSE")
    #expect(answer[field: "protocol"] == "\"PCI-SIG discovery\"" && answer[field: "next_index"] == "0")
  }
}
