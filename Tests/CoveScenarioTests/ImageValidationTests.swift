import Foundation
import PCIe
import Testing

@testable import CoveScenario

/// Every way the guest-image decoder refuses an image, each with the exact line, column, key path and
/// message it must report (guest-images/README.md, "Validation errors"). Lines and columns are
/// 1-based and point at the node the error is about: the value for a bad value, the key for an
/// unknown key, the mapping for a missing or contradictory key.
@Suite struct ImageValidationTests {
  /// One refused image and the error it must produce.
  struct Refusal: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var line: Int
    var column: Int
    var path: String
    var message: String

    init(_ name: String, _ yaml: String, _ line: Int, _ column: Int, _ path: String, _ message: String) {
      (self.name, self.yaml, self.line, self.column, self.path, self.message) =
        (name, yaml, line, column, path, message)
    }

    var testDescription: String { name }
  }

  /// Lines 1–4 of every step case: one device on bus 3 (functions 03:00.0 and 03:00.1), 03:00.1
  /// assigned, the cove-dma driver. The step text appended to it starts on line 5.
  static let header = """
    devices:
      - assign: ["03:00.1"]
    drivers: [cove-dma]
    steps:

    """

  static func steps(_ text: String) -> String { header + text }

  static let actions = ImageDecoder.actions.joined(separator: ", ")
  static let function = "is not a valid function (bus:device.function, e.g. 03:00.1)"
  static let notASize = "is not a size (bytes, or a whole number of KiB, MiB or GiB)"

  static let document: [Refusal] = [
    Refusal(
      "an unknown top-level key", "name: t\ncolour: blue\n", 2, 1, "colour",
      "unknown key 'colour' (expected one of: name, description, seed, guest, neighbour, devices, policy, drivers, steps)"
    ),
    Refusal("a document that is a list", "- name: t\n", 1, 1, "", "expected a mapping"),
    Refusal("an empty document", "", 1, 1, "", "the image is empty"),
    Refusal("a document of comments only", "# nothing here\n", 1, 1, "", "the image is empty"),
    Refusal(
      "a tab where indentation is expected", "guest:\n\tmemory: 16MiB\n", 2, 1, "",
      "YAML: while scanning for the next token, found character that cannot start any token"),
    Refusal(
      "an unclosed bracket", "drivers: [cove-dma\n", 2, 1, "",
      "YAML: while parsing a flow sequence, did not find expected ',' or ']'"),
    Refusal(
      "a control character", "name: t\ndescription: a\u{1}b\n", 2, 15, "",
      "YAML: control characters are not allowed"),
    Refusal("a key given twice", "seed: 1\nseed: 2\n", 1, 1, "", "duplicate keys seed"),
    Refusal(
      "two documents", "name: a\n---\nname: b\n", 2, 1, "",
      "YAML: expected a single document in the stream, but found another document"),
    Refusal("a key that is not a string", "? [a, b]\n: 1\n", 1, 3, "", "keys must be strings"),
  ]

  static let unknownKeys: [Refusal] = [
    Refusal(
      "an unknown guest key", "guest:\n  memroy: 16MiB\n", 2, 3, "guest.memroy",
      "unknown key 'memroy' (expected one of: memory, boundary, viommu, swiotlb, autoprobe, dma-debug, connect)"
    ),
    Refusal(
      "an unknown device key", "devices:\n  - model: cove-dma\n    colour: red\n", 3, 5, "devices[0].colour",
      "unknown key 'colour' (expected one of: model, bus, functions, vfs, acs, pasid-bits, identity-seed, measurements, report, compat, assign)"
    ),
    Refusal(
      "an unknown measurement key", "devices:\n  - measurements:\n      - { index: 1, text: fw, size: 3 }\n",
      3, 31,
      "devices[0].measurements[0].size", "unknown key 'size' (expected one of: index, type, text, hex)"),
    Refusal(
      "an unknown report key", "devices:\n  - report:\n      colour: red\n", 3, 7, "devices[0].report.colour",
      "unknown key 'colour' (expected one of: non-tee-ranges, device-info)"),
    Refusal(
      "an unknown policy key", "policy:\n  anchors: [device]\n", 2, 3, "policy.anchors",
      "unknown key 'anchors' (expected one of: trust-anchors, measurements)"),
    Refusal(
      "an unknown step key", steps("  - lock: \"03:00.1\"\n    colour: red\n"), 6, 5, "steps[0].colour",
      "unknown key 'colour' (expected one of: \(actions), expect)"),
    Refusal(
      "an unknown action argument",
      steps("  - bind: { device: \"03:00.1\", driver: cove-dma, force: true }\n"),
      5, 50, "steps[0].bind.force", "unknown key 'force' (expected one of: device, driver)"),
    Refusal(
      "an unknown expectation", steps("  - lock: \"03:00.1\"\n    expect: { tdi: RUN, state: RUN }\n"), 6, 25,
      "steps[0].expect.state",
      "unknown key 'state' (expected one of: error, check, tdi, trust, driver, bytes, bounced, fault)"),
  ]

  static let wrongTypes: [Refusal] = [
    Refusal(
      "a mapping where a string is expected", "name: { first: cove }\n", 1, 7, "name", "expected a string"),
    Refusal("a string where a list is expected", "devices: cove-dma\n", 1, 10, "devices", "expected a list"),
    Refusal("a string where a mapping is expected", "guest: 16MiB\n", 1, 8, "guest", "expected a mapping"),
    Refusal(
      "a list where a function is expected", steps("  - lock: [\"03:00.1\"]\n"), 5, 11, "steps[0].lock",
      "expected a string"),
    Refusal(
      "a list inside the drivers list", "drivers: [[cove-dma]]\n", 1, 11, "drivers[0]", "expected a string"),
    Refusal(
      "a string where arguments are expected", steps("  - bind: \"03:00.1\"\n"), 5, 11, "steps[0].bind",
      "expected a mapping"),
    Refusal(
      "not a boolean", "guest:\n  autoprobe: maybe\n", 2, 14, "guest.autoprobe",
      "'maybe' is not true or false"),
    Refusal("not an integer", "seed: twelve\n", 1, 7, "seed", "'twelve' is not an integer"),
    Refusal("a signed integer", "seed: +5\n", 1, 7, "seed", "'+5' is not an integer"),
    Refusal("a size in MB", "guest:\n  memory: 16MB\n", 2, 11, "guest.memory", "'16MB' \(notASize)"),
    Refusal(
      "a size with a sign", "guest:\n  memory: +16MiB\n", 2, 11, "guest.memory", "'+16MiB' \(notASize)"),
  ]

  static let functions: [Refusal] = [
    Refusal(
      "function 9", "devices:\n  - assign: [\"00:1f.9\"]\n", 2, 14, "devices[0].assign[0]",
      "'00:1f.9' \(function)"),
    Refusal("not a function at all", steps("  - lock: zz\n"), 5, 11, "steps[0].lock", "'zz' \(function)"),
    Refusal(
      "a function without its leading zeros", steps("  - bind: { device: \"3:0.1\", driver: cove-dma }\n"), 5,
      21,
      "steps[0].bind.device", "'3:0.1' \(function)"),
    Refusal(
      "a function the device does not have", "devices:\n  - assign: [\"03:00.2\"]\n", 2, 14,
      "devices[0].assign[0]",
      "03:00.2 is not a function of this device"),
    Refusal(
      "a function on another bus", "devices:\n  - { bus: 4, assign: [\"03:00.1\"] }\n", 2, 24,
      "devices[0].assign[0]", "03:00.1 is not a function of this device"),
    Refusal(
      "a step on a function not assigned", steps("  - lock: \"03:00.0\"\n"), 5, 11, "steps[0].lock",
      "03:00.0 is not assigned to the guest"),
    Refusal(
      "DMA with a function not assigned", steps("  - dma: { device: \"03:00.0\" }\n"), 5, 20,
      "steps[0].dma.device",
      "03:00.0 is not assigned to the guest"),
  ]

  static let actionShapes: [Refusal] = [
    Refusal(
      "an unknown action", steps("  - explode: \"03:00.1\"\n"), 5, 5, "steps[0].explode",
      "unknown key 'explode' (expected one of: \(actions), expect)"),
    Refusal(
      "two actions in one step", steps("  - lock: \"03:00.1\"\n    unlock: \"03:00.1\"\n"), 5, 5, "steps[0]",
      "a step has exactly one action (one of: \(actions))"),
    Refusal(
      "a step without an action", steps("  - expect: { tdi: RUN }\n"), 5, 5, "steps[0]",
      "a step has exactly one action (one of: \(actions))"),
    Refusal(
      "bind without a driver", steps("  - bind: { device: \"03:00.1\" }\n"), 5, 11, "steps[0].bind",
      "bind needs 'device' and 'driver'"),
    Refusal(
      "dma without a device", steps("  - dma: { size: 4KiB }\n"), 5, 10, "steps[0].dma", "dma needs 'device'"),
    Refusal(
      "config-write without a value", steps("  - config-write: { device: \"03:00.1\", offset: 4 }\n"), 5, 19,
      "steps[0].config-write", "config-write needs 'device', 'offset' and 'value'"),
    Refusal(
      "convert without to", steps("  - convert: { gpa: 0x1000 }\n"), 5, 14, "steps[0].convert",
      "convert needs 'gpa' and 'to'"),
    Refusal(
      "inject without an action", steps("  - inject: { direction: request }\n"), 5, 13, "steps[0].inject",
      "inject needs 'action'"),
    Refusal(
      "claim without a device", steps("  - claim: { cookie: 7 }\n"), 5, 12, "steps[0].claim",
      "claim needs 'device'"),
    Refusal(
      "a measurement without an index", "devices:\n  - measurements:\n      - { text: fw }\n", 3, 9,
      "devices[0].measurements[0]", "missing 'index'"),
    Refusal(
      "a measurement without a value", "devices:\n  - measurements:\n      - { index: 1 }\n", 3, 9,
      "devices[0].measurements[0]", "a measurement needs 'text' (digested) or 'hex' (raw)"),
    Refusal(
      "a measurement with two values",
      "devices:\n  - measurements:\n      - { index: 1, text: a, hex: 00 }\n", 3,
      9, "devices[0].measurements[0]", "a measurement has 'text' or 'hex', not both"),
  ]

  static let memory = "memory must be whole pages between 1 MiB and 1 GiB"
  static let swiotlb = "the swiotlb pool must be a multiple of 256 KiB and under half the memory"
  static let boundary =
    "the boundary must be page-aligned, at or above the memory size, and at most 2^48 minus it"

  static let outOfRange: [Refusal] = [
    Refusal("memory 512 KiB", "guest:\n  memory: 512KiB\n", 2, 11, "guest.memory", memory),
    Refusal("memory of part of a page", "guest:\n  memory: 1048577\n", 2, 11, "guest.memory", memory),
    Refusal("memory 2 GiB", "guest:\n  memory: 2GiB\n", 2, 11, "guest.memory", memory),
    Refusal("swiotlb 100 KiB", "guest:\n  swiotlb: 100KiB\n", 2, 12, "guest.swiotlb", swiotlb),
    Refusal(
      "swiotlb half the memory", "guest:\n  memory: 1MiB\n  swiotlb: 512KiB\n", 3, 12, "guest.swiotlb",
      swiotlb),
    Refusal(
      "a boundary below the memory", "guest:\n  memory: 16MiB\n  boundary: 0x800000\n", 3, 13,
      "guest.boundary",
      boundary),
    Refusal("an unaligned boundary", "guest:\n  boundary: 0x10000001\n", 2, 13, "guest.boundary", boundary),
    Refusal(
      "a boundary whose shared alias passes 2^48", "guest:\n  boundary: 0xFFFF_FFFF_F000\n", 2, 13,
      "guest.boundary", boundary),
    Refusal("bus 0", "devices:\n  - bus: 0\n", 2, 10, "devices[0].bus", "0 is outside 1...255"),
    Refusal(
      "functions 9", "devices:\n  - functions: 9\n", 2, 16, "devices[0].functions", "9 is outside 1...8"),
    Refusal(
      "more than 8 functions and VFs", "devices:\n  - { functions: 4, vfs: 5 }\n", 2, 5, "devices[0]",
      "at most 8 functions and VFs together"),
    Refusal(
      "pasid-bits 21", "devices:\n  - pasid-bits: 21\n", 2, 17, "devices[0].pasid-bits",
      "21 is outside 0...20"),
    Refusal(
      "non-TEE range 6", "devices:\n  - report: { non-tee-ranges: [6] }\n", 2, 32,
      "devices[0].report.non-tee-ranges[0]", "6 is outside 0...5"),
    Refusal(
      "measurement index 255", "devices:\n  - measurements:\n      - { index: 255, text: fw }\n", 3, 18,
      "devices[0].measurements[0].index", "255 is outside 1...254"),
    Refusal(
      "dma size 0", steps("  - dma:\n      device: \"03:00.1\"\n      size: 0\n"), 7, 13, "steps[0].dma.size",
      "size must be 1 B to 64 MiB"),
    Refusal(
      "dma size above Int.max",
      steps("  - dma:\n      device: \"03:00.1\"\n      size: 0xFFFF_FFFF_FFFF_FFFF\n"), 7,
      13, "steps[0].dma.size", "size must be 1 B to 64 MiB"),
    Refusal(
      "dma size in KB", steps("  - dma:\n      device: \"03:00.1\"\n      size: 16KB\n"), 7, 13,
      "steps[0].dma.size", "'16KB' \(notASize)"),
    Refusal(
      "config-write size 3",
      steps("  - config-write:\n      device: \"03:00.1\"\n      offset: 4\n      value: 1\n      size: 3\n"),
      9, 13,
      "steps[0].config-write.size", "size must be 1, 2 or 4"),
    Refusal(
      "config-write offset 0x1000",
      steps("  - config-write:\n      device: \"03:00.1\"\n      offset: 0x1000\n      value: 1\n"), 7, 15,
      "steps[0].config-write.offset", "0x1000 is outside 0...4095"),
  ]

  static let checks =
    "certificateChain, measurementsSignature, nonce, measurementsFormat, missingMeasurement, measurementMismatch, reportDigest, interfaceReport, tdiState"

  static let unknownNames: [Refusal] = [
    Refusal(
      "viommu maybe", "guest:\n  viommu: maybe\n", 2, 11, "guest.viommu", "'maybe' is not off, strict or lazy"
    ),
    Refusal(
      "model e1000", "devices:\n  - model: e1000\n", 2, 12, "devices[0].model",
      "unknown model 'e1000' (cove-dma)"),
    Refusal(
      "compat x", "devices:\n  - compat: x\n", 2, 13, "devices[0].compat",
      "'x' is not specification or reference-emulators"),
    Refusal(
      "measurement type firmware",
      "devices:\n  - measurements:\n      - { index: 1, type: firmware, text: fw }\n", 3,
      27, "devices[0].measurements[0].type", "unknown measurement type 'firmware'"),
    Refusal(
      "hex that is not hex", "devices:\n  - measurements:\n      - { index: 1, hex: 0xzz }\n", 3, 26,
      "devices[0].measurements[0].hex", "'0xzz' is not hex"),
    Refusal(
      "hex with a sign", "devices:\n  - measurements:\n      - { index: 1, hex: +f }\n", 3, 26,
      "devices[0].measurements[0].hex", "'+f' is not hex"),
    Refusal(
      "hex of half a byte", "devices:\n  - measurements:\n      - { index: 1, hex: abc }\n", 3, 26,
      "devices[0].measurements[0].hex", "'abc' is not whole bytes of hex"),
    Refusal(
      "trust anchor devices", "policy:\n  trust-anchors: [devices]\n", 2, 19, "policy.trust-anchors[0]",
      "'devices' is not 'device', 'bus:<n>' (a device's bus) or 'other:<seed>'"),
    Refusal(
      "policy measurements reference", "policy:\n  measurements: reference\n", 2, 17, "policy.measurements",
      "expected 'device' or a mapping of index to allowed values"),
    Refusal(
      "config-write by hypervisor",
      steps(
        "  - config-write:\n      device: \"03:00.1\"\n      offset: 4\n      value: 1\n      by: hypervisor\n"
      ), 9,
      11, "steps[0].config-write.by", "'by' is guest or host"),
    Refusal(
      "convert to public", steps("  - convert: { gpa: 0x1000, to: public }\n"), 5, 33, "steps[0].convert.to",
      "'to' is shared or private"),
    Refusal(
      "inject action explode", steps("  - inject:\n      action: explode\n"), 6, 15, "steps[0].inject.action",
      "'explode' is not one of drop, corrupt, truncate, duplicate, replay, delay"),
    Refusal(
      "inject direction sideways", steps("  - inject:\n      action: drop\n      direction: sideways\n"), 7,
      18,
      "steps[0].inject.direction", "'direction' is request or response"),
    Refusal(
      "inject match everything", steps("  - inject:\n      action: drop\n      match: everything\n"), 7, 14,
      "steps[0].inject.match", "'everything' is not one of any, discovery, spdm, secured"),
    Refusal(
      "errno EFOO", steps("  - lock: \"03:00.1\"\n    expect: { error: EFOO }\n"), 6, 22,
      "steps[0].expect.error",
      "'EFOO' is not an errno name (EBUSY, EINVAL…)"),
    Refusal(
      "check bogus", steps("  - verify: \"03:00.1\"\n    expect: { check: bogus }\n"), 6, 22,
      "steps[0].expect.check", "'bogus' is not an evidence check (\(checks))"),
    Refusal(
      "TDI state LOCKED", steps("  - lock: \"03:00.1\"\n    expect: { tdi: LOCKED }\n"), 6, 20,
      "steps[0].expect.tdi",
      "'LOCKED' is not a TDI state (CONFIG_UNLOCKED, CONFIG_LOCKED, RUN, ERROR)"),
    Refusal(
      "trust sure", steps("  - lock: \"03:00.1\"\n    expect: { trust: sure }\n"), 6, 22,
      "steps[0].expect.trust",
      "'sure' is not untrusted, locked, accepted or revoked"),
  ]

  static let drivers: [Refusal] = [
    Refusal(
      "binding a driver not in drivers", steps("  - bind: { device: \"03:00.1\", driver: cove-dma-pasid }\n"),
      5, 40,
      "steps[0].bind.driver", "driver 'cove-dma-pasid' is not in the image's drivers"),
    Refusal(
      "expecting a driver not in drivers",
      steps("  - lock: \"03:00.1\"\n    expect: { driver: cove-dmaa }\n"), 6,
      23, "steps[0].expect.driver", "driver 'cove-dmaa' is not in the image's drivers (or none)"),
    Refusal(
      "an unknown driver", "drivers: [cove-dma, e1000e]\n", 1, 21, "drivers[1]",
      "unknown driver 'e1000e' (registered: cove-dma, cove-dma-pasid)"),
    Refusal(
      "a driver listed twice", "drivers: [cove-dma, cove-dma]\n", 1, 21, "drivers[1]",
      "driver 'cove-dma' is listed twice"),
  ]

  static let duplicates: [Refusal] = [
    Refusal(
      "two devices on one bus", "devices:\n  - bus: 3\n  - bus: 3\n", 3, 5, "devices[1]",
      "bus 3 is already devices[0]'s"),
    Refusal(
      "a measurement index twice",
      "devices:\n  - measurements:\n      - { index: 1, text: a }\n      - { index: 1, text: b }\n", 4, 9,
      "devices[0].measurements[1]", "measurement index 1 is listed twice"),
  ]

  static func check(_ refusal: Refusal) {
    #expect(
      throws: ImageError(
        file: "t.yaml", line: refusal.line, column: refusal.column, path: refusal.path,
        message: refusal.message)
    ) { try GuestImage(yaml: refusal.yaml, file: "t.yaml") }
  }

  @Test(arguments: document) func aBadDocumentIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: unknownKeys) func anUnknownKeyIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: wrongTypes) func aValueOfTheWrongTypeIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: functions) func aBadFunctionIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: actionShapes) func aStepOrMeasurementOfTheWrongShapeIsRefused(_ refusal: Refusal) {
    Self.check(refusal)
  }
  @Test(arguments: outOfRange) func aValueOutOfRangeIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: unknownNames) func anUnknownNameIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: drivers) func aDriverNotInTheImageIsRefused(_ refusal: Refusal) { Self.check(refusal) }
  @Test(arguments: duplicates) func aDuplicateIsRefused(_ refusal: Refusal) { Self.check(refusal) }

  @Test func theErrorPrintsAsFileLineColumnPathMessage() {
    let error = ImageError(
      file: "default.yaml", line: 12, column: 9, path: "devices[0].assign[0]", message: "'00:1f.9' is bad")
    #expect("\(error)" == "default.yaml:12:9: devices[0].assign[0]: '00:1f.9' is bad")
    #expect(
      "\(ImageError(file: "x.yaml", line: 1, column: 1, path: "", message: "the image is empty"))"
        == "x.yaml:1:1: the image is empty")
  }
}

extension ImageValidationTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("guest-images")

  static var shippedImages: [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasSuffix(".yaml") }
      .sorted()
  }

  @Test func thereAreShippedImages() {
    #expect(Self.shippedImages.contains("default.yaml"))
  }

  @Test(arguments: shippedImages) func everyShippedImageDecodes(_ name: String) throws {
    let text = try String(contentsOf: Self.root.appendingPathComponent(name), encoding: .utf8)
    #expect(throws: Never.self) { try GuestImage(yaml: text, file: name) }
  }

  /// Every ```yaml block in guest-images/README.md is a whole image that decodes, so the reference's
  /// examples cannot drift from the decoder.
  @Test func everyExampleInTheReferenceDecodes() throws {
    let text = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
    let blocks = text.components(separatedBy: "```yaml\n").dropFirst().map {
      $0.components(separatedBy: "```").first ?? ""
    }
    #expect(blocks.count >= 2)
    for (index, block) in blocks.enumerated() {
      #expect(throws: Never.self, "README example \(index + 1)") {
        try GuestImage(yaml: block, file: "README example \(index + 1)")
      }
    }
  }

  /// The spellings the reference promises are accepted, with the values it says they mean.
  @Test func theSpellingsTheReferencePromisesDecodeToTheirValues() throws {
    let image = try GuestImage(
      yaml: """
        seed: 0x2A
        guest:
          memory: 32 MiB
          boundary: 0x1_0000_0000
          viommu: strict
          swiotlb: 524288
          autoprobe: no
          dma-debug: off
          connect: yes
        devices:
          - bus: 0x10
            functions: 1
            vfs: 2
            assign: ["0000:10:00.2", "10:00.0"]
            identity-seed: 1_000
            measurements:
              - { index: 1, text: fw }
              - { index: 2, type: mutable-firmware-version, hex: "01:02 03" }
        drivers: [cove-dma-pasid]
        steps:
          - dma: { device: "10:00.2", size: 0x1000, shared: true }
          - config-write: { device: "10:00.0", offset: 4, size: 1, value: 0xff }
          - convert: { gpa: 0x2000, to: shared }
          - inject: { action: corrupt, match: spdm }
            expect: { error: EIO, driver: none }
        """, file: "t.yaml")
    #expect(image.name == "t.yaml" && image.seed == 42)
    #expect(
      image.guest.memory == 32 << 20 && image.guest.boundary == 1 << 32 && image.guest.viommu == .strict)
    #expect(
      image.guest.swiotlb == 512 << 10 && !image.guest.autoprobe && !image.guest.dmaDebug
        && image.guest.connect)
    let device = try #require(image.devices.first)
    #expect(device.bus == 0x10 && device.functionIDs.map(\.description) == ["10:00.0", "10:00.1", "10:00.2"])
    #expect(device.assign.map(\.description) == ["10:00.2", "10:00.0"] && device.identitySeed == 1000)
    #expect(device.measurements?.map(\.raw) == [false, true])
    #expect(device.measurements?.first?.value.count == 48)
    #expect(device.measurements?.last?.value == [1, 2, 3])
    #expect(image.policy.trustAnchors == [.device(1000)] && image.policy.measurements == nil)
    #expect(image.steps.map(\.line) == [21, 22, 23, 24])
    #expect(
      image.steps.map(\.action) == [
        .dma(GuestImage.DMAStep(device: device.function(2), size: 4096, shared: true)),
        .configWrite(device.function(0), offset: 4, size: 1, value: 0xFF, byHost: false),
        .convert(gpa: 0x2000, pages: 1, toShared: true),
        .inject(
          GuestImage.InjectionRule(action: "corrupt", direction: "response", occurrence: 1, match: "spdm")),
      ])
    #expect(image.steps.last?.expect.error.map(String.init(describing:)) == "EIO")
    #expect(image.steps.last?.expect.driver == "none")
  }
}

extension ImageValidationTests {
  /// Found in review: a huge SVA size was converted to Int before its range check, and host-action
  /// functions lost their key in the error path.
  @Test func theNewerActionsAreCheckedLikeTheRest() {
    let base = "devices:\n  - assign: [\"03:00.1\"]\nsteps:\n"
    #expect {
      try GuestImage(
        yaml: base + "  - sva: { device: \"03:00.1\", size: 0xFFFFFFFFFFFFFFFF }\n", file: "t.yaml")
    } throws: { ($0 as? ImageError)?.path == "steps[0].sva.size" }
    #expect {
      try GuestImage(yaml: base + "  - host-stop: zz\n", file: "t.yaml")
    } throws: { ($0 as? ImageError)?.path == "steps[0].host-stop" }
    #expect {
      try GuestImage(
        yaml: base + "  - escape: { device: \"03:00.1\", target: neighbour-gpa }\n", file: "t.yaml")
    } throws: { ($0 as? ImageError)?.message == "an escape step needs a 'neighbour' guest" }
    #expect {
      try GuestImage(
        yaml: base + "  - tamper-evidence: { device: \"03:00.1\", mode: forge }\n", file: "t.yaml")
    } throws: { ($0 as? ImageError)?.path == "steps[0].tamper-evidence.mode" }
  }
}
