import CoveWire
public import PCIe

/// Why a capture could not be read: what, where (byte offset in the file) and in which record.
public struct PcapError: Error, Hashable, Sendable, CustomStringConvertible {
  /// A struct with static members so new codes do not break exhaustive switches (STYLE.md).
  public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The file does not start with a classic pcap magic number (0xA1B2C3D4 or 0xA1B23C4D, either
    /// byte order); pcapng and other formats are not read.
    public static let badMagic = Code(rawValue: "bad magic")
    /// A major version other than 2.
    public static let unsupportedVersion = Code(rawValue: "unsupported version")
    /// A link type other than 292 (PCI DOE).
    public static let unsupportedLinkType = Code(rawValue: "unsupported link type")
    /// The file ends inside the global header, a record header or a record's bytes.
    public static let truncated = Code(rawValue: "truncated")
    /// A captured length over the file's snap length, an original length over the largest DOE
    /// object, or more captured than there was.
    public static let lengthOutOfRange = Code(rawValue: "length out of range")
    /// A record captured shorter than it was on the wire (cut at the snap length): legal pcap, read
    /// as such, but not a DOE object one can decode (``PcapCapture/dataObjects()``).
    public static let partialRecord = Code(rawValue: "partial record")
    /// A record that is not one well-formed DOE data object (PCIe 6.x §6.30.1).
    public static let malformedDataObject = Code(rawValue: "malformed DOE object")

    public var description: String { rawValue }
  }

  public var code: Code
  /// Byte offset in the file of the offending field.
  public var offset: Int
  /// The record concerned (0-based), if any.
  public var record: Int?
  public var detail: String

  public init(_ code: Code, at offset: Int, record: Int? = nil, _ detail: String) {
    self.code = code
    self.offset = offset
    self.record = record
    self.detail = detail
  }

  public var description: String {
    "pcap: \(code) at byte \(offset)" + (record.map { " (record \($0))" } ?? "") + ": \(detail)"
  }
}

/// A capture as read: its header fields and its records.
public struct PcapCapture: Hashable, Sendable {
  public var isBigEndian: Bool
  public var hasNanosecondTimestamps: Bool
  public var versionMinor: UInt16
  public var snapLength: UInt32
  public var linkType: UInt32
  public var records: [PcapRecord]

  /// Every record parsed as one DOE data object; the first that is not throws
  /// `.malformedDataObject` with its record index and the DOE decoder's complaint.
  public func dataObjects() throws(PcapError) -> [DOEDataObject] {
    var objects: [DOEDataObject] = []
    objects.reserveCapacity(records.count)
    for (index, record) in records.enumerated() {
      guard !record.isTruncated else {
        throw PcapError(
          .partialRecord, at: 0, record: index,
          "\(record.bytes.count) of \(record.originalLength) bytes captured")
      }
      do { objects.append(try DOEDataObject(parsing: record.bytes)) } catch {
        throw PcapError(.malformedDataObject, at: 0, record: index, "\(error)")
      }
    }
    return objects
  }
}

/// Reads a classic libpcap capture of link type 292 (PCI DOE): a decoder of untrusted input, so every
/// length is checked against what remains and against the largest DOE object before it is used.
public enum PcapReader {
  public static func read(_ bytes: [UInt8]) throws(PcapError) -> PcapCapture {
    guard bytes.count >= 4 else {
      throw PcapError(.truncated, at: bytes.count, "file ends inside the magic number")
    }
    let little = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
    let big = little.byteSwapped
    let isBigEndian: Bool
    let nanoseconds: Bool
    switch (little, big) {
    case (PcapFormat.magicMicroseconds, _): (isBigEndian, nanoseconds) = (false, false)
    case (PcapFormat.magicNanoseconds, _): (isBigEndian, nanoseconds) = (false, true)
    case (_, PcapFormat.magicMicroseconds): (isBigEndian, nanoseconds) = (true, false)
    case (_, PcapFormat.magicNanoseconds): (isBigEndian, nanoseconds) = (true, true)
    default:
      throw PcapError(.badMagic, at: 0, "magic 0x\(Hex.encode(bytes.prefix(4))) is not a classic pcap file's")
    }
    var reader = FieldReader(bytes: bytes, bigEndian: isBigEndian)
    reader.offset = 4
    let major = try reader.u16("version_major")
    let minor = try reader.u16("version_minor")
    guard major == PcapFormat.versionMajor else {
      throw PcapError(.unsupportedVersion, at: 4, "version \(major).\(minor), expected 2.x")
    }
    _ = try reader.u32("thiszone")
    _ = try reader.u32("sigfigs")
    let snapLength = try reader.u32("snaplen")
    let linkType = try reader.u32("network")
    guard linkType == PcapFormat.linkTypePCIDOE else {
      throw PcapError(.unsupportedLinkType, at: 20, "link type \(linkType), expected 292 (PCI DOE)")
    }
    // Each record is one DOE object: at most 2^18 DWs (PCIe 6.x §6.30.1), captured within the snap
    // length the file itself declares (0 taken as no limit but that one).
    let limit = PcapFormat.maximumOriginalLength
    let cap = snapLength == 0 ? limit : min(limit, Int(snapLength))
    var records: [PcapRecord] = []
    while !reader.isAtEnd {
      let index = records.count
      let start = reader.offset
      let seconds = try reader.u32("ts_sec", record: index)
      let fraction = try reader.u32(nanoseconds ? "ts_nsec" : "ts_usec", record: index)
      let capturedOffset = reader.offset
      let captured = try reader.u32("incl_len", record: index)
      let original = try reader.u32("orig_len", record: index)
      guard captured <= cap else {
        throw PcapError(
          .lengthOutOfRange, at: capturedOffset, record: index,
          "captured length \(captured) over \(cap) bytes (the snap length, one DOE object at most)")
      }
      guard original <= limit, original >= captured else {
        throw PcapError(
          .lengthOutOfRange, at: capturedOffset + 4, record: index,
          "original length \(original) for \(captured) captured (one DOE object is at most \(limit))")
      }
      guard reader.remaining >= Int(captured) else {
        throw PcapError(
          .truncated, at: bytes.count, record: index,
          "record at \(start) needs \(captured) bytes, \(reader.remaining) remain")
      }
      let body = Array(bytes[reader.offset..<reader.offset + Int(captured)])
      reader.offset += Int(captured)
      let time = UInt64(seconds) * 1_000_000_000 + UInt64(fraction) * (nanoseconds ? 1 : 1_000)
      records.append(PcapRecord(time: time, bytes: body, originalLength: Int(original)))
    }
    return PcapCapture(
      isBigEndian: isBigEndian, hasNanosecondTimestamps: nanoseconds, versionMinor: minor,
      snapLength: snapLength, linkType: linkType, records: records)
  }

  /// Fixed-width fields in the file's byte order; running out is `.truncated` at the field.
  private struct FieldReader {
    let bytes: [UInt8]
    let bigEndian: Bool
    var offset = 0

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset >= bytes.count }

    mutating func u16(_ field: String, record: Int? = nil) throws(PcapError) -> UInt16 {
      UInt16(truncatingIfNeeded: try read(2, field, record: record))
    }

    mutating func u32(_ field: String, record: Int? = nil) throws(PcapError) -> UInt32 {
      UInt32(truncatingIfNeeded: try read(4, field, record: record))
    }

    private mutating func read(_ width: Int, _ field: String, record: Int?) throws(PcapError) -> UInt64 {
      guard remaining >= width else {
        throw PcapError(.truncated, at: offset, record: record, "file ends inside \(field)")
      }
      var value: UInt64 = 0
      for index in 0..<width {
        let byte = UInt64(bytes[offset + (bigEndian ? index : width - 1 - index)])
        value = value << 8 | byte
      }
      offset += width
      return value
    }
  }
}
