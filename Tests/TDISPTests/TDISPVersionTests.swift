import TDISP
import Testing

@Suite struct TDISPVersionTests {
  @Test func versionOneZero() {
    #expect(TDISPVersion.v10.rawValue == 0x10)
    #expect(TDISPVersion.v10.description == "1.0")
  }
}
