import IDEKM
import Testing

@Suite struct IDEKMObjectIDTests {
  /// PCIe 6.x §6.33.3 object IDs 0–6; unknown ones keep their value.
  @Test func namesAndValues() {
    #expect(
      [
        IDEKMObjectID.query, .queryResponse, .keyProgram, .keyProgramAck, .keySetGo, .keySetStop,
        .keyGoStopAck,
      ].map(\.rawValue) == [0, 1, 2, 3, 4, 5, 6])
    #expect(IDEKMObjectID(rawValue: 9).description == "object 0x9")
  }
}
