import CoveCrypto
import CoveTransport
import CoveWire
import TDISP
import Testing

/// The interface report DMTF's sample TDISP device (spdm-emu `pci_tdisp_device_lock_interface.c`)
/// returns after LOCK_INTERFACE, byte for byte as `cove tsm` fetched it from `spdm_responder_emu`
/// (its SHA-384 digest starts 3545188139140f3b51efebea, as the interop run printed): Cove's decoder
/// reads it and the summary `cove tsm` prints names its flags and four ranges.
@Suite struct DMTFInterfaceReportTests {
  /// INTERFACE_INFO 0x0003 (NO_UPDATE_AFTER_LOCK, DMA_WITHOUT_PASID), reserved, MSI-X control 0,
  /// LNR 0, TPH 0, MMIO_RANGE_COUNT 4: (page 0x0, 1, IS_NON_TEE_MEM, id 1), (0x8000, 4,
  /// IS_MEM_ATTR_UPDATABLE, 2), (0x10000, 8, …, 3), (0x20000, 8, …, 4); DEVICE_SPECIFIC_INFO_LEN 16,
  /// "tdisp_dev_emu" NUL and two zero bytes.
  static let report: [UInt8] =
    [0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00]
    + [0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0x04, 0x00, 0x01, 0x00]
    + [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0x08, 0x00, 0x02, 0x00]
    + [0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0x08, 0x00, 0x03, 0x00]
    + [0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0x08, 0x00, 0x04, 0x00]
    + [0x10, 0x00, 0x00, 0x00] + Array("tdisp_dev_emu".utf8) + [0, 0, 0]

  @Test func decodesAndSummarises() throws {
    #expect(Self.report.count == 100)
    #expect(Hex.encode(HashAlgorithm.sha384.hash(Self.report).prefix(12)) == "3545188139140f3b51efebea")
    let report = try TDISPDeviceInterfaceReport(parsing: Self.report)
    #expect(report.interfaceInfo == [.noFirmwareUpdateWhileLocked, .dmaWithoutPASID])
    #expect(report.mmioRanges.map(\.rangeID) == [1, 2, 3, 4])
    #expect(report.mmioRanges.map(\.firstPage) == [0, 0x8000, 0x10000, 0x20000])
    #expect(report.mmioRanges[0].attributes == .isNonTEEMemory)
    #expect(report.deviceSpecificInfo == Array("tdisp_dev_emu".utf8) + [0, 0, 0])
    #expect(report.encode() == Self.report)
    #expect(
      SPDMSocketTSMFlow.summary(report)
        == "INTERFACE_INFO 0x3 (no-fw-update, DMA-without-PASID); 4 MMIO ranges: #1 first page 0x0, 1 page (non-TEE); #2 first page 0x8000, 4 pages (attr-updatable); #3 first page 0x10000, 8 pages (attr-updatable); #4 first page 0x20000, 8 pages (attr-updatable); 16 bytes device-specific info"
    )
  }
}
