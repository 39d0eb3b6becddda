public import CoveScenario
import CoveWire
public import GuestABI
import IOMMU
public import PCIe
import SPDM
import TDISP

/// One call a guest makes over the link: every method of `GuestHostInterface` (the hypercalls) and
/// every method of `ScenarioHostControl` (the image's host steps and what the runner observes), one
/// operation code each. Guest memory itself never crosses: both processes map it.
public enum GuestLinkCall: Hashable, Sendable {
  case read(gpa: UInt64, count: Int)
  case write(gpa: UInt64, bytes: [UInt8])
  case copy(from: UInt64, to: UInt64, count: Int)
  case convert(gpa: UInt64, pages: Int, toShared: Bool)
  case configRead(RequesterID, offset: Int, size: Int)
  case configWrite(RequesterID, offset: Int, size: Int, value: UInt32)
  case mmioRead(RequesterID, address: UInt64)
  case mmioWrite(RequesterID, address: UInt64, value: UInt32)
  case bars(RequesterID)
  case viommuRead(VIOMMURegister)
  case viommuWrite(VIOMMURegister, UInt64)
  case tsm(GuestTSMRequest)
  case drainNotifications
  case hostStep(HostStep)
  case tdiStates
  case faultCount
  case collect
  case sessions

  static let operations: Set<UInt16> = Set(Array(0x01...0x0D) + Array(0x20...0x24))

  /// The operation code on the wire.
  var operation: UInt16 {
    switch self {
    case .read: 0x01
    case .write: 0x02
    case .copy: 0x03
    case .convert: 0x04
    case .configRead: 0x05
    case .configWrite: 0x06
    case .mmioRead: 0x07
    case .mmioWrite: 0x08
    case .bars: 0x09
    case .viommuRead: 0x0A
    case .viommuWrite: 0x0B
    case .tsm: 0x0C
    case .drainNotifications: 0x0D
    case .hostStep: 0x20
    case .tdiStates: 0x21
    case .faultCount: 0x22
    case .collect: 0x23
    case .sessions: 0x24
    }
  }

  public var encoded: [UInt8] {
    var w = ByteWriter()
    w.append(operation)
    switch self {
    case .read(let gpa, let count):
      w.append(gpa)
      w.append(UInt64(truncatingIfNeeded: count))
    case .write(let gpa, let bytes):
      w.append(gpa)
      w.appendBlob(bytes)
    case .copy(let from, let to, let count):
      w.append(from)
      w.append(to)
      w.append(UInt64(truncatingIfNeeded: count))
    case .convert(let gpa, let pages, let toShared):
      w.append(gpa)
      w.append(UInt64(truncatingIfNeeded: pages))
      w.append(UInt8(toShared ? 1 : 0))
    case .configRead(let function, let offset, let size):
      w.append(function.rawValue)
      w.append(UInt64(truncatingIfNeeded: offset))
      w.append(UInt64(truncatingIfNeeded: size))
    case .configWrite(let function, let offset, let size, let value):
      w.append(function.rawValue)
      w.append(UInt64(truncatingIfNeeded: offset))
      w.append(UInt64(truncatingIfNeeded: size))
      w.append(value)
    case .mmioRead(let function, let address):
      w.append(function.rawValue)
      w.append(address)
    case .mmioWrite(let function, let address, let value):
      w.append(function.rawValue)
      w.append(address)
      w.append(value)
    case .bars(let function): w.append(function.rawValue)
    case .viommuRead(let register): w.append(register.rawValue)
    case .viommuWrite(let register, let value):
      w.append(register.rawValue)
      w.append(value)
    case .tsm(let request): request.encode(into: &w)
    case .hostStep(let step): step.encode(into: &w)
    case .drainNotifications, .tdiStates, .faultCount, .collect, .sessions: break
    }
    return w.bytes
  }

  public init(decoding payload: [UInt8]) throws(GuestLinkError) {
    var r = ByteReader(payload)
    guard let operation = try? r.readU16("operation") else {
      throw GuestLinkError(.malformed, "call: no operation")
    }
    guard Self.operations.contains(operation) else {
      throw GuestLinkError(.unknownKind, "call operation 0x\(String(operation, radix: 16))")
    }
    do throws(WireError) {
      switch operation {
      case 0x01: self = .read(gpa: try r.readU64("gpa"), count: try r.readCount("count"))
      case 0x02: self = .write(gpa: try r.readU64("gpa"), bytes: try r.readBlob("bytes"))
      case 0x03:
        self = .copy(from: try r.readU64("from"), to: try r.readU64("to"), count: try r.readCount("count"))
      case 0x04:
        self = .convert(
          gpa: try r.readU64("gpa"), pages: try r.readCount("pages"), toShared: try r.readFlag("shared"))
      case 0x05:
        self = .configRead(
          RequesterID(rawValue: try r.readU16("function")), offset: try r.readCount("offset"),
          size: try r.readCount("size"))
      case 0x06:
        self = .configWrite(
          RequesterID(rawValue: try r.readU16("function")), offset: try r.readCount("offset"),
          size: try r.readCount("size"), value: try r.readU32("value"))
      case 0x07:
        self = .mmioRead(RequesterID(rawValue: try r.readU16("function")), address: try r.readU64("address"))
      case 0x08:
        self = .mmioWrite(
          RequesterID(rawValue: try r.readU16("function")), address: try r.readU64("address"),
          value: try r.readU32("value"))
      case 0x09: self = .bars(RequesterID(rawValue: try r.readU16("function")))
      case 0x0A: self = .viommuRead(VIOMMURegister(rawValue: try r.readU64("register")))
      case 0x0B:
        self = .viommuWrite(VIOMMURegister(rawValue: try r.readU64("register")), try r.readU64("value"))
      case 0x0C: self = .tsm(try GuestTSMRequest(from: &r))
      case 0x0D: self = .drainNotifications
      case 0x20: self = .hostStep(try HostStep(from: &r))
      case 0x21: self = .tdiStates
      case 0x22: self = .faultCount
      case 0x23: self = .collect
      case 0x24: self = .sessions
      default: throw WireError(.invalidValue, at: 0, field: "operation")
      }
      try r.expectEnd("call")
    } catch {
      throw GuestLinkError(.malformed, "call: \(error)")
    }
  }
}

extension ByteReader {
  /// A one-byte flag: 0 or 1, nothing else (so every call has exactly one encoding).
  mutating func readFlag(_ field: String) throws(WireError) -> Bool {
    let at = offset
    switch try readU8(field) {
    case 0: return false
    case 1: return true
    default: throw WireError(.invalidValue, at: at, field: field)
    }
  }

  /// A count or offset: an Int as its 64-bit two's-complement pattern, so a negative or huge value
  /// reaches the host as the guest passed it and is refused there exactly as in one process.
  mutating func readCount(_ field: String) throws(WireError) -> Int {
    Int(Int64(bitPattern: try readU64(field)))
  }
}

extension GuestTSMRequest {
  func encode(into w: inout ByteWriter) {
    switch self {
    case .lock(let f):
      w.append(UInt8(1))
      w.append(f.rawValue)
    case .evidence(let f, let nonce):
      w.append(UInt8(2))
      w.append(f.rawValue)
      w.appendBlob(nonce)
    case .accept(let f):
      w.append(UInt8(3))
      w.append(f.rawValue)
    case .unlock(let f):
      w.append(UInt8(4))
      w.append(f.rawValue)
    }
  }

  init(from r: inout ByteReader) throws(WireError) {
    let code = try r.readU8("request")
    let function = RequesterID(rawValue: try r.readU16("function"))
    switch code {
    case 1: self = .lock(function)
    case 2: self = .evidence(function, nonce: try r.readBlob("nonce"))
    case 3: self = .accept(function)
    case 4: self = .unlock(function)
    default: throw WireError(.invalidValue, at: r.offset - 3, field: "request")
    }
  }
}

extension HostStep {
  func encode(into w: inout ByteWriter) {
    switch self {
    case .configWrite(let f, let offset, let size, let value):
      w.append(UInt8(1))
      w.append(f.rawValue)
      w.append(UInt64(truncatingIfNeeded: offset))
      w.append(UInt64(truncatingIfNeeded: size))
      w.append(value)
    case .connect: w.append(UInt8(2))
    case .disconnect: w.append(UInt8(3))
    case .stop(let f):
      w.append(UInt8(4))
      w.append(f.rawValue)
    case .inject(let rule):
      w.append(UInt8(5))
      w.appendString(rule.action)
      w.appendString(rule.direction)
      w.append(UInt64(truncatingIfNeeded: rule.occurrence))
      w.append(UInt8(rule.match == nil ? 0 : 1))
      if let match = rule.match { w.appendString(match) }
    case .tamper(let mode):
      w.append(UInt8(6))
      w.appendString(mode)
    case .escape(let f, let target, let address):
      w.append(UInt8(7))
      w.append(f.rawValue)
      w.append(UInt8(target == .neighbourHPA ? 1 : 0))
      w.append(address)
    }
  }

  init(from r: inout ByteReader) throws(WireError) {
    let at = r.offset
    switch try r.readU8("step") {
    case 1:
      self = .configWrite(
        RequesterID(rawValue: try r.readU16("function")), offset: try r.readCount("offset"),
        size: try r.readCount("size"), value: try r.readU32("value"))
    case 2: self = .connect
    case 3: self = .disconnect
    case 4: self = .stop(RequesterID(rawValue: try r.readU16("function")))
    case 5:
      let action = try r.readString("action")
      let direction = try r.readString("direction")
      let occurrence = try r.readCount("occurrence")
      let match = try r.readFlag("has match") ? try r.readString("match") : nil
      self = .inject(
        GuestImage.InjectionRule(
          action: action, direction: direction, occurrence: occurrence, match: match))
    case 6: self = .tamper(try r.readString("mode"))
    case 7:
      let function = RequesterID(rawValue: try r.readU16("function"))
      let target: GuestImage.EscapeTarget = try r.readFlag("target") ? .neighbourHPA : .neighbourGPA
      self = .escape(function, target: target, address: try r.readU64("address"))
    default: throw WireError(.invalidValue, at: at, field: "step")
    }
  }
}
