import CoveCrypto
import IOMMU
import PCIe
import SPDM
import TDISP
import Yams

extension GuestImage {
  /// Decodes and validates an image. Every error names the file, line, column and key: unknown keys
  /// are errors, not ignored; values are checked for type and range; functions named in steps must
  /// exist and be assigned.
  public init(yaml text: String, file: String) throws(ImageError) {
    let root: Node
    do {
      guard let node = try Yams.compose(yaml: text) else {
        throw ImageError(file: file, line: 1, column: 1, path: "", message: "the image is empty")
      }
      root = node
    } catch let error as ImageError {
      throw error
    } catch let error as YamlError {
      throw Self.yamlError(error, file: file)
    } catch {
      throw ImageError(file: file, line: 1, column: 1, path: "", message: "\(error)")
    }
    var decoder = ImageDecoder(file: file)
    self = try decoder.image(root)
  }

  private static func yamlError(_ error: YamlError, file: String) -> ImageError {
    switch error {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
      .composer(let context, let problem, let mark, _):
      // libyaml's problem often reads only after its context ("…, but found another document").
      return ImageError(
        file: file, line: mark.line, column: mark.column, path: "",
        message: "YAML: " + (context.map { "\($0.text), " } ?? "") + problem)
    case .reader(let problem, let offset, _, let yaml):
      // A character libyaml refuses (a control character): its offset is in Characters.
      let before = yaml.prefix(offset ?? 0)
      let lineStart = before.lastIndex(where: \.isNewline).map(before.index(after:)) ?? before.startIndex
      return ImageError(
        file: file, line: before.filter(\.isNewline).count + 1,
        column: before.distance(from: lineStart, to: before.endIndex) + 1, path: "",
        message: "YAML: \(problem)")
    case .duplicatedKeysInMapping(let duplicates, let context):
      return ImageError(
        file: file, line: context.mark.line, column: context.mark.column, path: "",
        message: "duplicate keys \(duplicates.joined(separator: ", "))")
    default:
      return ImageError(file: file, line: 1, column: 1, path: "", message: "YAML: \(error)")
    }
  }
}

/// Walks the YAML node tree with the key path, so every error can say where it is.
struct ImageDecoder {
  let file: String
  var path: [String] = []

  init(file: String) { self.file = file }

  // MARK: Errors and primitives

  func error(_ node: Node?, _ message: String, key: String? = nil) -> ImageError {
    let mark = node?.mark
    var full = path
    if let key { full.append(key) }
    let joined = full.reduce("") { $0.isEmpty || $1.hasPrefix("[") ? $0 + $1 : $0 + "." + $1 }
    return ImageError(
      file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, path: joined, message: message)
  }

  /// A mapping's entries by key, refusing keys outside `allowed` and non-string keys.
  func fields(_ node: Node, allowed: [String]) throws(ImageError) -> [String: (key: Node, value: Node)] {
    guard let mapping = node.mapping else { throw error(node, "expected a mapping") }
    var out: [String: (key: Node, value: Node)] = [:]
    for (key, value) in mapping {
      guard let name = key.scalar?.string else { throw error(key, "keys must be strings") }
      guard allowed.contains(name) else {
        throw error(
          key, "unknown key '\(name)' (expected one of: \(allowed.joined(separator: ", ")))", key: name)
      }
      out[name] = (key, value)
    }
    return out
  }

  mutating func nested<T>(_ key: String, _ body: (inout ImageDecoder) throws(ImageError) -> T)
    throws(ImageError) -> T
  {
    path.append(key)
    defer { path.removeLast() }
    return try body(&self)
  }

  /// The decoder one key further down, so the primitives' errors name the key they are about.
  func at(_ key: String) -> ImageDecoder {
    var inner = self
    inner.path.append(key)
    return inner
  }

  func string(_ node: Node) throws(ImageError) -> String {
    guard let scalar = node.scalar else { throw error(node, "expected a string") }
    return scalar.string
  }

  func bool(_ node: Node) throws(ImageError) -> Bool {
    switch node.scalar?.string {
    case "true", "yes", "on": return true
    case "false", "no", "off": return false
    default: throw error(node, "'\(node.scalar?.string ?? "?")' is not true or false")
    }
  }

  /// An integer, decimal or 0x-hex.
  func integer(_ node: Node, in range: ClosedRange<UInt64> = 0...UInt64.max) throws(ImageError) -> UInt64 {
    let text = try string(node).replacingUnderscores()
    let digits = text.hasPrefix("0x") ? text.dropFirst(2) : Substring(text)
    // UInt64("+5") and UInt64("-0") parse; a sign is not part of the format.
    let value = digits.first?.isHexDigit == true ? UInt64(digits, radix: text.hasPrefix("0x") ? 16 : 10) : nil
    guard let value else { throw error(node, "'\(text)' is not an integer") }
    guard range.contains(value) else {
      throw error(node, "\(text) is outside \(range.lowerBound)...\(range.upperBound)")
    }
    return value
  }

  /// A size: bytes, or a number with KiB, MiB or GiB.
  func size(_ node: Node) throws(ImageError) -> UInt64 {
    let text = try string(node).replacingUnderscores()
    for (suffix, shift) in [("KiB", 10), ("MiB", 20), ("GiB", 30)] where text.hasSuffix(suffix) {
      let number = String(text.dropLast(3)).trimmingSpaces()
      guard number.first?.isWholeNumber == true, let count = UInt64(number), count <= UInt64.max >> shift
      else {
        throw error(node, "'\(text)' is not a size (bytes, or a whole number of KiB, MiB or GiB)")
      }
      return count << UInt64(shift)
    }
    do { return try integer(node) } catch {
      // Not "not an integer": a size may have a unit.
      throw self.error(node, "'\(text)' is not a size (bytes, or a whole number of KiB, MiB or GiB)")
    }
  }

  func function(_ node: Node) throws(ImageError) -> RequesterID {
    let text = try string(node)
    guard let bdf = BDF(text) else {
      throw error(node, "'\(text)' is not a valid function (bus:device.function, e.g. 03:00.1)")
    }
    return bdf.requesterID
  }

  func hexBytes(_ node: Node) throws(ImageError) -> [UInt8] {
    let text = try string(node)
    var digits = Array(text.hasPrefix("0x") ? text.dropFirst(2) : Substring(text))
    digits.removeAll { $0 == " " || $0 == ":" }
    guard digits.count % 2 == 0 else { throw error(node, "'\(text)' is not whole bytes of hex") }
    // UInt8("+f", radix: 16) parses; a sign is not a hex digit.
    guard digits.allSatisfy(\.isHexDigit) else { throw error(node, "'\(text)' is not hex") }
    var out: [UInt8] = []
    var index = 0
    while index < digits.count {
      guard let byte = UInt8(String(digits[index..<index + 2]), radix: 16) else {
        throw error(node, "'\(text)' is not hex")
      }
      out.append(byte)
      index += 2
    }
    return out
  }

  func sequence(_ node: Node) throws(ImageError) -> [Node] {
    guard let sequence = node.sequence else { throw error(node, "expected a list") }
    return Array(sequence)
  }

  // MARK: The image

  mutating func image(_ root: Node) throws(ImageError) -> GuestImage {
    let top = try fields(
      root,
      allowed: ["name", "description", "seed", "guest", "neighbour", "devices", "policy", "drivers", "steps"])
    let name = try top["name"].map { n throws(ImageError) in try at("name").string(n.value) } ?? file
    let description =
      try top["description"].map { n throws(ImageError) in try at("description").string(n.value) } ?? ""
    let seed =
      try top["seed"].map { n throws(ImageError) in
        try nested("seed") { d throws(ImageError) in try d.integer(n.value) }
      } ?? 1
    let guest =
      try top["guest"].map { n throws(ImageError) in
        try nested("guest") { d throws(ImageError) in try d.guest(n.value) }
      }
      ?? GuestImage.Guest()
    let neighbour = try top["neighbour"].map { n throws(ImageError) in
      try nested("neighbour") { d throws(ImageError) in try d.guest(n.value) }
    }
    var devices: [GuestImage.Device] = []
    if let list = top["devices"] {
      for (index, node) in try at("devices").sequence(list.value).enumerated() {
        let device = try nested("devices[\(index)]") { d throws(ImageError) in try d.device(node) }
        if let other = devices.firstIndex(where: { $0.bus == device.bus }) {
          throw error(node, "bus \(device.bus) is already devices[\(other)]'s", key: "devices[\(index)]")
        }
        devices.append(device)
      }
    }
    let policy =
      try top["policy"].map { n throws(ImageError) in
        try nested("policy") { d throws(ImageError) in try d.policy(n.value, devices: devices) }
      } ?? GuestImage.Policy(defaultFor: devices)
    var drivers: [String] = []
    if let list = top["drivers"] {
      for (index, node) in try at("drivers").sequence(list.value).enumerated() {
        let name = try at("drivers[\(index)]").string(node)
        let known = DriverRegistry.names
        guard known.contains(name) else {
          throw error(
            node, "unknown driver '\(name)' (registered: \(known.joined(separator: ", ")))",
            key: "drivers[\(index)]")
        }
        guard !drivers.contains(name) else {
          throw error(node, "driver '\(name)' is listed twice", key: "drivers[\(index)]")
        }
        drivers.append(name)
      }
    }
    let assigned = Set(devices.flatMap(\.assign))
    let present = Set(devices.flatMap(\.functionIDs))
    var steps: [GuestImage.Step] = []
    if let list = top["steps"] {
      for (index, node) in try at("steps").sequence(list.value).enumerated() {
        steps.append(
          try nested("steps[\(index)]") { d throws(ImageError) in
            try d.step(node, assigned: assigned, present: present, drivers: drivers)
          })
      }
    }
    if let first = steps.first(where: { if case .escape = $0.action { true } else { false } }),
      neighbour == nil
    {
      throw ImageError(
        file: file, line: first.line, column: 1, path: "steps",
        message: "an escape step needs a 'neighbour' guest")
    }
    return GuestImage(
      name: name, description: description, seed: seed, guest: guest, neighbour: neighbour, devices: devices,
      policy: policy, drivers: drivers, steps: steps)
  }

  mutating func guest(_ node: Node) throws(ImageError) -> GuestImage.Guest {
    let f = try fields(
      node, allowed: ["memory", "boundary", "viommu", "swiotlb", "autoprobe", "dma-debug", "connect"])
    var guest = GuestImage.Guest()
    if let v = f["memory"]?.value {
      guest.memory = try nested("memory") { d throws(ImageError) in try d.size(v) }
      guard guest.memory >= 1 << 20, guest.memory <= 1 << 30, guest.memory % 4096 == 0 else {
        throw error(v, "memory must be whole pages between 1 MiB and 1 GiB", key: "memory")
      }
    }
    if let v = f["boundary"]?.value {
      switch v.scalar?.string {
      case "half": guest.boundary = 1 << 47
      case "all-private": guest.boundary = .max
      default:
        guest.boundary = try nested("boundary") { d throws(ImageError) in try d.integer(v) }
        // The shared alias [X, X + memory) must fit the 48-bit IOVA space (VMM.createGuest).
        guard guest.boundary % 4096 == 0, guest.boundary >= guest.memory,
          guest.boundary <= (1 << 48) - guest.memory
        else {
          throw error(
            v, "the boundary must be page-aligned, at or above the memory size, and at most 2^48 minus it",
            key: "boundary")
        }
      }
    }
    if let v = f["viommu"]?.value {
      let text = try at("viommu").string(v)
      guard let mode = GuestImage.VIOMMUMode(rawValue: text) else {
        throw error(v, "'\(text)' is not off, strict or lazy", key: "viommu")
      }
      guest.viommu = mode
    }
    if let v = f["swiotlb"]?.value {
      let bytes = try nested("swiotlb") { d throws(ImageError) in try d.size(v) }
      guard bytes % (256 << 10) == 0, bytes < guest.memory / 2 else {
        throw error(
          v, "the swiotlb pool must be a multiple of 256 KiB and under half the memory", key: "swiotlb")
      }
      guest.swiotlb = Int(bytes)
    }
    if let v = f["autoprobe"]?.value {
      guest.autoprobe = try nested("autoprobe") { d throws(ImageError) in try d.bool(v) }
    }
    if let v = f["dma-debug"]?.value {
      guest.dmaDebug = try nested("dma-debug") { d throws(ImageError) in try d.bool(v) }
    }
    if let v = f["connect"]?.value {
      guest.connect = try nested("connect") { d throws(ImageError) in try d.bool(v) }
    }
    return guest
  }

  mutating func device(_ node: Node) throws(ImageError) -> GuestImage.Device {
    let f = try fields(
      node,
      allowed: [
        "model", "bus", "functions", "vfs", "acs", "pasid-bits", "identity-seed", "measurements", "report",
        "compat",
        "assign",
      ])
    var device = GuestImage.Device()
    if let v = f["model"]?.value {
      device.model = try at("model").string(v)
      guard device.model == "cove-dma" else {
        throw error(v, "unknown model '\(device.model)' (cove-dma)", key: "model")
      }
    }
    if let v = f["bus"]?.value {
      device.bus = UInt8(try nested("bus") { d throws(ImageError) in try d.integer(v, in: 1...255) })
    }
    if let v = f["functions"]?.value {
      device.functions = Int(try nested("functions") { d throws(ImageError) in try d.integer(v, in: 1...8) })
    }
    if let v = f["vfs"]?.value {
      device.virtualFunctions = Int(try nested("vfs") { d throws(ImageError) in try d.integer(v, in: 0...7) })
    }
    guard device.functions + device.virtualFunctions <= 8 else {
      throw error(node, "at most 8 functions and VFs together")
    }
    if let v = f["acs"]?.value { device.acs = try nested("acs") { d throws(ImageError) in try d.bool(v) } }
    if let v = f["pasid-bits"]?.value {
      device.pasidBits = UInt8(
        try nested("pasid-bits") { d throws(ImageError) in try d.integer(v, in: 0...20) })
    }
    if let v = f["identity-seed"]?.value {
      device.identitySeed = try nested("identity-seed") { d throws(ImageError) in try d.integer(v) }
    }
    if let v = f["measurements"]?.value {
      var list: [GuestImage.Measurement] = []
      for (index, item) in try at("measurements").sequence(v).enumerated() {
        let measurement = try nested("measurements[\(index)]") { d throws(ImageError) in
          try d.measurement(item)
        }
        guard !list.contains(where: { $0.index == measurement.index }) else {
          throw error(
            item, "measurement index \(measurement.index) is listed twice", key: "measurements[\(index)]")
        }
        list.append(measurement)
      }
      device.measurements = list
    }
    if let v = f["report"]?.value {
      device.report = try nested("report") { d throws(ImageError) in try d.report(v) }
    }
    if let v = f["compat"]?.value {
      switch try at("compat").string(v) {
      case "specification": device.referenceCompat = false
      case "reference-emulators": device.referenceCompat = true
      case let other: throw error(v, "'\(other)' is not specification or reference-emulators", key: "compat")
      }
    }
    if let v = f["assign"]?.value {
      let valid = Set(device.functionIDs)
      for (index, item) in try at("assign").sequence(v).enumerated() {
        let function = try nested("assign[\(index)]") { d throws(ImageError) in try d.function(item) }
        guard valid.contains(function) else {
          throw error(item, "\(function) is not a function of this device", key: "assign[\(index)]")
        }
        device.assign.append(function)
      }
    }
    return device
  }

  func measurement(_ node: Node) throws(ImageError) -> GuestImage.Measurement {
    let f = try fields(node, allowed: ["index", "type", "text", "hex"])
    guard let index = f["index"]?.value else { throw error(node, "missing 'index'") }
    let number = UInt8(try at("index").integer(index, in: 1...254))
    let type =
      try f["type"].map { v throws(ImageError) in try at("type").string(v.value) } ?? "mutable-firmware"
    guard GuestImage.measurementTypes[type] != nil else {
      throw error(f["type"]?.value, "unknown measurement type '\(type)'", key: "type")
    }
    if f["text"] != nil, f["hex"] != nil {
      throw error(node, "a measurement has 'text' or 'hex', not both")
    }
    if let text = f["text"]?.value {
      // A digest of the text, as firmware measurements are (SHA-384).
      return GuestImage.Measurement(
        index: number, type: type, value: HashAlgorithm.sha384.hash(Array(try at("text").string(text).utf8)),
        raw: false)
    }
    if let hex = f["hex"]?.value {
      return GuestImage.Measurement(index: number, type: type, value: try at("hex").hexBytes(hex), raw: true)
    }
    throw error(node, "a measurement needs 'text' (digested) or 'hex' (raw)")
  }

  func report(_ node: Node) throws(ImageError) -> GuestImage.ReportTweaks {
    let f = try fields(node, allowed: ["non-tee-ranges", "device-info"])
    var tweaks = GuestImage.ReportTweaks()
    if let v = f["non-tee-ranges"]?.value {
      for (index, n) in try at("non-tee-ranges").sequence(v).enumerated() {
        tweaks.nonTEERanges.append(UInt16(try at("non-tee-ranges[\(index)]").integer(n, in: 0...5)))
      }
    }
    if let v = f["device-info"]?.value { tweaks.deviceInfo = try at("device-info").hexBytes(v) }
    return tweaks
  }

  mutating func policy(_ node: Node, devices: [GuestImage.Device]) throws(ImageError) -> GuestImage.Policy {
    let f = try fields(node, allowed: ["trust-anchors", "measurements"])
    var policy = GuestImage.Policy(defaultFor: devices)
    if let v = f["trust-anchors"]?.value {
      policy.trustAnchors = []
      for (index, item) in try at("trust-anchors").sequence(v).enumerated() {
        let text = try at("trust-anchors[\(index)]").string(item)
        if text == "device" {
          policy.trustAnchors += devices.map { .device($0.identitySeed) }
        } else if text.hasPrefix("bus:"), let bus = UInt8(text.dropFirst(4)),
          let device = devices.first(where: { $0.bus == bus })
        {
          policy.trustAnchors.append(.device(device.identitySeed))
        } else if text.hasPrefix("other:"), let seed = UInt64(text.dropFirst(6)) {
          policy.trustAnchors.append(.other(seed))
        } else {
          throw error(
            item, "'\(text)' is not 'device', 'bus:<n>' (a device's bus) or 'other:<seed>'",
            key: "trust-anchors[\(index)]")
        }
      }
    }
    if let v = f["measurements"]?.value {
      if v.scalar?.string == "device" {
        policy.measurements = nil
      } else {
        guard let mapping = v.mapping else {
          throw error(v, "expected 'device' or a mapping of index to allowed values", key: "measurements")
        }
        var allowed: [UInt8: [[UInt8]]] = [:]
        for (key, value) in mapping {
          let index = UInt8(try at("measurements").integer(key, in: 1...254))
          let values = value.sequence.map(Array.init) ?? [value]
          allowed[index] = try values.map { n throws(ImageError) in
            if let text = n.scalar?.string, text.hasPrefix("text:") {
              return HashAlgorithm.sha384.hash(Array(text.dropFirst(5).utf8))
            }
            return try at("measurements").hexBytes(n)
          }
        }
        policy.measurements = allowed
      }
    }
    return policy
  }

  // MARK: Steps

  static let actions = [
    "bind", "unbind", "lock", "verify", "accept", "unlock", "dma", "config-write", "flr", "convert",
    "connect",
    "disconnect", "host-stop", "inject", "wait", "claim", "release", "tamper-evidence", "sva", "escape",
  ]

  mutating func step(_ node: Node, assigned: Set<RequesterID>, present: Set<RequesterID>, drivers: [String])
    throws(ImageError)
    -> GuestImage.Step
  {
    let f = try fields(node, allowed: Self.actions + ["expect"])
    let actions = f.keys.filter { $0 != "expect" }
    guard actions.count == 1, let name = actions.first, let (key, value) = f[name] else {
      throw error(node, "a step has exactly one action (one of: \(Self.actions.joined(separator: ", ")))")
    }
    func assignedFunction(_ n: Node, key: String) throws(ImageError) -> RequesterID {
      let function = try at(key).function(n)
      guard assigned.contains(function) else {
        throw error(n, "\(function) is not assigned to the guest", key: key)
      }
      return function
    }
    // The host's own actions may name any function of an emulated device, assigned or not.
    func presentFunction(_ n: Node, key: String) throws(ImageError) -> RequesterID {
      let function = try at(key).function(n)
      guard present.contains(function) else {
        throw error(n, "\(function) is not a function of any device", key: key)
      }
      return function
    }
    let action: GuestImage.Action
    switch name {
    case "unbind": action = .unbind(try assignedFunction(value, key: name))
    case "lock": action = .lock(try assignedFunction(value, key: name))
    case "verify": action = .verify(try assignedFunction(value, key: name))
    case "accept": action = .accept(try assignedFunction(value, key: name))
    case "unlock": action = .unlock(try assignedFunction(value, key: name))
    case "flr": action = .flr(try presentFunction(value, key: name))
    case "host-stop": action = .hostStop(try presentFunction(value, key: name))
    case "release": action = .release(try assignedFunction(value, key: name))
    case "connect": action = .connect
    case "disconnect": action = .disconnect
    case "wait": action = .wait
    case "bind":
      let b = try nested(name) { d throws(ImageError) in try d.fields(value, allowed: ["device", "driver"]) }
      guard let device = b["device"]?.value, let driver = b["driver"]?.value else {
        throw error(value, "bind needs 'device' and 'driver'", key: name)
      }
      let driverName = try at("bind.driver").string(driver)
      guard drivers.contains(driverName) else {
        throw error(driver, "driver '\(driverName)' is not in the image's drivers", key: "bind.driver")
      }
      action = .bind(try assignedFunction(device, key: "bind.device"), driver: driverName)
    case "claim":
      let c = try nested(name) { d throws(ImageError) in try d.fields(value, allowed: ["device", "cookie"]) }
      guard let device = c["device"]?.value else { throw error(value, "claim needs 'device'", key: name) }
      let cookie =
        try c["cookie"].map { n throws(ImageError) in
          try at("claim.cookie").integer(n.value, in: 1...UInt64.max)
        }
        ?? 1
      action = .claim(try assignedFunction(device, key: "claim.device"), cookie: cookie)
    case "dma":
      let d = try nested(name) { dd throws(ImageError) in
        try dd.fields(value, allowed: ["device", "size", "shared", "pasid"])
      }
      guard let device = d["device"]?.value else { throw error(value, "dma needs 'device'", key: name) }
      var dma = GuestImage.DMAStep(device: try assignedFunction(device, key: "dma.device"), size: 4096)
      if let size = d["size"]?.value {
        // Checked before it becomes an Int: Int(UInt64) traps above Int.max.
        let bytes = try at("dma.size").size(size)
        guard (1...(64 << 20)).contains(bytes) else {
          throw error(size, "size must be 1 B to 64 MiB", key: "dma.size")
        }
        dma.size = Int(bytes)
      }
      if let shared = d["shared"]?.value { dma.shared = try at("dma.shared").bool(shared) }
      if let pasid = d["pasid"]?.value { dma.pasid = try at("dma.pasid").bool(pasid) }
      action = .dma(dma)
    case "config-write":
      let c = try nested(name) { d throws(ImageError) in
        try d.fields(value, allowed: ["device", "offset", "size", "value", "by"])
      }
      guard let device = c["device"]?.value, let offset = c["offset"]?.value, let written = c["value"]?.value
      else {
        throw error(value, "config-write needs 'device', 'offset' and 'value'", key: name)
      }
      let size =
        try c["size"].map { n throws(ImageError) in
          Int(try at("config-write.size").integer(n.value, in: 1...4))
        }
        ?? 4
      guard [1, 2, 4].contains(size) else {
        throw error(c["size"]?.value, "size must be 1, 2 or 4", key: "config-write.size")
      }
      let by =
        try c["by"].map { n throws(ImageError) in try at("config-write.by").string(n.value) } ?? "guest"
      guard by == "guest" || by == "host" else {
        throw error(c["by"]?.value, "'by' is guest or host", key: "config-write.by")
      }
      let target =
        by == "host"
        ? try presentFunction(device, key: "config-write.device")
        : try assignedFunction(device, key: "config-write.device")
      action = .configWrite(
        target,
        offset: Int(try at("config-write.offset").integer(offset, in: 0...0xFFF)),
        size: size, value: UInt32(try at("config-write.value").integer(written, in: 0...0xFFFF_FFFF)),
        byHost: by == "host")
    case "convert":
      let c = try nested(name) { d throws(ImageError) in try d.fields(value, allowed: ["gpa", "pages", "to"])
      }
      guard let gpa = c["gpa"]?.value, let to = c["to"]?.value else {
        throw error(value, "convert needs 'gpa' and 'to'", key: name)
      }
      let target = try at("convert.to").string(to)
      guard target == "shared" || target == "private" else {
        throw error(to, "'to' is shared or private", key: "convert.to")
      }
      let pages =
        try c["pages"].map { n throws(ImageError) in
          Int(try at("convert.pages").integer(n.value, in: 1...4096))
        }
        ?? 1
      action = .convert(gpa: try at("convert.gpa").integer(gpa), pages: pages, toShared: target == "shared")
    case "inject":
      let i = try nested(name) { d throws(ImageError) in
        try d.fields(value, allowed: ["action", "direction", "occurrence", "match"])
      }
      guard let act = i["action"]?.value else { throw error(value, "inject needs 'action'", key: name) }
      let actionName = try at("inject.action").string(act)
      guard GuestImage.injectionActions.contains(actionName) else {
        throw error(
          act, "'\(actionName)' is not one of \(GuestImage.injectionActions.joined(separator: ", "))",
          key: "inject.action")
      }
      let direction =
        try i["direction"].map { n throws(ImageError) in try at("inject.direction").string(n.value) }
        ?? "response"
      guard direction == "request" || direction == "response" else {
        throw error(i["direction"]?.value, "'direction' is request or response", key: "inject.direction")
      }
      let occurrence =
        try i["occurrence"].map { n throws(ImageError) in
          Int(try at("inject.occurrence").integer(n.value, in: 1...1000))
        } ?? 1
      let match = try i["match"].map { n throws(ImageError) in try at("inject.match").string(n.value) }
      if let match, !GuestImage.injectionMatches.contains(match) {
        throw error(
          i["match"]?.value,
          "'\(match)' is not one of \(GuestImage.injectionMatches.joined(separator: ", "))",
          key: "inject.match")
      }
      action = .inject(
        GuestImage.InjectionRule(
          action: actionName, direction: direction, occurrence: occurrence, match: match))
    case "tamper-evidence":
      let t = try nested(name) { d throws(ImageError) in try d.fields(value, allowed: ["device", "mode"]) }
      guard let device = t["device"]?.value, let mode = t["mode"]?.value else {
        throw error(value, "tamper-evidence needs 'device' and 'mode'", key: name)
      }
      let modeName = try at("tamper-evidence.mode").string(mode)
      guard ["measurement", "report", "replay"].contains(modeName) else {
        throw error(mode, "'\(modeName)' is not measurement, report or replay", key: "tamper-evidence.mode")
      }
      action = .tamperEvidence(try assignedFunction(device, key: "tamper-evidence.device"), mode: modeName)
    case "escape":
      let e = try nested(name) { d throws(ImageError) in
        try d.fields(value, allowed: ["device", "target", "address"])
      }
      guard let device = e["device"]?.value, let target = e["target"]?.value else {
        throw error(value, "escape needs 'device' and 'target'", key: name)
      }
      let targetName = try at("escape.target").string(target)
      guard let where_ = GuestImage.EscapeTarget(rawValue: targetName) else {
        throw error(target, "'\(targetName)' is not neighbour-gpa or neighbour-hpa", key: "escape.target")
      }
      let address =
        try e["address"].map { n throws(ImageError) in try at("escape.address").integer(n.value) } ?? 0x1000
      action = .escape(try assignedFunction(device, key: "escape.device"), target: where_, address: address)
    case "sva":
      let v = try nested(name) { d throws(ImageError) in
        try d.fields(value, allowed: ["device", "size", "lazy"])
      }
      guard let device = v["device"]?.value else { throw error(value, "sva needs 'device'", key: name) }
      var size = 4096
      if let n = v["size"]?.value {
        // Range-checked before it becomes an Int (a huge size must be an error, not a trap).
        let bytes = try at("sva.size").size(n)
        guard (1...(1 << 20)).contains(bytes) else {
          throw error(n, "size must be 1 B to 1 MiB", key: "sva.size")
        }
        size = Int(bytes)
      }
      let lazy = try v["lazy"].map { n throws(ImageError) in try at("sva.lazy").bool(n.value) } ?? false
      action = .sva(try assignedFunction(device, key: "sva.device"), size: size, lazy: lazy)
    default:
      throw error(key, "unknown action '\(name)'")
    }
    var expect = GuestImage.Expectation()
    if let e = f["expect"]?.value {
      expect = try nested("expect") { d throws(ImageError) in try d.expectation(e, drivers: drivers) }
    }
    return GuestImage.Step(action: action, expect: expect, line: key.mark?.line ?? 0)
  }

  func expectation(_ node: Node, drivers: [String]) throws(ImageError) -> GuestImage.Expectation {
    let f = try fields(
      node, allowed: ["error", "check", "tdi", "trust", "driver", "bytes", "bounced", "fault"])
    var expect = GuestImage.Expectation()
    if let v = f["error"]?.value {
      let name = try at("error").string(v)
      guard let errno = Errno(name: name) else {
        throw error(v, "'\(name)' is not an errno name (EBUSY, EINVAL…)", key: "error")
      }
      expect.error = errno
    }
    if let v = f["check"]?.value {
      let name = try at("check").string(v)
      guard GuestImage.evidenceChecks.contains(name) else {
        throw error(
          v, "'\(name)' is not an evidence check (\(GuestImage.evidenceChecks.joined(separator: ", ")))",
          key: "check")
      }
      expect.check = name
    }
    if let v = f["tdi"]?.value {
      let name = try at("tdi").string(v)
      guard let state = TDIState.allCases.first(where: { $0.description == name }) else {
        throw error(
          v, "'\(name)' is not a TDI state (CONFIG_UNLOCKED, CONFIG_LOCKED, RUN, ERROR)", key: "tdi")
      }
      expect.tdi = state
    }
    if let v = f["trust"]?.value {
      let name = try at("trust").string(v)
      guard ["untrusted", "locked", "accepted", "revoked"].contains(name) else {
        throw error(v, "'\(name)' is not untrusted, locked, accepted or revoked", key: "trust")
      }
      expect.trust = name
    }
    if let v = f["driver"]?.value {
      let name = try at("driver").string(v)
      // The bound driver's name is one of the registered drivers' names, or none.
      guard name == "none" || drivers.contains(name) else {
        throw error(v, "driver '\(name)' is not in the image's drivers (or none)", key: "driver")
      }
      expect.driver = name
    }
    if let v = f["bytes"]?.value { expect.bytes = Int(try at("bytes").integer(v, in: 0...(64 << 20))) }
    if let v = f["bounced"]?.value { expect.bounced = try at("bounced").bool(v) }
    if let v = f["fault"]?.value { expect.fault = try at("fault").bool(v) }
    return expect
  }
}

extension GuestImage {
  static let injectionActions = ["drop", "corrupt", "truncate", "duplicate", "replay", "delay"]
  /// What ScenarioRunner.faultRule understands; anything else would silently mean any.
  static let injectionMatches = ["any", "discovery", "spdm", "secured"]
  static let evidenceChecks = [
    "certificateChain", "measurementsSignature", "nonce", "measurementsFormat", "missingMeasurement",
    "measurementMismatch", "reportDigest", "interfaceReport", "tdiState",
  ]
  public static let measurementTypes: [String: UInt8] = [
    "immutable-rom": 0x00, "mutable-firmware": 0x01, "hardware-configuration": 0x02,
    "firmware-configuration": 0x03, "measurement-manifest": 0x04, "device-mode": 0x05,
    "mutable-firmware-version": 0x06, "mutable-firmware-security-version": 0x07,
  ]
}

extension GuestImage.Policy {
  /// Trust the devices' own roots and their reference measurements.
  init(defaultFor devices: [GuestImage.Device]) {
    self.init()
    trustAnchors = devices.map { .device($0.identitySeed) }
  }
}

extension String {
  func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
  func trimmingSpaces() -> Substring {
    var text = Substring(self)
    while text.first == " " { text = text.dropFirst() }
    while text.last == " " { text = text.dropLast() }
    return text
  }
}
