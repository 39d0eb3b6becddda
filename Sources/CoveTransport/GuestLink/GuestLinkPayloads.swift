import CoveCrypto
public import CoveScenario
import CoveWire
public import GuestABI
import IOMMU
import PCIe
public import SPDM
import TDISP

/// The guest's first frame: which versions it speaks and the guest image (with the seed) whose
/// platform the host is to build for it. The image travels as its YAML text, decoded by the host with
/// the same decoder `cove run` uses, so a broken image is refused with the same typed error.
public struct GuestLinkHello: Hashable, Sendable {
  public var minimumVersion: UInt16
  public var maximumVersion: UInt16
  public var seed: UInt64
  /// Where the image came from (a path or "built-in:NAME"), for the host's messages.
  public var imageSource: String
  public var imageText: String

  public init(seed: UInt64, imageSource: String, imageText: String) {
    minimumVersion = GuestLinkFrame.version
    maximumVersion = GuestLinkFrame.version
    self.seed = seed
    self.imageSource = imageSource
    self.imageText = imageText
  }

  public var encoded: [UInt8] {
    var w = ByteWriter()
    w.append(minimumVersion)
    w.append(maximumVersion)
    w.append(seed)
    w.appendString(imageSource)
    w.appendString(imageText)
    return w.bytes
  }

  public init(decoding payload: [UInt8]) throws(GuestLinkError) {
    var r = ByteReader(payload)
    do throws(WireError) {
      minimumVersion = try r.readU16("minimum version")
      maximumVersion = try r.readU16("maximum version")
      seed = try r.readU64("seed")
      imageSource = try r.readString("image source")
      imageText = try r.readString("image")
      try r.expectEnd("hello")
    } catch { throw GuestLinkError(.malformed, "hello: \(error)") }
  }
}

/// The host's answer to a hello: the guest's memory file and where its pages lie in it, and the
/// platform description a guest kernel boots from (`GuestPlatformInfo`).
public struct GuestLinkWelcome: Hashable, Sendable {
  /// A run of guest-physical pages backed by consecutive pages of the memory file.
  public struct PageRun: Hashable, Sendable {
    public var firstGuestPage: UInt64
    public var firstFilePage: UInt64
    public var pages: UInt64
  }

  public var version: UInt16
  /// The path the guest opens the host's memory file by (`/proc/<host pid>/fd/<n>`).
  public var memoryFile: String
  /// Where the one-byte-per-page poison flags start in the file, and their length.
  public var poisonOffset: UInt64
  public var poisonLength: UInt64
  public var runs: [PageRun]
  public var platform: GuestPlatformInfo

  public var encoded: [UInt8] {
    var w = ByteWriter()
    w.append(version)
    w.appendString(memoryFile)
    w.append(poisonOffset)
    w.append(poisonLength)
    w.append(UInt32(runs.count))
    for run in runs {
      w.append(run.firstGuestPage)
      w.append(run.firstFilePage)
      w.append(run.pages)
    }
    w.append(platform.memoryBytes)
    w.append(platform.boundary)
    w.append(UInt8(platform.viommu ? 1 : 0))
    w.append(UInt32(platform.functions.count))
    for function in platform.functions { w.append(function.rawValue) }
    return w.bytes
  }

  public init(
    version: UInt16, memoryFile: String, poisonOffset: UInt64, poisonLength: UInt64, runs: [PageRun],
    platform: GuestPlatformInfo
  ) {
    self.version = version
    self.memoryFile = memoryFile
    self.poisonOffset = poisonOffset
    self.poisonLength = poisonLength
    self.runs = runs
    self.platform = platform
  }

  public init(decoding payload: [UInt8]) throws(GuestLinkError) {
    var r = ByteReader(payload)
    do throws(WireError) {
      version = try r.readU16("version")
      memoryFile = try r.readString("memory file")
      poisonOffset = try r.readU64("poison offset")
      poisonLength = try r.readU64("poison length")
      let count = try r.readU32("runs")
      guard Int(count) * 24 <= r.remaining else {
        throw WireError(.lengthOutOfRange, at: r.offset, field: "runs")
      }
      runs = []
      for _ in 0..<count {
        runs.append(
          PageRun(
            firstGuestPage: try r.readU64("guest page"), firstFilePage: try r.readU64("file page"),
            pages: try r.readU64("pages")))
      }
      let memoryBytes = try r.readU64("memory bytes")
      let boundary = try r.readU64("boundary")
      let viommu = try r.readFlag("viommu")
      let functions = try r.readU32("functions")
      guard Int(functions) * 2 <= r.remaining else {
        throw WireError(.lengthOutOfRange, at: r.offset, field: "functions")
      }
      var list: [RequesterID] = []
      for _ in 0..<functions { list.append(RequesterID(rawValue: try r.readU16("function"))) }
      platform = GuestPlatformInfo(
        memoryBytes: memoryBytes, boundary: boundary, viommu: viommu, functions: list)
      try r.expectEnd("welcome")
    } catch { throw GuestLinkError(.malformed, "welcome: \(error)") }
  }
}

/// A refused call: the errno and message the guest kernel sees, exactly as in one process.
extension HypercallError {
  public var encoded: [UInt8] {
    var w = ByteWriter()
    w.append(UInt32(bitPattern: errno.rawValue))
    w.appendString(message)
    return w.bytes
  }

  public init(decoding payload: [UInt8]) throws(GuestLinkError) {
    var r = ByteReader(payload)
    do throws(WireError) {
      let errno = Errno(rawValue: Int32(bitPattern: try r.readU32("errno")))
      let message = try r.readString("message")
      try r.expectEnd("refusal")
      self.init(errno, message)
    } catch { throw GuestLinkError(.malformed, "refusal: \(error)") }
  }
}

/// Results of calls, one encoding per result type (the readers are what a hostile host's bytes meet).
public enum GuestLinkResult {
  public static func u32(_ value: UInt32) -> [UInt8] {
    var w = ByteWriter()
    w.append(value)
    return w.bytes
  }

  public static func u64(_ value: UInt64) -> [UInt8] {
    var w = ByteWriter()
    w.append(value)
    return w.bytes
  }

  public static func readU32(_ payload: [UInt8]) throws(GuestLinkError) -> UInt32 {
    try decode(payload, "u32") { (r: inout ByteReader) throws(WireError) in try r.readU32("value") }
  }

  public static func readU64(_ payload: [UInt8]) throws(GuestLinkError) -> UInt64 {
    try decode(payload, "u64") { (r: inout ByteReader) throws(WireError) in try r.readU64("value") }
  }

  static func decode<T>(_ payload: [UInt8], _ what: String, _ body: (inout ByteReader) throws(WireError) -> T)
    throws(GuestLinkError) -> T
  {
    var r = ByteReader(payload)
    do throws(WireError) {
      let value = try body(&r)
      try r.expectEnd(what)
      return value
    } catch { throw GuestLinkError(.malformed, "\(what): \(error)") }
  }

  public static func bars(_ bars: [Int: Range<UInt64>]) -> [UInt8] {
    var w = ByteWriter()
    w.append(UInt32(bars.count))
    for (index, range) in bars.sorted(by: { $0.key < $1.key }) {
      w.append(UInt32(truncatingIfNeeded: index))
      w.append(range.lowerBound)
      w.append(range.upperBound)
    }
    return w.bytes
  }

  public static func readBars(_ payload: [UInt8]) throws(GuestLinkError) -> [Int: Range<UInt64>] {
    try decode(payload, "bars") { (r: inout ByteReader) throws(WireError) in
      let count = try r.readU32("bars")
      guard Int(count) * 20 <= r.remaining else {
        throw WireError(.lengthOutOfRange, at: r.offset, field: "bars")
      }
      var bars: [Int: Range<UInt64>] = [:]
      for _ in 0..<count {
        let index = Int(try r.readU32("index"))
        let lower = try r.readU64("lower")
        let upper = try r.readU64("upper")
        guard lower <= upper else { throw WireError(.invalidValue, at: r.offset - 16, field: "bar range") }
        bars[index] = lower..<upper
      }
      return bars
    }
  }

  public static func notifications(_ list: [HostNotification]) -> [UInt8] {
    var w = ByteWriter()
    w.append(UInt32(list.count))
    for notification in list {
      switch notification {
      case .interrupt(let function, let vector):
        w.append(UInt8(1))
        w.append(function.rawValue)
        w.append(vector)
      case .tdiStateChanged(let function, let from, let to):
        w.append(UInt8(2))
        w.append(function.rawValue)
        w.append(from.rawValue)
        w.append(to.rawValue)
      }
    }
    return w.bytes
  }

  public static func readNotifications(_ payload: [UInt8]) throws(GuestLinkError) -> [HostNotification] {
    try decode(payload, "notifications") { (r: inout ByteReader) throws(WireError) in
      let count = try r.readU32("notifications")
      guard Int(count) * 4 <= r.remaining else {
        throw WireError(.lengthOutOfRange, at: r.offset, field: "notifications")
      }
      var list: [HostNotification] = []
      for _ in 0..<count {
        let at = r.offset
        let tag = try r.readU8("notification")
        let function = RequesterID(rawValue: try r.readU16("function"))
        switch tag {
        case 1: list.append(.interrupt(function, vector: try r.readU16("vector")))
        case 2: list.append(.tdiStateChanged(function, from: try r.readState(), to: try r.readState()))
        default: throw WireError(.invalidValue, at: at, field: "notification")
        }
      }
      return list
    }
  }

  public static func tsm(_ response: GuestTSMResponse) -> [UInt8] {
    var w = ByteWriter()
    switch response {
    case .done: w.append(UInt8(0))
    case .evidence(let e):
      w.append(UInt8(1))
      w.append(UInt32(e.certificateChain.count))
      for certificate in e.certificateChain { w.appendBlob(certificate) }
      w.appendBlob(e.measurementsResponse)
      w.append(e.signedMeasurements.version.rawValue)
      w.append(UInt8(e.signedMeasurements.hash == .sha384 ? 1 : 0))
      w.appendBlob(e.signedMeasurements.nonce)
      w.appendBlob(e.signedMeasurements.signedTranscript)
      w.appendBlob(e.signedMeasurements.signature)
      w.appendBlob(e.interfaceReport)
      w.appendBlob(e.reportDigest)
      w.append(e.tdiState.rawValue)
      w.append(e.mmioReportingOffset)
    }
    return w.bytes
  }

  public static func readTSM(_ payload: [UInt8]) throws(GuestLinkError) -> GuestTSMResponse {
    try decode(payload, "TSM response") { (r: inout ByteReader) throws(WireError) in
      let at = r.offset
      switch try r.readU8("response") {
      case 0: return .done
      case 1:
        let count = try r.readU32("certificates")
        guard Int(count) * 4 <= r.remaining else {
          throw WireError(.lengthOutOfRange, at: r.offset, field: "certificates")
        }
        var chain: [[UInt8]] = []
        for _ in 0..<count { chain.append(try r.readBlob("certificate")) }
        let response = try r.readBlob("measurements")
        let version = SPDMVersion(rawValue: try r.readU8("version"))
        let hash: HashAlgorithm = try r.readU8("hash") == 1 ? .sha384 : .sha256
        let signed = SignedMeasurementsEvidence(
          version: version, hash: hash, nonce: try r.readBlob("nonce"),
          signedTranscript: try r.readBlob("transcript"), signature: try r.readBlob("signature"))
        return .evidence(
          DeviceEvidence(
            certificateChain: chain, measurementsResponse: response, signedMeasurements: signed,
            interfaceReport: try r.readBlob("report"), reportDigest: try r.readBlob("digest"),
            tdiState: try r.readState(), mmioReportingOffset: try r.readU64("offset")))
      default: throw WireError(.invalidValue, at: at, field: "response")
      }
    }
  }

  public static func states(_ entries: [TDIStateEntry]) -> [UInt8] {
    var w = ByteWriter()
    w.append(UInt32(entries.count))
    for entry in entries {
      w.append(entry.function.rawValue)
      w.append(entry.state.map { $0.rawValue } ?? 0xFF)
    }
    return w.bytes
  }

  public static func readStates(_ payload: [UInt8]) throws(GuestLinkError) -> [TDIStateEntry] {
    try decode(payload, "TDI states") { (r: inout ByteReader) throws(WireError) in
      let count = try r.readU32("entries")
      guard Int(count) * 3 <= r.remaining else {
        throw WireError(.lengthOutOfRange, at: r.offset, field: "entries")
      }
      var entries: [TDIStateEntry] = []
      for _ in 0..<count {
        let function = RequesterID(rawValue: try r.readU16("function"))
        let at = r.offset
        let raw = try r.readU8("state")
        if raw == 0xFF {
          entries.append(TDIStateEntry(function: function, state: nil))
        } else {
          guard let state = TDIState(rawValue: raw) else {
            throw WireError(.invalidValue, at: at, field: "state")
          }
          entries.append(TDIStateEntry(function: function, state: state))
        }
      }
      return entries
    }
  }

  /// Trace records as JSON lines (the `--trace` format, read back by the same decoder).
  public static func records(_ records: [TraceRecord]) -> [UInt8] {
    var w = ByteWriter()
    w.append(UInt32(records.count))
    for record in records { w.appendString(record.jsonLine) }
    return w.bytes
  }

  public static func readRecords(_ payload: [UInt8]) throws(GuestLinkError) -> [TraceRecord] {
    let lines = try decode(payload, "records") { (r: inout ByteReader) throws(WireError) in
      let count = try r.readU32("records")
      guard Int(count) * 4 <= r.remaining else {
        throw WireError(.lengthOutOfRange, at: r.offset, field: "records")
      }
      var lines: [String] = []
      for _ in 0..<count { lines.append(try r.readString("record")) }
      return lines
    }
    var records: [TraceRecord] = []
    for line in lines {
      do throws(TraceJSONError) { records.append(try TraceRecord(jsonLine: line)) } catch {
        throw GuestLinkError(.malformed, "record: \(error)")
      }
    }
    return records
  }

  public static func sessions(_ sessions: [SPDMSessionSecrets]) -> [UInt8] {
    var w = ByteWriter()
    w.appendString(SessionKeysFile.write(sessions))
    return w.bytes
  }

  public static func readSessions(_ payload: [UInt8]) throws(GuestLinkError) -> [SPDMSessionSecrets] {
    let text = try decode(payload, "sessions") { (r: inout ByteReader) throws(WireError) in
      try r.readString("sessions")
    }
    do throws(SessionKeysFileError) { return try SessionKeysFile.parse(text) } catch {
      throw GuestLinkError(.malformed, "sessions: \(error)")
    }
  }
}

extension ByteReader {
  mutating func readState() throws(WireError) -> TDIState {
    let at = offset
    guard let state = TDIState(rawValue: try readU8("TDI state")) else {
      throw WireError(.invalidValue, at: at, field: "TDI state")
    }
    return state
  }
}
