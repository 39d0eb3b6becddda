import CoveWire
import PCIe

/// Classic libpcap capture files (`--pcap FILE`) of a run's DOE traffic: the format Wireshark,
/// tcpdump and DMTF spdm-dump read (https://www.tcpdump.org/manpages/pcap-savefile.5.html).
///
/// Layout, all fields in the writer's byte order (Cove writes little-endian):
/// - global header, 24 bytes: magic 0xA1B2C3D4 (microsecond timestamps), version 2.4, thiszone 0,
///   sigfigs 0, snaplen, link type;
/// - per record, 16 bytes: seconds, microseconds, captured length, original length; then the
///   captured bytes (the original length less any cut at the snap length).
///
/// Link type 292 (LINKTYPE_PCI_DOE) makes each record exactly one DOE data object, header included
/// (PCIe 6.x §6.30.1). There is no direction field: records are in strict request/response order,
/// as the mailbox moves them.
public enum PcapFormat {
  /// The magic number of a microsecond-resolution capture.
  public static let magicMicroseconds: UInt32 = 0xA1B2_C3D4
  /// The magic number of a nanosecond-resolution capture (read, never written).
  public static let magicNanoseconds: UInt32 = 0xA1B2_3C4D
  public static let versionMajor: UInt16 = 2
  public static let versionMinor: UInt16 = 4
  /// LINKTYPE_PCI_DOE: each record one PCIe DOE data object (tcpdump.org link-layer header types).
  public static let linkTypePCIDOE: UInt32 = 292
  /// LINKTYPE_MCTP: each record an MCTP packet (4-byte transport header, then the message type byte
  /// and the message), as DMTF spdm-emu writes its MCTP captures.
  public static let linkTypeMCTP: UInt32 = 291
  /// 64 KiB: the largest snap length DMTF spdm-dump accepts (its PCAP_PACKET_MAX_SIZE; it refuses the
  /// file otherwise), and far above any object Cove moves (its SPDM messages stay within a 4 KiB
  /// DataTransferSize). A longer DOE object (up to 1 MiB, PCIe 6.x §6.30.1) is written truncated to
  /// it, with its original length, as pcap records any packet longer than the snap length.
  public static let snapLength: UInt32 = 0x1_0000
  /// The largest original length a record may claim: one DOE object, 2^18 DWs (PCIe 6.x §6.30.1).
  public static let maximumOriginalLength = DOEDataObject.maxBytes
  public static let globalHeaderSize = 24
  public static let recordHeaderSize = 16
}

/// One captured record: when (virtual nanoseconds since the run began) and the DOE object's bytes.
public struct PcapRecord: Hashable, Sendable {
  /// Nanoseconds; a microsecond capture keeps whole microseconds.
  public var time: UInt64
  /// The bytes captured: the whole DOE object, or its first snap-length bytes (``isTruncated``).
  public var bytes: [UInt8]
  /// The object's length on the wire.
  public var originalLength: Int

  public init(time: UInt64, bytes: [UInt8], originalLength: Int? = nil) {
    precondition(
      (originalLength ?? bytes.count) >= bytes.count, "a record captures at most its original length")
    self.time = time
    self.bytes = bytes
    self.originalLength = originalLength ?? bytes.count
  }

  /// Captured shorter than it was: not a whole DOE object.
  public var isTruncated: Bool { bytes.count < originalLength }
}

/// Writes a run's DOE objects as a link-type-292 capture.
public enum PcapWriter {
  /// One record per `.doe` trace record that carries bytes, in the records' order, stamped with the
  /// record's virtual time (nanoseconds → seconds and microseconds). Other records are not DOE
  /// objects and are left out (the JSON Lines trace has them).
  public static func write(records: [TraceRecord]) -> [UInt8] {
    write(
      records.compactMap { record in
        guard record.kind == .doe, let bytes = record.bytes else { return nil }
        return PcapRecord(time: record.time, bytes: bytes)
      })
  }

  /// The capture of `records`, little-endian, microsecond timestamps; bytes past the snap length are
  /// left out (the record keeps its original length). `linkType` says what each record is (DOE
  /// objects unless told otherwise).
  public static func write(_ records: [PcapRecord], linkType: UInt32 = PcapFormat.linkTypePCIDOE) -> [UInt8] {
    var writer = ByteWriter(
      capacity: PcapFormat.globalHeaderSize
        + records.reduce(0) {
          $0 + PcapFormat.recordHeaderSize + min($1.bytes.count, Int(PcapFormat.snapLength))
        })
    writer.append(PcapFormat.magicMicroseconds)
    writer.append(PcapFormat.versionMajor)
    writer.append(PcapFormat.versionMinor)
    writer.append(UInt32(0))  // thiszone: timestamps are UTC (here: virtual time from 0)
    writer.append(UInt32(0))  // sigfigs: always 0 in practice
    writer.append(PcapFormat.snapLength)
    writer.append(linkType)
    for record in records {
      let captured = record.bytes.prefix(Int(PcapFormat.snapLength))
      // ts_sec is a u32: past 2^32 s (136 years of virtual time) it saturates.
      writer.append(UInt32(clamping: record.time / 1_000_000_000))
      writer.append(UInt32(record.time % 1_000_000_000 / 1_000))
      writer.append(UInt32(captured.count))
      writer.append(UInt32(clamping: record.originalLength))
      writer.append(contentsOf: captured)
    }
    return writer.bytes
  }
}
