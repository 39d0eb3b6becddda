import Foundation
import IOMMU
import PCIe
import Testing

/// One row of specs/iommu/conformance.tsv (the format is described at the top of that file).
struct ConformanceRow: Sendable, CustomTestStringConvertible {
  var id: String
  var steps: [[String]]
  var expected: String
  var source: String
  var testDescription: String { id }

  /// Every row of the table; empty if the file is missing (the row-count test then fails).
  static let all: [ConformanceRow] = {
    // Tests/IOMMUTests/Core/ConformanceTests.swift → four levels up is the repository root.
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<4 { root.deleteLastPathComponent() }
    let url = root.appendingPathComponent("specs/iommu/conformance.tsv")
    guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
    return text.split(separator: "\n", omittingEmptySubsequences: true).compactMap { line in
      if line.hasPrefix("#") || line.allSatisfy(\.isWhitespace) { return nil }
      let columns = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
      guard columns.count == 4 else {
        return ConformanceRow(id: "malformed: \(line)", steps: [], expected: "", source: "")
      }
      let steps = columns[1].split(separator: ";").map {
        $0.split(separator: " ").map(String.init)
      }.filter { !$0.isEmpty }
      return ConformanceRow(id: columns[0], steps: steps, expected: columns[2], source: columns[3])
    }
  }()
}

/// A check or table mistake, as opposed to an IOMMU error.
struct RowFailure: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// Runs one row's steps against a fresh core, resolving the row's names.
final class ConformanceRunner {
  var core: IOMMUCore
  var devices: [String: BDF] = [:]
  var ports: [String: BDF] = [:]
  var domains: [String: IOMMUDomain] = [:]
  var spaces: [String: ProcessAddressSpace] = [:]
  var bonds: [String: SVABond] = [:]
  /// IOVAs handed out by dma-map, by name.
  var iovas: [String: IOVA] = [:]
  var nextBus: UInt8 = 1
  var nextPortBus: UInt8 = 0x80

  init() throws { core = try makeCore() }

  /// "ok", an errno name, or a failure description.
  func run(_ steps: [[String]]) -> String {
    for (index, step) in steps.enumerated() {
      let outcome: String
      do {
        try perform(step, first: index == 0)
        outcome = "ok"
      } catch let error as IOMMUError {
        outcome = error.errno.name
      } catch {
        return "step \(index + 1) \(step.joined(separator: " ")): \(error)"
      }
      if index == steps.count - 1 { return outcome }
      if outcome != "ok" { return "step \(index + 1) \(step.joined(separator: " ")) failed: \(outcome)" }
    }
    return "no steps"
  }

  func bdf(_ name: String) -> BDF {
    if let bdf = devices[name] { return bdf }
    let bdf = BDF(bus: nextBus, device: 0, function: 0)
    nextBus += 1
    devices[name] = bdf
    return bdf
  }

  func port(_ name: String) -> BDF {
    if let bdf = ports[name] { return bdf }
    let bdf = BDF(bus: nextPortBus, device: 0, function: 0)
    nextPortBus += 1
    ports[name] = bdf
    return bdf
  }

  func number(_ text: String) throws -> UInt64 {
    let value = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    guard let value else { throw RowFailure("bad number \(text)") }
    return value
  }

  func pasid(_ text: String) throws -> PASID? {
    text == "-" ? nil : PASID(UInt32(try number(text)))
  }

  func access(_ text: String) -> IOAccess { text == "w" ? .write : .read }

  func named<T>(_ table: [String: T], _ name: String) throws -> T {
    guard let value = table[name] else { throw RowFailure("unknown name \(name)") }
    return value
  }

  func group(_ name: String) throws -> GroupID {
    guard let group = core.group(of: bdf(name)) else { throw IOMMUError(.ENODEV, "\(name) unknown") }
    return group
  }

  func cookie(_ text: String) throws -> OwnerCookie? {
    text == "-" ? nil : OwnerCookie(rawValue: try number(text))
  }

  func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw RowFailure("check failed: \(message())") }
  }

  func perform(_ step: [String], first: Bool) throws {
    let verb = step[0]
    let args = Array(step.dropFirst())
    func arg(_ index: Int) throws -> String {
      guard index < args.count else { throw RowFailure("\(verb): missing argument \(index + 1)") }
      return args[index]
    }
    switch verb {
    case "config":
      guard first else { throw RowFailure("config must be the first step") }
      var configuration = IOMMUCore.Configuration()
      for option in args {
        switch option {
        case "confidential": configuration.confidentialPlatform = true
        case "passthrough": configuration.passthrough = true
        case "strict": configuration.strict = true
        case let text where text.hasPrefix("faults="):
          configuration.faultQueueCapacity = Int(try number(String(text.dropFirst(7))))
        case let text where text.hasPrefix("pasids="):
          configuration.pasidLimit = UInt32(try number(String(text.dropFirst(7))))
        default: throw RowFailure("unknown config option \(option)")
        }
      }
      core = try makeCore(configuration)
    case "dev":
      let name = try arg(0)
      var description = DeviceDescription(BDF(bus: 0, device: 0, function: 0))
      var explicitBDF: BDF?
      for option in args.dropFirst() {
        let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
        switch (parts[0], parts.count == 2 ? parts[1] : nil) {
        case ("path", let value?):
          description.upstream = value.split(separator: ",").map { item in
            let noACS = item.hasSuffix("!")
            return BridgeInfo(port(String(noACS ? item.dropLast() : item)), hasACS: !noACS)
          }
        case ("mf", nil): description.functionIsolation = .multiFunctionWithoutACS
        case ("mfacs", nil): description.functionIsolation = .multiFunctionWithACS
        case ("bdf", let value?):
          guard let parsed = BDF(value) else { throw RowFailure("bad bdf \(value)") }
          explicitBDF = parsed
        case ("alias", let value?): description.requesterIDAlias = bdf(value)
        case ("max", let value?): description.maxPASID = UInt32(try number(value))
        case ("identity", nil): description.requiresIdentity = true
        case ("untrusted", nil): description.untrusted = true
        default: throw RowFailure("unknown dev option \(option)")
        }
      }
      if let explicitBDF { devices[name] = explicitBDF }
      description.bdf = bdf(name)
      try core.addDevice(description)
    case "remove": try core.removeDevice(bdf(arg(0)))
    case "use": try core.deviceUseDefaultDomain(bdf(arg(0)))
    case "unuse": try core.deviceUnuseDefaultDomain(bdf(arg(0)))
    case "driver":
      let kinds: [String: DriverDMA] = ["dma": .dmaAPI, "managed": .driverManagedDMA, "nodma": .noDMA]
      try core.bindDriver(bdf(arg(0)), dma: named(kinds, arg(1)))
    case "unbind-driver": try core.unbindDriver(bdf(arg(0)))
    case "claim": try core.claimDMAOwner(device: bdf(arg(0)), cookie: cookie(arg(1)))
    case "release": try core.releaseDMAOwner(device: bdf(arg(0)))
    case "claim-group": try core.claimGroupDMAOwner(group(arg(0)), cookie: cookie(arg(1)))
    case "release-group": try core.releaseGroupDMAOwner(group(arg(0)))
    case "alloc":
      guard let type = DomainType(rawValue: try arg(1)) else { throw RowFailure("bad type \(args)") }
      var parent: IOMMUDomain?
      var space: ProcessAddressSpace?
      for option in args.dropFirst(2) {
        if option.hasPrefix("parent=") { parent = try named(domains, String(option.dropFirst(7))) }
        if option.hasPrefix("mm=") { space = try named(spaces, String(option.dropFirst(3))) }
      }
      domains[try arg(0)] = try core.allocateDomain(type, parent: parent, addressSpace: space)
    case "attach-dev": try core.attachDevice(named(domains, arg(0)), to: bdf(arg(1)))
    case "attach-group": try core.attachGroup(named(domains, arg(0)), to: group(arg(1)))
    case "detach-dev": try core.detachDevice(named(domains, arg(0)), from: bdf(arg(1)))
    case "replace": try core.replaceGroupDomain(group(arg(1)), with: named(domains, arg(0)))
    case "map":
      try named(domains, arg(0)).map(
        IOVA(number(arg(1))), to: PhysicalAddress(number(arg(2))), size: number(arg(3)),
        protection: arg(4) == "rw" ? .readWrite : .read)
    case "unmap":
      let unmapped = try named(domains, arg(0)).unmap(IOVA(number(arg(1))), size: number(arg(2)))
      if args.count > 3, args[3].hasPrefix("=") {
        try check(
          unmapped == (try number(String(args[3].dropFirst()))), "unmapped 0x\(String(unmapped, radix: 16))")
      }
    case "dma-map":
      iovas[try arg(1)] = try core.dmaMap(
        device: bdf(arg(0)), physical: PhysicalAddress(number(arg(2))), size: number(arg(3)),
        protection: arg(4) == "rw" ? .readWrite : .read)
    case "dma-unmap": try core.dmaUnmap(device: bdf(arg(0)), iova: named(iovas, arg(1)), size: number(arg(2)))
    case "dma-flush": core.flushDMAQueues()
    case "iova-same": try check(named(iovas, arg(0)) == named(iovas, arg(1)), "IOVAs differ")
    case "iova-differs": try check(named(iovas, arg(0)) != named(iovas, arg(1)), "IOVA reused")
    case "xlate-dma":
      let result = try core.translate(
        device: bdf(arg(0)), pasid: nil, iova: named(iovas, arg(1)), access: access(arg(2)))
      let outcome: String
      switch result {
      case .success: outcome = "ok"
      case .failure(let fault): outcome = "\(fault.reason)".replacingOccurrences(of: " ", with: "")
      }
      try check(outcome.lowercased() == arg(3).lowercased(), "translation \(outcome) ≠ \(args[3])")
    case "pasid": try core.attachDevicePASID(named(domains, arg(0)), to: bdf(arg(1)), pasid: pasid(arg(2))!)
    case "unpasid":
      try core.detachDevicePASID(named(domains, arg(0)), from: bdf(arg(1)), pasid: pasid(arg(2))!)
    case "kdma": _ = try core.enableKernelDMAPASID(bdf(arg(0)))
    case "gpasid": _ = try core.allocateGlobalPASID(for: bdf(arg(0)))
    case "free-pasid": try core.freeGlobalPASID(pasid(arg(0))!)
    case "mm":
      let name = try arg(0)
      spaces[name] = ProcessAddressSpace(id: AddressSpaceID(rawValue: UInt32(spaces.count + 1)))
    case "mm-map":
      try named(spaces, arg(0)).map(
        VirtualAddress(number(arg(1))), to: PhysicalAddress(number(arg(2))), writable: arg(3) == "rw")
    case "mm-unmap": try named(spaces, arg(0)).unmap(VirtualAddress(number(arg(1))), size: number(arg(2)))
    case "mm-exit": try named(spaces, arg(0)).exit()
    case "bind":
      bonds[try arg(0)] = try core.svaBind(device: bdf(arg(1)), addressSpace: named(spaces, arg(2)))
    case "bind-group":
      bonds[try arg(0)] = try core.svaBindGroup(group(arg(1)), addressSpace: named(spaces, arg(2)))
    case "unbind": try core.svaUnbind(named(bonds, arg(0)))
    // Checks
    case "owner":
      let actual = try core.ownership(of: group(arg(0)))
      let expected: DMAOwnership
      switch try arg(1) {
      case "none": expected = .unowned
      case "kernel": expected = .kernel(users: Int(try number(arg(2))))
      default: expected = .user(try cookie(arg(2))!, users: Int(try number(arg(3))))
      }
      try check(actual == expected, "owner \(actual) ≠ \(expected)")
    case "domain":
      let group = try group(arg(0))
      let current = try core.currentDomain(of: group)
      let expected: IOMMUDomain
      switch try arg(1) {
      case "default": expected = try core.defaultDomain(of: group)
      case "blocking": expected = try core.blockingDomain(of: group)
      default: expected = try named(domains, arg(1))
      }
      try check(current === expected, "current \(current) ≠ \(expected)")
    case "dtype":
      let type = try core.defaultDomain(of: group(arg(0))).type
      try check(type.rawValue == arg(1), "default domain type \(type)")
    case "pasid-domain":
      let table = try core.pasidTable(of: bdf(arg(0)))
      guard let attached = table[try pasid(arg(1))!] else {
        throw RowFailure("PASID \(args[1]) not attached")
      }
      let want = try arg(2)
      if let domain = domains[want] {
        try check(attached === domain, "\(attached) ≠ \(domain)")
      } else if want == "default" {
        try check(attached === core.defaultDomain(of: group(arg(0))), "\(attached) is not the default")
      } else {
        try check(attached.type.rawValue == want, "\(attached) is not \(want)")
      }
    case "refs":
      let bond = try named(bonds, arg(0))
      try check(bond.references == Int(try number(arg(1))), "\(bond)")
    case "same": try check(named(bonds, arg(0)) === named(bonds, arg(1)), "bonds differ")
    case "same-group": try check(group(arg(0)) == group(arg(1)), "groups differ")
    case "group-size":
      try check(core.devices(in: group(arg(0))).count == Int(try number(arg(1))), "group size")
    case "mm-pasid":
      let actual = core.pasid(of: try named(spaces, arg(0)))
      try check(
        actual == (arg(1) == "none" ? nil : try pasid(arg(1))), "mm PASID \(String(describing: actual))")
    case "xlate":
      let result = try core.translate(
        device: bdf(arg(0)), pasid: pasid(arg(1)), iova: IOVA(number(arg(2))), access: access(arg(3)))
      let outcome: String
      switch result {
      case .success: outcome = "ok"
      case .failure(let fault): outcome = "\(fault.reason)".replacingOccurrences(of: " ", with: "")
      }
      try check(outcome.lowercased() == arg(4).lowercased(), "translation \(outcome) ≠ \(args[4])")
    case "prq":
      let response = try core.handlePageRequest(
        device: bdf(arg(0)), pasid: pasid(arg(1)), address: IOVA(number(arg(2))), access: access(arg(3)))
      try check("\(response)" == arg(4), "page response \(response)")
    case "invalidations":
      try check(core.iotlbInvalidations.count == Int(try number(arg(0))), "\(core.iotlbInvalidations)")
    default:
      throw RowFailure("unknown step \(verb)")
    }
  }
}

@Suite struct ConformanceTests {
  /// A missing or truncated table fails here rather than silently running no cases.
  @Test func tableIsLoaded() {
    #expect(ConformanceRow.all.count == 100)
    #expect(Set(ConformanceRow.all.map(\.id)).count == ConformanceRow.all.count, "row ids are unique")
  }

  @Test(arguments: ConformanceRow.all)
  func row(_ row: ConformanceRow) throws {
    let outcome = try ConformanceRunner().run(row.steps)
    #expect(outcome == row.expected, "\(row.id) [\(row.source)]")
  }
}
