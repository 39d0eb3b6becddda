/// A PCI function address: segment (PCI domain), bus, device and function.
///
/// Cove names every function by its BDF rather than a bare integer, because the same function is
/// addressed three ways — by text on the command line and in traces ("00:1f.7"), by Requester ID in
/// TLPs (PCIe 6.x §2.2.6.2), and by FUNCTION_ID in TDISP — and mixing them up is a classic
/// confused-deputy bug in device assignment.
///
/// The segment is not part of the Requester ID; it selects the ECAM region (PCIe 6.x §7.2.2) and
/// defaults to 0, so `0000:00:1f.7` and `00:1f.7` name the same function.
public struct BDF: Hashable, Sendable, CustomStringConvertible {
  /// PCI segment group (domain). Not carried in TLP Requester IDs.
  public var segment: UInt16
  public var bus: UInt8
  /// Device number, 0...31: 5 bits of the Requester ID (PCIe 6.x §2.2.6.2).
  public var device: UInt8
  /// Function number, 0...7: 3 bits of the Requester ID (non-ARI; PCIe 6.x §2.2.6.2).
  public var function: UInt8

  /// The largest device number: the field is 5 bits wide (PCIe 6.x §2.2.6.2).
  public static let maxDevice: UInt8 = 31
  /// The largest function number: the field is 3 bits wide without ARI (PCIe 6.x §2.2.6.2).
  public static let maxFunction: UInt8 = 7

  /// Builds an address from its parts. Out-of-range device or function numbers are a programming
  /// error (they cannot come from a peer: text goes through ``init(_:)``, wire values through
  /// ``RequesterID``).
  public init(segment: UInt16 = 0, bus: UInt8, device: UInt8, function: UInt8) {
    precondition(device <= Self.maxDevice, "PCI device number \(device) > 31")
    precondition(function <= Self.maxFunction, "PCI function number \(function) > 7")
    self.segment = segment
    self.bus = bus
    self.device = device
    self.function = function
  }

  /// Parses `bb:dd.f` or `ssss:bb:dd.f` (hexadecimal, the lspci / sysfs spelling). Field widths are
  /// exact — 4 digits of segment, 2 of bus, 2 of device, 1 of function — so `100:00.0` is rejected
  /// rather than silently truncated. Returns nil for anything else, including device > 1f or
  /// function > 7.
  public init?(_ text: String) {
    let utf8 = Array(text.utf8)
    let colon = UInt8(ascii: ":")
    let dot = UInt8(ascii: ".")
    let segmentDigits: Int
    switch utf8.count {
    case 7: segmentDigits = 0  // bb:dd.f
    case 12: segmentDigits = 4  // ssss:bb:dd.f
    default: return nil
    }
    var segment: UInt16 = 0
    var rest = utf8[...]
    if segmentDigits > 0 {
      guard let value = Self.hex(rest.prefix(4)), rest.dropFirst(4).first == colon else { return nil }
      segment = UInt16(value)
      rest = rest.dropFirst(5)
    }
    // rest is exactly "bb:dd.f"
    guard rest.count == 7,
      let bus = Self.hex(rest.prefix(2)),
      rest[rest.startIndex + 2] == colon,
      let device = Self.hex(rest.dropFirst(3).prefix(2)),
      rest[rest.startIndex + 5] == dot,
      let function = Self.hex(rest.suffix(1)),
      device <= UInt32(Self.maxDevice),
      function <= UInt32(Self.maxFunction)
    else { return nil }
    self.init(
      segment: segment, bus: UInt8(bus), device: UInt8(device), function: UInt8(function))
  }

  /// `00:1f.7`, or `0001:00:1f.7` when the segment is not 0 (lowercase, as lspci prints).
  public var description: String {
    let busDeviceFunction = "\(Self.pad(bus, 2)):\(Self.pad(device, 2)).\(String(function, radix: 16))"
    return segment == 0 ? busDeviceFunction : "\(Self.pad(segment, 4)):\(busDeviceFunction)"
  }

  private static func pad(_ value: some BinaryInteger, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }

  /// Strict hex: every byte must be a hex digit; at most 4 digits, so no overflow.
  private static func hex(_ digits: ArraySlice<UInt8>) -> UInt32? {
    guard !digits.isEmpty, digits.count <= 4 else { return nil }
    var value: UInt32 = 0
    for char in digits {
      let nibble: UInt8
      switch char {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = char - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = char - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = char - UInt8(ascii: "A") + 10
      default: return nil
      }
      value = value << 4 | UInt32(nibble)
    }
    return value
  }
}

/// The 16-bit Requester ID that identifies the function issuing a TLP: bus in bits 15:8, device in
/// bits 7:3, function in bits 2:0 (PCIe 6.x §2.2.6.2, non-ARI form).
///
/// The IOMMU model keys its device tables by Requester ID, and TDISP's FUNCTION_ID carries it in
/// bits 15:0, so it is a distinct type rather than a `UInt16`. Every 16-bit value is a valid
/// Requester ID, so values read from the wire need no checking.
public struct RequesterID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt16

  public init(rawValue: UInt16) { self.rawValue = rawValue }

  /// The Requester ID of `bdf`. The segment is dropped: it is not part of the ID (PCIe 6.x §2.2.6.2).
  public init(_ bdf: BDF) {
    rawValue = UInt16(bdf.bus) << 8 | UInt16(bdf.device) << 3 | UInt16(bdf.function)
  }

  public var bus: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 8) }
  public var device: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 3) & 0x1F }
  public var function: UInt8 { UInt8(truncatingIfNeeded: rawValue) & 0x07 }

  /// The function this ID names, in the given segment (the ID itself does not carry one).
  public func bdf(segment: UInt16 = 0) -> BDF {
    BDF(segment: segment, bus: bus, device: device, function: function)
  }

  /// The BDF spelling, e.g. `00:1f.7`, so traces show one format for both types.
  public var description: String { bdf().description }
}

extension BDF {
  /// This function's Requester ID (PCIe 6.x §2.2.6.2).
  public var requesterID: RequesterID { RequesterID(self) }
}
