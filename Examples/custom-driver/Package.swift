// swift-tools-version:6.1
// A guest driver written outside Cove, against Cove's public guest API, run from a guest image.
import PackageDescription

let package = Package(
  name: "custom-driver",
  dependencies: [
    // Cove itself, by path (a real package would use its git URL and a version).
    .package(name: "Cove", path: "../..")
  ],
  targets: [
    .executableTarget(
      name: "custom-run",
      dependencies: [
        .product(name: "GuestKernel", package: "Cove"),
        .product(name: "CoveScenario", package: "Cove"),
        .product(name: "CoveCommands", package: "Cove"),
        .product(name: "PCIe", package: "Cove"),
        .product(name: "IOMMU", package: "Cove"),
      ]
    )
  ]
)
