import CoveCommands
import CoveCrypto
// cove-bench: how close a full SPDM connection comes to the cost of its own cryptography.
//
// One "connection" is what a TSM does to a device with P-384/SHA-384 over the DOE mailbox:
// VCA → certificate chain → signed measurements → KEY_EXCHANGE → FINISH → one application message
// → END_SESSION. Its "crypto floor" is the public-key work that connection cannot avoid, done
// alone in the same process: 2 ECDSA signs (MEASUREMENTS, KEY_EXCHANGE_RSP), 2 verifies, 2 ECDH
// key generations, 2 ECDH derivations (with the peer-point import), and 1 chain verification
// (3 DER certificates parsed and verified). Both are measured interleaved, median of N runs.
import CoveScenario
import Foundation
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP

/// Section 1: the SPDM connection against its crypto floor (issue: foundation, "Speed").
enum SPDMBench {
  static func run(runs: Int) throws {
    let device = try BuiltInDevice()
    var policy = device.requesterPolicy
    policy.baseAsymAlgorithms = .ecdsaP384
    policy.baseHashAlgorithms = .sha384
    policy.dheGroups = .secp384r1

    func connection() throws {
      var driver = DeviceAttestation.makeDriver(device: device, policy: policy, entropy: SystemEntropy())
      try driver.initializeConnection()
      try driver.retrieveCertificateChain()
      _ = try driver.measurements(signed: true)
      let sessionID = try driver.startSession()
      let payload = [UInt8](repeating: 0xA5, count: 64)
      _ = try driver.vendorDefined(
        standardID: EchoVendorProtocol.standardID, vendorID: EchoVendorProtocol.vendorIDBytes,
        payload: payload,
        sessionID: sessionID)
      try driver.endSession(sessionID: sessionID)
    }

    let digest = HashAlgorithm.sha384.hash(Array("cove-bench".utf8))
    let chainDER = device.pki.chainRootToLeaf.map(\.der)
    let anchors = [device.pki.root]
    let entropy = SystemEntropy()
    let verifyTime = BuiltInDevice.notBefore + 86_400

    func cryptoFloor() throws {
      // One chain: parse the DER certificates, verify them against the root, take the leaf's key.
      let chain = try chainDER.map { try X509Certificate(der: $0) }
      _ = try CertificateChainVerifier(trustAnchors: anchors).verify(rootToLeaf: chain, at: verifyTime)
      let leafKey = try chain[chain.count - 1].publicKey()
      // 2 signatures by the device key, each verified once with the leaf key.
      for _ in 0..<2 {
        let signature = try device.pki.deviceKey.signature(forDigest: digest)
        guard leafKey.isValidSignature(signature, forDigest: digest) else {
          fatalError("floor signature did not verify")
        }
      }
      // Each side generates an ephemeral key and derives the shared secret from the other's point.
      let requesterKey = try ECPrivateKey(curve: .p384, entropy: entropy)
      let responderKey = try ECPrivateKey(curve: .p384, entropy: entropy)
      let a = try requesterKey.sharedSecret(
        with: ECPublicKey(curve: .p384, rawXY: responderKey.publicKey.rawXY))
      let b = try responderKey.sharedSecret(
        with: ECPublicKey(curve: .p384, rawXY: requesterKey.publicKey.rawXY))
      guard a == b else { fatalError("floor ECDH mismatch") }
    }

    let clock = ContinuousClock()
    // Warm up both paths (page in code, OpenSSL's lazy tables).
    for _ in 0..<3 {
      try connection()
      try cryptoFloor()
    }
    var connectionSamples: [Duration] = []
    var floorSamples: [Duration] = []
    for _ in 0..<runs {
      connectionSamples.append(try clock.measure { try connection() })
      floorSamples.append(try clock.measure { try cryptoFloor() })
    }
    let connectionMedian = medianMilliseconds(connectionSamples)
    let floorMedian = medianMilliseconds(floorSamples)
    let ratio = connectionMedian / floorMedian
    print("cove-bench: full SPDM 1.3 connection over DOE, ECDSA P-384 / SHA-384 / secp384r1 / AES-256-GCM")
    print("  median of \(runs) interleaved runs each")
    print(
      String(
        format:
          "  connection  %9.3f ms  VCA, chain, signed measurements, KEY_EXCHANGE, FINISH, app message, END_SESSION",
        connectionMedian))
    print(
      String(
        format:
          "  baseline    %9.3f ms  crypto floor: 2 ECDSA sign, 2 verify, 2 ECDH keygen + derive, 1 chain verify",
        floorMedian))
    print(
      String(
        format: "  ratio       %9.3f     connection / floor (target <= 1.30): %@", ratio,
        (ratio <= 1.3 ? "met" : "NOT MET") as NSString))
  }
}

/// Times two setups interleaved, `runs` times each after 3 warm-ups, each returning the teardown that
/// is run outside the timed part; the medians in milliseconds.
func interleavedMedians(
  runs: Int, _ first: () throws -> () throws -> Void, _ second: () throws -> () throws -> Void
) throws -> (first: Double, second: Double) {
  for _ in 0..<3 {
    try first()()
    try second()()
  }
  let clock = ContinuousClock()
  var a: [Duration] = []
  var b: [Duration] = []
  for _ in 0..<runs {
    var teardown: () throws -> Void = {}
    a.append(try clock.measure { teardown = try first() })
    try teardown()
    b.append(try clock.measure { teardown = try second() })
    try teardown()
  }
  return (medianMilliseconds(a), medianMilliseconds(b))
}

/// What both TSM benches time: connect, bind, LOCK (with the report) and START of one TDI, which must
/// end in RUN. Returns the disconnect.
func connectLockStart<Transport: TSMTransport>(
  _ tsm: HostTSM<Transport>, _ function: RequesterID, for guest: GuestID
)
  throws -> () throws -> Void
{
  try tsm.connect()
  try tsm.bind(function, to: guest)
  try tsm.lock(function, for: guest)
  try tsm.start(function, for: guest)
  guard try tsm.deviceState(function) == .run else { fatalError("TDI not in RUN") }
  return { try tsm.disconnect() }
}

/// The median of `samples`, in milliseconds.
func medianMilliseconds(_ samples: [Duration]) -> Double {
  let sorted = samples.map {
    Double($0.components.seconds) * 1e3 + Double($0.components.attoseconds) / 1e15
  }.sorted()
  return sorted.count % 2 == 1
    ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

@main
struct CoveBench {
  /// `cove-bench [spdm|tdisp|socket|link|iommu|dma|platform|guest|all] [runs]`: every section by default.
  static func main() throws {
    let arguments = Array(CommandLine.arguments.dropFirst())
    let section = arguments.first ?? "all"
    let runs = max(20, arguments.dropFirst().first.flatMap { Int($0) } ?? 30)
    switch section {
    case "spdm": try SPDMBench.run(runs: runs)
    case "tdisp": try TDISPBench.run(runs: runs)
    case "socket": try SPDMSocketBench.run(runs: runs)
    case "link": try GuestLinkBench.run(runs: runs)
    case "iommu": try IOMMUBench.run()
    case "dma": try DMABench.run(runs: runs)
    case "platform": try PlatformBench.run(runs: runs)
    case "guest": try GuestDMABench.run(runs: runs)
    case "all":
      try SPDMBench.run(runs: runs)
      print("")
      try TDISPBench.run(runs: runs)
      print("")
      try SPDMSocketBench.run(runs: runs)
      print("")
      try GuestLinkBench.run(runs: runs)
      print("")
      try IOMMUBench.run()
      print("")
      try DMABench.run(runs: runs)
      print("")
      try PlatformBench.run(runs: runs)
      print("")
      try GuestDMABench.run(runs: runs)
    default:
      FileHandle.standardError.write(
        Data("usage: cove-bench [spdm|tdisp|socket|link|iommu|dma|platform|guest|all] [runs]\n".utf8))
      exit(2)
    }
  }
}
