import CoveScenario
import Testing

@Suite struct TraceRecordTests {
  @Test func aRecordIsOneJSONLineWithItsFieldsInAFixedOrder() {
    let recorder = TraceRecorder()
    recorder.currentStep = 3
    let record = recorder.add(
      TraceRecord(
        component: .tsm, kind: .tdisp, device: "03:00.1", summary: "LOCK \"quoted\"\n",
        before: "CONFIG_UNLOCKED",
        after: "CONFIG_LOCKED", bytes: [0x10, 0x81, 0xAB], from: .tsm, to: .tdi("03:00.1"), isRequest: true))
    #expect(record.sequence == 0 && record.time == 50 && record.step == 3)
    #expect(
      record.jsonLine
        == #"{"seq":0,"time_ns":50,"component":"tsm","kind":"tdisp","step":3,"device":"03:00.1","summary":"LOCK \"quoted\"\n","before":"CONFIG_UNLOCKED","after":"CONFIG_LOCKED","from":"TSM","to":"TDI 03:00.1","request":true,"bytes":"1081ab"}"#
    )
    let second = recorder.add(TraceRecord(component: .runner, kind: .event, summary: "\u{1}"))
    #expect(second.sequence == 1 && second.time == 250)
    #expect(second.jsonLine.contains(#""summary":"\u0001""#))
  }
}
