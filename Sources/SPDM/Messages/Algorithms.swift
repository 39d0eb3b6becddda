public import CoveWire

/// AlgType of an algorithm structure table entry (DSP0274 "Algorithm request structure" and the
/// per-type DHE / AEAD / ReqBaseAsymAlg / KeySchedule tables, 1.1+).
public struct AlgStructType: RawRepresentable, Hashable, Comparable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let dhe = AlgStructType(rawValue: 2)
  public static let aead = AlgStructType(rawValue: 3)
  public static let reqBaseAsymAlg = AlgStructType(rawValue: 4)
  public static let keySchedule = AlgStructType(rawValue: 5)
  /// The four types a 1.1–1.3 message may carry, in the required ascending order.
  public static let all: [AlgStructType] = [.dhe, .aead, .reqBaseAsymAlg, .keySchedule]
  public static func < (lhs: AlgStructType, rhs: AlgStructType) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// An extended algorithm (DSP0274 "Extended Algorithm field format" table): Registry ID u8,
/// Reserved u8, Algorithm ID u16. Kept verbatim; Cove negotiates none.
public struct ExtendedAlgorithm: Hashable, Sendable {
  public var registryID: UInt8
  public var algorithmID: UInt16
  public init(registryID: UInt8, algorithmID: UInt16) {
    self.registryID = registryID
    self.algorithmID = algorithmID
  }

  static func read(_ reader: inout ByteReader, _ field: String) throws(WireError) -> ExtendedAlgorithm {
    let registry = try reader.readU8(field)
    try reader.skip(1, field)
    return ExtendedAlgorithm(registryID: registry, algorithmID: try reader.readU16(field))
  }

  func encode(into writer: inout ByteWriter) {
    writer.append(registryID)
    writer.append(UInt8(0))
    writer.append(algorithmID)
  }
}

/// One decoded AlgStruct: AlgType u8, AlgCount u8 (bits 7:4 = fixed byte count, which shall be 2;
/// bits 3:0 = ExtAlgCount), AlgSupported u16, AlgExternal[ExtAlgCount] (4 bytes each).
struct AlgStructEntry {
  var type: AlgStructType
  var supported: UInt16
  var extended: [ExtendedAlgorithm]

  /// Reads `count` entries, enforcing the ordering and fixed-size rules.
  static func readTable(
    _ reader: inout ByteReader, count: Int, maxExtendedPerStruct: Int
  ) throws(WireError) -> [AlgStructEntry] {
    var entries: [AlgStructEntry] = []
    var previous: AlgStructType?
    for _ in 0..<count {
      let typeOffset = reader.offset
      let type = AlgStructType(rawValue: try reader.readU8("AlgType"))
      // 1.1–1.3 define AlgType 2...5 only.
      guard AlgStructType.all.contains(type) else {
        throw WireError(.invalidValue, at: typeOffset, field: "AlgType")
      }
      // "AlgType shall monotonically increase for subsequent entries" (DSP0274 NEGOTIATE_ALGORITHMS
      // request, AlgStructure description), so each type appears at most once.
      if let previous, type <= previous {
        throw WireError(.invalidValue, at: typeOffset, field: "AlgType (not ascending)")
      }
      previous = type
      let countOffset = reader.offset
      let algCount = try reader.readU8("AlgCount")
      // "FixedAlgCount ... shall be 2" for every AlgType defined in 1.1–1.3 (AlgSupported is a u16).
      guard algCount >> 4 == 2 else {
        throw WireError(.invalidValue, at: countOffset, field: "AlgCount.FixedAlgCount")
      }
      let extCount = Int(algCount & 0xF)
      guard extCount <= maxExtendedPerStruct else {
        throw WireError(.lengthOutOfRange, at: countOffset, field: "AlgCount.ExtAlgCount")
      }
      let supported = try reader.readU16("AlgSupported")
      var extended: [ExtendedAlgorithm] = []
      for _ in 0..<extCount { extended.append(try ExtendedAlgorithm.read(&reader, "AlgExternal")) }
      entries.append(AlgStructEntry(type: type, supported: supported, extended: extended))
    }
    return entries
  }

  func encode(into writer: inout ByteWriter) {
    precondition(extended.count <= 15, "ExtAlgCount is a nibble")
    writer.append(type.rawValue)
    writer.append(UInt8(2 << 4) | UInt8(extended.count))
    writer.append(supported)
    for algorithm in extended { algorithm.encode(into: &writer) }
  }
}

/// NEGOTIATE_ALGORITHMS (DSP0274 "NEGOTIATE_ALGORITHMS request message format" table). Param1 = number
/// of AlgStructs; Length u16 (whole message); MeasurementSpecification u8; OtherParamsSupport u8 (1.2);
/// BaseAsymAlgo u32; BaseHashAlgo u32; Reserved[12]; ExtAsymCount u8; ExtHashCount u8; Reserved u8;
/// MELspecification u8 (1.3) — 32 bytes — then ExtAsym[4*A], ExtHash[4*E], AlgStructs (1.1+).
public struct NegotiateAlgorithmsRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.negotiateAlgorithms
  /// "Length ... shall be less than or equal to 128 bytes" (1.1–1.3); 64 bytes in 1.0.
  public static func maxLength(for version: SPDMVersion) -> Int { version >= .v11 ? 128 : 64 }
  /// Total extended algorithms (ExtAsymCount + ExtHashCount + every ExtAlgCount) "shall be less than or
  /// equal to 20" (1.1–1.3); 8 in 1.0. libspdm: SPDM_NEGOTIATE_ALGORITHMS_REQUEST_MAX_EXT_ALG_COUNT.
  public static func maxExtendedAlgorithms(for version: SPDMVersion) -> Int { version >= .v11 ? 20 : 8 }

  public var version: SPDMVersion
  public var measurementSpecification: MeasurementSpecification
  /// Bits 3:0 OpaqueDataFmt support (bit 1 = format 1), bit 4 MultiKeyConn (1.3). Reserved in 1.0/1.1.
  public var otherParamsSupport: UInt8
  public var baseAsymAlgorithms: BaseAsymAlgorithms
  public var baseHashAlgorithms: BaseHashAlgorithms
  /// MELspecification (1.3; reserved before).
  public var melSpecification: MELSpecification
  public var extAsym: [ExtendedAlgorithm]
  public var extHash: [ExtendedAlgorithm]
  public var dheGroups: DHEGroups
  public var aeadCipherSuites: AEADCipherSuites
  /// The ReqBaseAsymAlg AlgStruct (u16 on the wire).
  public var requesterBaseAsymAlgorithms: BaseAsymAlgorithms
  public var keySchedules: KeyScheduleAlgorithms
  /// Which AlgStructs the message carries, ascending; defaults to all four for 1.1+, none for 1.0.
  public var algStructTypes: [AlgStructType]
  /// AlgExternal entries per AlgStruct, kept verbatim.
  public var algStructExtensions: [AlgStructType: [ExtendedAlgorithm]]

  public init(
    version: SPDMVersion, measurementSpecification: MeasurementSpecification = .dmtf,
    otherParamsSupport: UInt8 = 0, baseAsymAlgorithms: BaseAsymAlgorithms,
    baseHashAlgorithms: BaseHashAlgorithms, melSpecification: MELSpecification = [],
    extAsym: [ExtendedAlgorithm] = [], extHash: [ExtendedAlgorithm] = [], dheGroups: DHEGroups = [],
    aeadCipherSuites: AEADCipherSuites = [], requesterBaseAsymAlgorithms: BaseAsymAlgorithms = [],
    keySchedules: KeyScheduleAlgorithms = [], algStructTypes: [AlgStructType]? = nil,
    algStructExtensions: [AlgStructType: [ExtendedAlgorithm]] = [:]
  ) {
    self.version = version
    self.measurementSpecification = measurementSpecification
    self.otherParamsSupport = otherParamsSupport
    self.baseAsymAlgorithms = baseAsymAlgorithms
    self.baseHashAlgorithms = baseHashAlgorithms
    self.melSpecification = melSpecification
    self.extAsym = extAsym
    self.extHash = extHash
    self.dheGroups = dheGroups
    self.aeadCipherSuites = aeadCipherSuites
    self.requesterBaseAsymAlgorithms = requesterBaseAsymAlgorithms
    self.keySchedules = keySchedules
    self.algStructTypes = algStructTypes ?? (version >= .v11 ? AlgStructType.all : [])
    self.algStructExtensions = algStructExtensions
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "NEGOTIATE_ALGORITHMS")
    version = header.version
    let length = Int(try reader.readU16("Length"))
    guard length <= Self.maxLength(for: version) else {
      throw WireError(.lengthOutOfRange, at: 4, field: "Length")
    }
    measurementSpecification = MeasurementSpecification(
      rawValue: try reader.readU8("MeasurementSpecification"))
    otherParamsSupport = try reader.readU8("OtherParamsSupport")
    baseAsymAlgorithms = BaseAsymAlgorithms(rawValue: try reader.readU32("BaseAsymAlgo"))
    baseHashAlgorithms = BaseHashAlgorithms(rawValue: try reader.readU32("BaseHashAlgo"))
    try reader.skip(12, "Reserved")
    let extAsymCount = Int(try reader.readU8("ExtAsymCount"))
    let extHashCount = Int(try reader.readU8("ExtHashCount"))
    let maxExt = Self.maxExtendedAlgorithms(for: version)
    guard extAsymCount + extHashCount <= maxExt else {
      throw WireError(.lengthOutOfRange, at: 28, field: "ExtAsymCount + ExtHashCount")
    }
    try reader.skip(1, "Reserved")
    melSpecification = MELSpecification(rawValue: try reader.readU8("MELspecification"))
    extAsym = []
    for _ in 0..<extAsymCount { extAsym.append(try ExtendedAlgorithm.read(&reader, "ExtAsym")) }
    extHash = []
    for _ in 0..<extHashCount { extHash.append(try ExtendedAlgorithm.read(&reader, "ExtHash")) }
    // 1.1–1.3 define four AlgTypes, each at most once (libspdm MAX_NUM_STRUCT_TABLE_ALG = 4).
    let structCount = Int(header.param1)
    guard structCount <= AlgStructType.all.count, version >= .v11 || structCount == 0 else {
      throw WireError(.lengthOutOfRange, at: 2, field: "Param1 (number of AlgStructs)")
    }
    let entries = try AlgStructEntry.readTable(
      &reader, count: structCount, maxExtendedPerStruct: maxExt - extAsymCount - extHashCount)
    guard entries.reduce(0, { $0 + $1.extended.count }) + extAsymCount + extHashCount <= maxExt else {
      throw WireError(.lengthOutOfRange, at: 28, field: "total extended algorithm count")
    }
    dheGroups = []
    aeadCipherSuites = []
    requesterBaseAsymAlgorithms = []
    keySchedules = []
    algStructTypes = []
    algStructExtensions = [:]
    for entry in entries {
      algStructTypes.append(entry.type)
      if !entry.extended.isEmpty { algStructExtensions[entry.type] = entry.extended }
      switch entry.type {
      case .dhe: dheGroups = DHEGroups(rawValue: entry.supported)
      case .aead: aeadCipherSuites = AEADCipherSuites(rawValue: entry.supported)
      case .reqBaseAsymAlg:
        requesterBaseAsymAlgorithms = BaseAsymAlgorithms(rawValue: UInt32(entry.supported))
      default: keySchedules = KeyScheduleAlgorithms(rawValue: entry.supported)
      }
    }
    try reader.expectEnd("NEGOTIATE_ALGORITHMS")
    // "Length: length of the entire request message, in bytes."
    guard length == bytes.count else { throw WireError(.lengthOutOfRange, at: 4, field: "Length") }
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 64)
    SPDMHeader(version: version, code: Self.code.rawValue, param1: UInt8(algStructTypes.count))
      .encode(into: &writer)
    writer.append(UInt16(0))  // Length, patched below
    writer.append(measurementSpecification.rawValue)
    writer.append(otherParamsSupport)
    writer.append(baseAsymAlgorithms.rawValue)
    writer.append(baseHashAlgorithms.rawValue)
    writer.appendZeros(12)
    writer.append(UInt8(extAsym.count))
    writer.append(UInt8(extHash.count))
    writer.append(UInt8(0))
    writer.append(melSpecification.rawValue)
    for algorithm in extAsym { algorithm.encode(into: &writer) }
    for algorithm in extHash { algorithm.encode(into: &writer) }
    for type in algStructTypes {
      AlgStructEntry(type: type, supported: supported(type), extended: algStructExtensions[type] ?? [])
        .encode(into: &writer)
    }
    writer.patch(UInt16(writer.count), at: 4)
    return writer.bytes
  }

  private func supported(_ type: AlgStructType) -> UInt16 {
    switch type {
    case .dhe: dheGroups.rawValue
    case .aead: aeadCipherSuites.rawValue
    case .reqBaseAsymAlg: UInt16(truncatingIfNeeded: requesterBaseAsymAlgorithms.rawValue)
    default: keySchedules.rawValue
    }
  }
}

/// ALGORITHMS (DSP0274 "Successful ALGORITHMS response message format" table). Param1 = number of
/// AlgStructs; Length u16; MeasurementSpecificationSel u8; OtherParamsSelection u8; MeasurementHashAlgo u32;
/// BaseAsymSel u32; BaseHashSel u32; Reserved[11]; MELspecificationSel u8 (1.3); ExtAsymSelCount u8;
/// ExtHashSelCount u8; Reserved u16 — 36 bytes — then ExtAsymSel, ExtHashSel, AlgStructs (1.1+).
public struct AlgorithmsResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.algorithms
  public var version: SPDMVersion
  public var measurementSpecificationSelection: MeasurementSpecification
  public var otherParamsSelection: UInt8
  public var measurementHashAlgorithm: MeasurementHashAlgorithms
  public var baseAsymSelection: BaseAsymAlgorithms
  public var baseHashSelection: BaseHashAlgorithms
  /// MELspecificationSel (1.3; reserved before).
  public var melSpecificationSelection: MELSpecification
  public var extAsymSelection: [ExtendedAlgorithm]
  public var extHashSelection: [ExtendedAlgorithm]
  public var dheGroup: DHEGroups
  public var aeadCipherSuite: AEADCipherSuites
  public var requesterBaseAsymAlgorithm: BaseAsymAlgorithms
  public var keySchedule: KeyScheduleAlgorithms
  public var algStructTypes: [AlgStructType]
  public var algStructExtensions: [AlgStructType: [ExtendedAlgorithm]]

  public init(
    version: SPDMVersion, measurementSpecificationSelection: MeasurementSpecification = .dmtf,
    otherParamsSelection: UInt8 = 0, measurementHashAlgorithm: MeasurementHashAlgorithms = [],
    baseAsymSelection: BaseAsymAlgorithms, baseHashSelection: BaseHashAlgorithms,
    melSpecificationSelection: MELSpecification = [], extAsymSelection: [ExtendedAlgorithm] = [],
    extHashSelection: [ExtendedAlgorithm] = [], dheGroup: DHEGroups = [],
    aeadCipherSuite: AEADCipherSuites = [], requesterBaseAsymAlgorithm: BaseAsymAlgorithms = [],
    keySchedule: KeyScheduleAlgorithms = [], algStructTypes: [AlgStructType]? = nil,
    algStructExtensions: [AlgStructType: [ExtendedAlgorithm]] = [:]
  ) {
    self.version = version
    self.measurementSpecificationSelection = measurementSpecificationSelection
    self.otherParamsSelection = otherParamsSelection
    self.measurementHashAlgorithm = measurementHashAlgorithm
    self.baseAsymSelection = baseAsymSelection
    self.baseHashSelection = baseHashSelection
    self.melSpecificationSelection = melSpecificationSelection
    self.extAsymSelection = extAsymSelection
    self.extHashSelection = extHashSelection
    self.dheGroup = dheGroup
    self.aeadCipherSuite = aeadCipherSuite
    self.requesterBaseAsymAlgorithm = requesterBaseAsymAlgorithm
    self.keySchedule = keySchedule
    self.algStructTypes = algStructTypes ?? (version >= .v11 ? AlgStructType.all : [])
    self.algStructExtensions = algStructExtensions
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "ALGORITHMS")
    version = header.version
    let length = Int(try reader.readU16("Length"))
    measurementSpecificationSelection = MeasurementSpecification(
      rawValue: try reader.readU8("MeasurementSpecificationSel"))
    otherParamsSelection = try reader.readU8("OtherParamsSelection")
    measurementHashAlgorithm = MeasurementHashAlgorithms(rawValue: try reader.readU32("MeasurementHashAlgo"))
    baseAsymSelection = BaseAsymAlgorithms(rawValue: try reader.readU32("BaseAsymSel"))
    baseHashSelection = BaseHashAlgorithms(rawValue: try reader.readU32("BaseHashSel"))
    try reader.skip(11, "Reserved")
    melSpecificationSelection = MELSpecification(rawValue: try reader.readU8("MELspecificationSel"))
    // A selection names at most one extended algorithm: "ExtAsymSelCount ... shall be either 0 or 1",
    // likewise ExtHashSelCount and each AlgStruct's ExtAlgCount.
    let extAsymCount = Int(try reader.readU8("ExtAsymSelCount"))
    guard extAsymCount <= 1 else { throw WireError(.lengthOutOfRange, at: 32, field: "ExtAsymSelCount") }
    let extHashCount = Int(try reader.readU8("ExtHashSelCount"))
    guard extHashCount <= 1 else { throw WireError(.lengthOutOfRange, at: 33, field: "ExtHashSelCount") }
    try reader.skip(2, "Reserved")
    extAsymSelection = []
    for _ in 0..<extAsymCount { extAsymSelection.append(try ExtendedAlgorithm.read(&reader, "ExtAsymSel")) }
    extHashSelection = []
    for _ in 0..<extHashCount { extHashSelection.append(try ExtendedAlgorithm.read(&reader, "ExtHashSel")) }
    let structCount = Int(header.param1)
    guard structCount <= AlgStructType.all.count, version >= .v11 || structCount == 0 else {
      throw WireError(.lengthOutOfRange, at: 2, field: "Param1 (number of AlgStructs)")
    }
    let entries = try AlgStructEntry.readTable(&reader, count: structCount, maxExtendedPerStruct: 1)
    dheGroup = []
    aeadCipherSuite = []
    requesterBaseAsymAlgorithm = []
    keySchedule = []
    algStructTypes = []
    algStructExtensions = [:]
    for entry in entries {
      algStructTypes.append(entry.type)
      if !entry.extended.isEmpty { algStructExtensions[entry.type] = entry.extended }
      switch entry.type {
      case .dhe: dheGroup = DHEGroups(rawValue: entry.supported)
      case .aead: aeadCipherSuite = AEADCipherSuites(rawValue: entry.supported)
      case .reqBaseAsymAlg: requesterBaseAsymAlgorithm = BaseAsymAlgorithms(rawValue: UInt32(entry.supported))
      default: keySchedule = KeyScheduleAlgorithms(rawValue: entry.supported)
      }
    }
    try reader.expectEnd("ALGORITHMS")
    // "Length: length of the response message, in bytes."
    guard length == bytes.count else { throw WireError(.lengthOutOfRange, at: 4, field: "Length") }
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 64)
    SPDMHeader(version: version, code: Self.code.rawValue, param1: UInt8(algStructTypes.count))
      .encode(into: &writer)
    writer.append(UInt16(0))  // Length, patched below
    writer.append(measurementSpecificationSelection.rawValue)
    writer.append(otherParamsSelection)
    writer.append(measurementHashAlgorithm.rawValue)
    writer.append(baseAsymSelection.rawValue)
    writer.append(baseHashSelection.rawValue)
    writer.appendZeros(11)
    writer.append(melSpecificationSelection.rawValue)
    writer.append(UInt8(extAsymSelection.count))
    writer.append(UInt8(extHashSelection.count))
    writer.append(UInt16(0))
    for algorithm in extAsymSelection { algorithm.encode(into: &writer) }
    for algorithm in extHashSelection { algorithm.encode(into: &writer) }
    for type in algStructTypes {
      AlgStructEntry(type: type, supported: selected(type), extended: algStructExtensions[type] ?? [])
        .encode(into: &writer)
    }
    writer.patch(UInt16(writer.count), at: 4)
    return writer.bytes
  }

  private func selected(_ type: AlgStructType) -> UInt16 {
    switch type {
    case .dhe: dheGroup.rawValue
    case .aead: aeadCipherSuite.rawValue
    case .reqBaseAsymAlg: UInt16(truncatingIfNeeded: requesterBaseAsymAlgorithm.rawValue)
    default: keySchedule.rawValue
    }
  }
}
