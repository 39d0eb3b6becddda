// swift-tools-version:6.1
// Cove — a confidential-device (TEE-IO) emulator. Module layout: ../shared/design/ARCHITECTURE.md.
import PackageDescription

let strictSettings: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
  .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
  name: "Cove",
  products: [
    .executable(name: "cove", targets: ["cove"]),
    .executable(name: "cove-bench", targets: ["cove-bench"]),
    .library(name: "CoveCrypto", targets: ["CoveCrypto"]),
    .library(name: "CoveWire", targets: ["CoveWire"]),
    .library(name: "PCIe", targets: ["PCIe"]),
    .library(name: "SPDM", targets: ["SPDM"]),
    .library(name: "IOMMU", targets: ["IOMMU"]),
    .library(name: "TDISP", targets: ["TDISP"]),
    .library(name: "IDEKM", targets: ["IDEKM"]),
    .library(name: "GuestABI", targets: ["GuestABI"]),
    .library(name: "HostPlatform", targets: ["HostPlatform"]),
    .library(name: "GuestKernel", targets: ["GuestKernel"]),
    .library(name: "CoveGuestDrivers", targets: ["CoveGuestDrivers"]),
    .library(name: "CoveScenario", targets: ["CoveScenario"]),
    .library(name: "CoveTransport", targets: ["CoveTransport"]),
    .library(name: "CoveCommands", targets: ["CoveCommands"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
  ],
  targets: [
    // OpenSSL from the system (libssl-dev); the Makefile checks for it before building.
    .systemLibrary(
      name: "COpenSSL",
      pkgConfig: "openssl",
      providers: [.apt(["libssl-dev"])]
    ),
    .target(name: "CoveCrypto", dependencies: ["COpenSSL"], swiftSettings: strictSettings),
    .target(name: "CoveWire", swiftSettings: strictSettings),
    .target(name: "PCIe", dependencies: ["CoveWire"], swiftSettings: strictSettings),
    .target(name: "SPDM", dependencies: ["CoveWire", "CoveCrypto", "PCIe"], swiftSettings: strictSettings),
    .target(name: "IOMMU", dependencies: ["PCIe"], swiftSettings: strictSettings),
    .target(
      name: "TDISP", dependencies: ["SPDM", "PCIe", "CoveWire", "CoveCrypto"], swiftSettings: strictSettings),
    .target(name: "IDEKM", dependencies: ["SPDM", "PCIe", "CoveWire"], swiftSettings: strictSettings),
    // The guest⇄host boundary: hypercalls, guest TSM requests, vIOMMU commands (ARCHITECTURE.md).
    .target(
      name: "GuestABI", dependencies: ["IOMMU", "PCIe", "TDISP", "SPDM", "CoveWire"],
      swiftSettings: strictSettings),
    .target(
      name: "HostPlatform",
      dependencies: ["GuestABI", "SPDM", "TDISP", "IDEKM", "IOMMU", "PCIe", "CoveWire", "CoveCrypto"],
      exclude: ["VIOMMU/README.md"],
      swiftSettings: strictSettings
    ),
    .target(
      name: "GuestKernel",
      dependencies: ["GuestABI", "IOMMU", "PCIe", "SPDM", "TDISP", "CoveWire", "CoveCrypto"],
      swiftSettings: strictSettings
    ),
    // Sample guest drivers, written only against GuestKernel's public API.
    .target(
      name: "CoveGuestDrivers", dependencies: ["GuestKernel", "GuestABI", "PCIe", "IOMMU"],
      swiftSettings: strictSettings),
    // Guest images, the scenario runner and its records (timeline, JSON Lines, pcap, HTML report).
    .target(
      name: "CoveScenario",
      dependencies: [
        "HostPlatform", "GuestKernel", "CoveGuestDrivers", "GuestABI", "SPDM", "TDISP", "IDEKM", "PCIe",
        "IOMMU",
        "CoveWire", "CoveCrypto", .product(name: "Yams", package: "Yams"),
      ],
      swiftSettings: strictSettings
    ),
    // The two boundaries on real sockets (SwiftNIO): the guest⇄host link between `cove host` and
    // `cove guest` processes, and the spdm-emu/QEMU SPDM socket protocol (PROTOCOLS.md).
    .target(
      name: "CoveTransport",
      dependencies: [
        "CoveScenario", "HostPlatform", "GuestKernel", "CoveGuestDrivers", "GuestABI", "SPDM", "TDISP",
        "IDEKM",
        "PCIe", "IOMMU", "CoveWire", "CoveCrypto",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: strictSettings
    ),
    .target(
      name: "CoveCommands",
      dependencies: [
        "CoveCrypto", "CoveWire", "PCIe", "SPDM", "TDISP", "IDEKM", "IOMMU", "HostPlatform", "CoveScenario",
        "CoveTransport",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: strictSettings
    ),
    .executableTarget(
      name: "cove",
      dependencies: ["CoveCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      swiftSettings: strictSettings
    ),
    .executableTarget(
      name: "cove-bench",
      dependencies: [
        "CoveCrypto", "CoveWire", "PCIe", "SPDM", "IOMMU", "TDISP", "GuestABI", "HostPlatform",
        "GuestKernel", "CoveGuestDrivers", "CoveScenario", "CoveCommands", "CoveTransport",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(name: "CoveWireTests", dependencies: ["CoveWire"], swiftSettings: strictSettings),
    .testTarget(name: "CoveCryptoTests", dependencies: ["CoveCrypto"], swiftSettings: strictSettings),
    .testTarget(name: "PCIeTests", dependencies: ["PCIe", "CoveWire"], swiftSettings: strictSettings),
    .testTarget(name: "IOMMUTests", dependencies: ["IOMMU", "PCIe"], swiftSettings: strictSettings),
    .testTarget(
      name: "TDISPTests", dependencies: ["TDISP", "SPDM", "PCIe", "CoveWire", "CoveCrypto"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "HostPlatformTests",
      dependencies: [
        "HostPlatform", "GuestABI", "SPDM", "TDISP", "IDEKM", "PCIe", "IOMMU", "CoveWire", "CoveCrypto",
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "GuestKernelTests",
      dependencies: [
        "GuestKernel", "CoveGuestDrivers", "GuestABI", "HostPlatform", "SPDM", "TDISP", "PCIe", "IOMMU",
        "CoveWire", "CoveCrypto",
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "IDEKMTests", dependencies: ["IDEKM", "SPDM", "PCIe", "CoveWire"], swiftSettings: strictSettings),
    .testTarget(
      name: "SPDMTests",
      dependencies: ["SPDM", "PCIe", "CoveWire", "CoveCrypto"],
      resources: [.copy("Fixtures")],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "CoveScenarioTests",
      dependencies: [
        "CoveScenario", "HostPlatform", "GuestKernel", "SPDM", "TDISP", "PCIe", "CoveWire", "CoveCrypto",
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "CoveTransportTests",
      dependencies: [
        "CoveTransport", "CoveScenario", "HostPlatform", "GuestKernel", "GuestABI", "SPDM", "TDISP", "IDEKM",
        "PCIe", "IOMMU", "CoveWire", "CoveCrypto",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "CoveCommandsTests",
      dependencies: ["CoveCommands", "CoveScenario", "SPDM", "CoveCrypto"],
      swiftSettings: strictSettings
    ),
  ]
)
