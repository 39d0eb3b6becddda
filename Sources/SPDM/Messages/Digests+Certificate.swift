public import CoveWire

/// GET_DIGESTS (DSP0274 "GET_DIGESTS request message format" table): header only.
public struct GetDigestsRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.getDigests
  public var version: SPDMVersion
  public init(version: SPDMVersion) { self.version = version }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "GET_DIGESTS").version
    try reader.expectEnd("GET_DIGESTS")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, 0, 0] }
}

/// DIGESTS (DSP0274 "Successful DIGESTS response message format" table): Param1 = SupportedSlotMask
/// (1.3; reserved before), Param2 = ProvisionedSlotMask (SlotMask before 1.3), then one H-byte digest per
/// bit set in Param2, lowest slot first. The 1.3 MULTI_KEY_CONN trailer (KeyPairID, CertificateInfo,
/// KeyUsageMask per slot) is not supported.
public struct DigestsResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.digests
  public var version: SPDMVersion
  public var supportedSlotMask: UInt8
  public var provisionedSlotMask: UInt8
  public var digests: [[UInt8]]

  public init(
    version: SPDMVersion, supportedSlotMask: UInt8 = 0, provisionedSlotMask: UInt8, digests: [[UInt8]]
  ) {
    self.version = version
    self.supportedSlotMask = supportedSlotMask
    self.provisionedSlotMask = provisionedSlotMask
    self.digests = digests
  }

  public init(parsing bytes: [UInt8], hashSize: Int) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "DIGESTS")
    version = header.version
    supportedSlotMask = header.param1
    provisionedSlotMask = header.param2
    digests = []
    for _ in 0..<provisionedSlotMask.nonzeroBitCount {
      digests.append(try reader.readBytes(hashSize, "Digest"))
    }
    try reader.expectEnd("DIGESTS")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    SPDMHeader(
      version: version, code: Self.code.rawValue, param1: supportedSlotMask, param2: provisionedSlotMask
    )
    .encode(into: &writer)
    for digest in digests { writer.append(contentsOf: digest) }
    return writer.bytes
  }
}

/// GET_CERTIFICATE (DSP0274 "GET_CERTIFICATE request message format" table): Param1 bits 3:0 SlotID,
/// Param2 request attributes (1.3, kept raw), Offset u16, Length u16.
public struct GetCertificateRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.getCertificate
  public var version: SPDMVersion
  public var slotID: UInt8
  /// Param2 (1.3 "Request attributes", bit 0 SlotSizeRequested); reserved before 1.3.
  public var attributes: UInt8
  public var offset: UInt16
  public var length: UInt16

  public init(version: SPDMVersion, slotID: UInt8, attributes: UInt8 = 0, offset: UInt16, length: UInt16) {
    self.version = version
    self.slotID = slotID
    self.attributes = attributes
    self.offset = offset
    self.length = length
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "GET_CERTIFICATE")
    version = header.version
    slotID = header.param1 & 0x0F
    attributes = header.param2
    offset = try reader.readU16("Offset")
    length = try reader.readU16("Length")
    try reader.expectEnd("GET_CERTIFICATE")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    SPDMHeader(version: version, code: Self.code.rawValue, param1: slotID & 0x0F, param2: attributes)
      .encode(into: &writer)
    writer.append(offset)
    writer.append(length)
    return writer.bytes
  }
}

/// CERTIFICATE (DSP0274 "Successful CERTIFICATE response message format" table): Param1 bits 3:0
/// SlotID, Param2 CertificateInfo (1.3, kept raw), PortionLength u16, RemainderLength u16,
/// CertChain[PortionLength].
public struct CertificateResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.certificate
  public var version: SPDMVersion
  public var slotID: UInt8
  /// Param2 (1.3 "Response attributes", bits 2:0 CertModel); reserved before 1.3.
  public var certificateInfo: UInt8
  public var portion: [UInt8]
  public var remainderLength: UInt16

  public init(
    version: SPDMVersion, slotID: UInt8, certificateInfo: UInt8 = 0, portion: [UInt8], remainderLength: UInt16
  ) {
    self.version = version
    self.slotID = slotID
    self.certificateInfo = certificateInfo
    self.portion = portion
    self.remainderLength = remainderLength
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "CERTIFICATE")
    version = header.version
    slotID = header.param1 & 0x0F
    certificateInfo = header.param2
    // PortionLength is a u16 and the portion must be present in full; no tighter bound exists.
    let portionLength = Int(try reader.readU16("PortionLength"))
    remainderLength = try reader.readU16("RemainderLength")
    portion = try reader.readBytes(portionLength, "CertChain")
    try reader.expectEnd("CERTIFICATE")
  }

  public func encode() -> [UInt8] {
    precondition(portion.count <= Int(UInt16.max), "PortionLength is a u16")
    var writer = ByteWriter(capacity: 8 + portion.count)
    SPDMHeader(version: version, code: Self.code.rawValue, param1: slotID & 0x0F, param2: certificateInfo)
      .encode(into: &writer)
    writer.append(UInt16(portion.count))
    writer.append(remainderLength)
    writer.append(contentsOf: portion)
    return writer.bytes
  }
}

/// A certificate chain as stored in a slot and returned by GET_CERTIFICATE (DSP0274 "Certificate chain
/// format" table, 1.2/1.3): Length u16 (the whole chain, this header included), Reserved u16,
/// RootHash[H], Certificates (ASN.1 DER, root first, leaf last).
public struct SPDMCertificateChain: Hashable, Sendable {
  /// The header is Length u16 + Reserved u16.
  public static let headerSize = 4
  public var length: UInt16
  public var rootHash: [UInt8]
  public var certificates: [UInt8]

  public init(rootHash: [UInt8], certificates: [UInt8]) {
    let total = Self.headerSize + rootHash.count + certificates.count
    // Length is a u16 in 1.2/1.3, so a chain is at most 65535 bytes.
    precondition(total <= Int(UInt16.max), "certificate chain longer than 65535 bytes")
    self.length = UInt16(total)
    self.rootHash = rootHash
    self.certificates = certificates
  }

  public init(parsing bytes: [UInt8], hashSize: Int) throws(WireError) {
    var reader = ByteReader(bytes)
    length = try reader.readU16("Length")
    // "Length: Total length of the certificate chain, in bytes, including all fields in this table."
    guard Int(length) == bytes.count else { throw WireError(.lengthOutOfRange, at: 0, field: "Length") }
    try reader.skip(2, "Reserved")
    rootHash = try reader.readBytes(hashSize, "RootHash")
    certificates = reader.readRest()
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: Int(length))
    writer.append(length)
    writer.append(UInt16(0))
    writer.append(contentsOf: rootHash)
    writer.append(contentsOf: certificates)
    return writer.bytes
  }

  /// Splits `certificates` into its DER certificates. Each must be a SEQUENCE (tag 0x30) with a definite
  /// length in minimal form (X.690 §10.1 DER: short form below 128, otherwise the fewest length octets);
  /// indefinite (0x80) and overlong lengths are rejected. Offsets in errors count from the chain start.
  public func certificateDERs() throws(WireError) -> [[UInt8]] {
    let base = Self.headerSize + rootHash.count
    var result: [[UInt8]] = []
    var index = 0
    while index < certificates.count {
      let start = index
      guard certificates[index] == 0x30 else {
        throw WireError(.invalidValue, at: base + index, field: "Certificate tag (expected SEQUENCE)")
      }
      index += 1
      guard index < certificates.count else {
        throw WireError(.truncated, at: base + index, field: "DER length")
      }
      let first = certificates[index]
      index += 1
      var contentLength = 0
      if first < 0x80 {
        contentLength = Int(first)
      } else {
        let octets = Int(first & 0x7F)
        // 0x80 is the BER indefinite form, not allowed in DER; a chain is at most 65535 bytes, so more
        // than two length octets (or a leading zero octet) is overlong.
        guard octets >= 1, octets <= 2 else {
          throw WireError(.invalidValue, at: base + index - 1, field: "DER length form")
        }
        guard index + octets <= certificates.count else {
          throw WireError(.truncated, at: base + index, field: "DER length")
        }
        for octet in certificates[index..<index + octets] { contentLength = contentLength << 8 | Int(octet) }
        guard certificates[index] != 0, contentLength >= 0x80 else {
          throw WireError(.invalidValue, at: base + index - 1, field: "DER length not minimal")
        }
        index += octets
      }
      guard contentLength <= certificates.count - index else {
        throw WireError(.truncated, at: base + index, field: "Certificate")
      }
      index += contentLength
      result.append(Array(certificates[start..<index]))
    }
    return result
  }
}
