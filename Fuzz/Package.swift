// swift-tools-version:6.1
// libFuzzer harnesses for Cove's decoders and state machines. A separate package so the fuzzer flags
// (-sanitize=fuzzer,address) never touch the main build. Usage: README.md, run.sh.
import PackageDescription

/// One executable per harness; each exports LLVMFuzzerTestOneInput and hands main to libFuzzer.
func harness(_ name: String, _ products: [String]) -> Target {
  .executableTarget(
    name: name,
    dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: "Cove") },
    swiftSettings: [.swiftLanguageMode(.v6)]
  )
}

let package = Package(
  name: "CoveFuzz",
  products: [
    .executable(name: "FuzzDOE", targets: ["FuzzDOE"]),
    .executable(name: "FuzzSPDMDecoders", targets: ["FuzzSPDMDecoders"]),
    .executable(name: "FuzzResponder", targets: ["FuzzResponder"]),
    .executable(name: "FuzzPCISIGProtocols", targets: ["FuzzPCISIGProtocols"]),
    .executable(name: "FuzzVIOMMUCommands", targets: ["FuzzVIOMMUCommands"]),
    .executable(name: "FuzzEvidence", targets: ["FuzzEvidence"]),
    .executable(name: "FuzzGuestEnumeration", targets: ["FuzzGuestEnumeration"]),
    .executable(name: "FuzzPcap", targets: ["FuzzPcap"]),
    .executable(name: "FuzzGuestLink", targets: ["FuzzGuestLink"]),
    .executable(name: "FuzzSPDMSocket", targets: ["FuzzSPDMSocket"]),
  ],
  dependencies: [
    // The root package; its manifest declares `name: "Cove"`.
    .package(name: "Cove", path: "..")
  ],
  targets: [
    .target(name: "CLibFuzzer"),
    .target(
      name: "FuzzSupport", dependencies: ["CLibFuzzer", .product(name: "CoveWire", package: "Cove")],
      swiftSettings: [.swiftLanguageMode(.v6)]),
    harness("FuzzDOE", ["PCIe"]),
    harness("FuzzSPDMDecoders", ["SPDM", "CoveWire", "CoveCrypto"]),
    harness("FuzzResponder", ["SPDM", "CoveCrypto"]),
    harness("FuzzPCISIGProtocols", ["SPDM", "TDISP", "IDEKM", "CoveWire", "CoveCrypto"]),
    harness("FuzzVIOMMUCommands", ["HostPlatform", "GuestABI", "IOMMU", "PCIe", "CoveWire"]),
    harness(
      "FuzzEvidence",
      ["GuestKernel", "GuestABI", "HostPlatform", "SPDM", "TDISP", "CoveCrypto", "PCIe", "IOMMU"]),
    harness("FuzzGuestEnumeration", ["GuestKernel", "GuestABI", "CoveCrypto", "PCIe", "IOMMU", "TDISP"]),
    harness("FuzzPcap", ["CoveScenario", "SPDM", "PCIe", "CoveWire", "CoveCrypto"]),
    harness("FuzzGuestLink", ["CoveTransport", "GuestABI"]),
    harness("FuzzSPDMSocket", ["CoveTransport", "SPDM", "PCIe"]),
  ]
)
