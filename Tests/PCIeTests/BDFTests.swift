import PCIe
import Testing

@Suite("BDF and Requester ID")
struct BDFTests {
  @Test(arguments: [
    ("00:1f.7", BDF(bus: 0x00, device: 0x1F, function: 7), "00:1f.7"),
    ("3a:00.0", BDF(bus: 0x3A, device: 0, function: 0), "3a:00.0"),
    ("FF:1F.7", BDF(bus: 0xFF, device: 0x1F, function: 7), "ff:1f.7"),
    ("0000:00:1f.7", BDF(bus: 0, device: 0x1F, function: 7), "00:1f.7"),
    ("0001:02:03.4", BDF(segment: 1, bus: 2, device: 3, function: 4), "0001:02:03.4"),
    ("abcd:ef:10.1", BDF(segment: 0xABCD, bus: 0xEF, device: 0x10, function: 1), "abcd:ef:10.1"),
  ])
  func parsesAndPrints(text: String, expected: BDF, printed: String) throws {
    let bdf = try #require(BDF(text))
    #expect(bdf == expected)
    #expect(bdf.description == printed)
    #expect(BDF(printed) == bdf)
  }

  @Test(arguments: [
    "00:1f.9",  // function > 7
    "00:20.0",  // device > 31
    "100:00.0",  // 3-digit bus
    "0:00.0",  // 1-digit bus
    "00:0.0",  // 1-digit device
    "00:00.00",  // 2-digit function
    "00:00:0",  // wrong separator
    "00.00.0",
    "g0:00.0",  // not hex
    "+0:00.0",
    "00000:00:00.0",  // 5-digit segment
    "0000-00:00.0",
    "",
    "00:1f.7 ",
  ])
  func rejects(text: String) {
    #expect(BDF(text) == nil)
  }

  @Test func requesterIDPacksBusDeviceFunction() {
    let bdf = BDF(segment: 5, bus: 0x3A, device: 0x1F, function: 7)
    let rid = RequesterID(bdf)
    // bus << 8 | device << 3 | function (PCIe 6.x §2.2.6.2)
    #expect(rid.rawValue == 0x3AFF)
    #expect(rid.bus == 0x3A)
    #expect(rid.device == 0x1F)
    #expect(rid.function == 7)
    #expect(rid.bdf(segment: 5) == bdf)
    #expect(rid.bdf() == BDF(bus: 0x3A, device: 0x1F, function: 7))
    #expect(rid.description == "3a:1f.7")
    #expect(bdf.requesterID == rid)
  }

  @Test func everyRequesterIDRoundTrips() {
    var mismatches = 0
    for raw in UInt16.min...UInt16.max {
      let rid = RequesterID(rawValue: raw)
      if RequesterID(rid.bdf()) != rid { mismatches += 1 }
    }
    #expect(mismatches == 0)
  }
}
