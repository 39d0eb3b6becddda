public import ArgumentParser
import CoveCrypto
import CoveScenario
import CoveTransport
import CoveWire
import Foundation
import HostPlatform
import PCIe
import SPDM
import TDISP

/// `cove responder`: serves a Cove device's DSM (SPDM with TDISP and IDE_KM) on the SPDM socket
/// protocol of DMTF spdm-emu and QEMU (PROTOCOLS.md), so an external requester (DMTF
/// `spdm_requester_emu`, QEMU's `spdm_port`, Cove's own `cove tsm`) can attest and drive it. TDI and
/// IDE stream state changes are printed as they happen.
public struct ResponderCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "responder",
    abstract: "Serve a Cove device's DSM on the spdm-emu/QEMU SPDM socket protocol (TCP).",
    discussion: """
      The device is the built-in default image's first device unless --device selects another:
      IMAGE (a built-in image's name or a YAML file), IMAGE#N (its N-th device, from 0),
      IMAGE#bus=BB (the device on bus BB, hex) or IMAGE#NAME (the first device of model NAME). Its certificate chain and key are the image's test
      PKI unless --cert-chain and --key give others (PEM or DER; the chain root first).

      The server stops on SHUTDOWN, on CONTINUE it takes the next connection; --once stops it when
      the first connection ends. --pcap writes the traffic (link type 292 DOE objects for doe and
      none, 291 MCTP for mctp) and --keys the session secrets, for DMTF spdm-dump:
        spdm_dump -r FILE --dhe_secret <dhe from the keys file>

      Example:
        cove responder --port 2323 --transport doe --pcap cove.pcap --keys cove.keys
        spdm_requester_emu --trans PCI_DOE        (from DMTF spdm-emu)
      """)

  @Option(help: "TCP port to listen on (0: any free port).")
  public var port: Int = 2323

  @Option(help: "Address to listen on.")
  public var host: String = "127.0.0.1"

  @Option(help: "Transport binding: doe, mctp or none.")
  public var transport: String = "doe"

  @Option(help: "The device to serve: IMAGE, IMAGE#N, IMAGE#bus=BB or IMAGE#NAME.")
  public var device: String?

  @Option(name: .customLong("cert-chain"), help: "The device's certificate chain (PEM or DER), root first.")
  public var certChain: String?

  @Option(help: "The device's private key (PEM, or DER PKCS#8/SEC1), matching the chain's leaf.")
  public var key: String?

  @Option(help: "Write the traffic as a pcap file when the server stops (and after each connection).")
  public var pcap: String?

  @Option(help: "Write the SPDM session secrets (for spdm-dump) next to the capture.")
  public var keys: String?

  @Flag(help: "Stop when the first connection ends.")
  public var once = false

  @Flag(help: "Print every SPDM exchange, not only connections and state changes.")
  public var verbose = false

  public init() {}

  public func validate() throws {
    guard SPDMSocketBinding(rawValue: transport) != nil else {
      throw ValidationError("--transport must be doe, mctp or none, not '\(transport)'")
    }
    guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0…65535, not \(port)") }
    guard (certChain == nil) == (key == nil) else {
      throw ValidationError("--cert-chain and --key go together")
    }
    if let device, SPDMSocketDeviceSelector(parsing: device) == nil {
      throw ValidationError("--device must be IMAGE, IMAGE#N, IMAGE#bus=BB or IMAGE#NAME, not '\(device)'")
    }
  }

  public func run() throws {
    let binding = SPDMSocketBinding(rawValue: transport)!
    let selector = device.flatMap(SPDMSocketDeviceSelector.init(parsing:)) ?? SPDMSocketDeviceSelector()
    let image = try ImageSource.load(selector.image)
    guard let spec = selector.select(in: image) else {
      throw ValidationError(
        "--device \(selector): no such device; the image has "
          + image.devices.enumerated().map {
            "#\($0.offset) \($0.element.model) on bus \(String(format: "%02x", $0.element.bus))"
          }
          .joined(separator: ", "))
    }
    var identity = try SPDMSocketDeviceIdentity(spec: spec)
    if let certChain, let key {
      identity.certificateChain = try CredentialFiles.certificates(certChain, option: "--cert-chain")
      identity.signingKey = try CredentialFiles.privateKey(key)
      guard let leaf = identity.certificateChain.last,
        try leaf.publicKey().rawXY == identity.signingKey.publicKey.rawXY
      else { throw ValidationError("--key does not match the leaf certificate of --cert-chain") }
    }
    let built = try CoveDMADevice(spec: spec, identity: identity, entropy: SystemEntropy())
    let core = SPDMSocketResponderCore(device: built, binding: binding)
    let (pcap, keys, verbose) = (pcap, keys, verbose)
    core.recorder.onRecord = { record in
      switch record.kind {
      case .state: emitLine("  \(record.summary)")
      case .event: emitLine("\(record.summary)")
      case .doe where verbose:
        emitLine("    \(record.isRequest == true ? "→" : "←") \(Hex.encode(record.bytes?.prefix(24) ?? []))…")
      default: break
      }
      if record.kind == .event, record.summary.contains("closed") {
        ResponderCommand.save(core: core, pcap: pcap, keys: keys)
      }
    }
    let server: SPDMSocketResponder
    do { server = try SPDMSocketResponder(core: core, host: host, port: port, once: once) } catch {
      FileHandle.standardError.write(Data("cove responder: \(error)\n".utf8))
      throw ExitCode(1)
    }
    emitLine(
      "cove responder: serving \(spec.model) on bus \(String(format: "%02x", spec.bus)) (\(built.tdisp.functionIDs.count) functions, stream \(built.tsmConfiguration.streamID)) at \(host):\(server.port), transport \(binding)"
    )
    emitLine("trust anchor: \(identity.certificateChain.first?.subject ?? "?")")
    emitLine(
      "TDIs: "
        + built.tdisp.functionIDs.map { "\($0.bdf()) \(built.tdisp.tdi($0)?.state.name ?? "?")" }.joined(
          separator: ", "))
    server.wait()
    server.shutdown()
    let (exchanges, errors) = server.withCore { ($0.exchanges, $0.peerErrors) }
    server.withCore { ResponderCommand.save(core: $0, pcap: pcap, keys: keys) }
    emitLine(
      "cove responder: stopped after \(exchanges) exchanges, \(errors.count) connection(s) dropped for errors"
    )
  }

  static func save(core: SPDMSocketResponderCore, pcap: String?, keys: String?) {
    if let pcap { saveFile(pcap, Data(core.pcap())) }
    if let keys { saveFile(keys, Data(SessionKeysFile.write(core.sessionSecrets).utf8)) }
  }

  /// Writes a capture or key log; a file that cannot be written is said, not lost silently.
  static func saveFile(_ path: String, _ data: Data) {
    if !FileManager.default.createFile(atPath: path, contents: data) {
      FileHandle.standardError.write(Data("cove: cannot write \(path)\n".utf8))
    }
  }
}

/// `cove tsm`: Cove's host TSM attesting an external responder over the SPDM socket protocol (DMTF
/// `spdm_responder_emu`, or `cove responder`), printing what it verified.
public struct TSMCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "tsm",
    abstract: "Attest and drive an SPDM responder over the spdm-emu/QEMU SPDM socket protocol.",
    discussion: """
      VCA, the certificate chain (verified to --trust-anchor; without one, the built-in device's
      root, and its measurements as reference values), signed measurements, a session, IDE_KM key
      programming of a stream (--ide off skips it: a link without IDE), TDISP LOCK, report, START,
      STOP, then END_SESSION and SHUTDOWN (or CONTINUE with --continue). Each step prints what it
      verified; a failure names the step and what passed before it.

      --ide required (the default) needs a Selective IDE stream on the device's port 0 (IDE_KM
      QUERY); DMTF's spdm_responder_emu reports none, so run it with --ide off.

      Example:
        cove tsm --connect 127.0.0.1:2323 --transport doe
        cove tsm --connect 127.0.0.1:2323 --trust-anchor ca.cert.der --interface 00:00.0 --dsm 00:00.0
        cove tsm --connect 127.0.0.1:2398 --trust-anchor ecp384/ca.cert.der --ide off --dsm 00:00.0 --interface 00:00.0
      """)

  @Option(help: "The responder: HOST:PORT.")
  public var connect: String

  @Option(help: "Transport binding: doe, mctp or none.")
  public var transport: String = "doe"

  @Option(name: .customLong("trust-anchor"), help: "A trusted root certificate (PEM or DER); repeatable.")
  public var trustAnchors: [String] = []

  @Option(help: "The DSM function (BB:DD.F).")
  public var dsm: String = "03:00.0"

  @Option(help: "The TDI to lock, start and stop (BB:DD.F).")
  public var interface: String = "03:00.1"

  @Option(help: "The selective IDE stream to key.")
  public var stream: UInt8 = 1

  @Option(help: "IDE key programming: required (key the stream, fail without a Selective IDE stream) or off.")
  public var ide: String = TSMIDEPolicy.required.rawValue

  @Option(help: "Write the traffic as a pcap file.")
  public var pcap: String?

  @Option(help: "Write the SPDM session secrets (for spdm-dump).")
  public var keys: String?

  @Flag(help: "End with CONTINUE (the responder takes the next connection) instead of SHUTDOWN.")
  public var `continue` = false

  @Option(help: "Seconds to wait for each answer.")
  public var timeout: Int = 10

  public init() {}

  public func validate() throws {
    guard SPDMSocketBinding(rawValue: transport) != nil else {
      throw ValidationError("--transport must be doe, mctp or none, not '\(transport)'")
    }
    guard endpoint != nil else { throw ValidationError("--connect must be HOST:PORT, not '\(connect)'") }
    guard BDF(dsm) != nil else { throw ValidationError("--dsm must be BB:DD.F, not '\(dsm)'") }
    guard BDF(interface) != nil else {
      throw ValidationError("--interface must be BB:DD.F, not '\(interface)'")
    }
    guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    guard TSMIDEPolicy(rawValue: ide) != nil else {
      throw ValidationError("--ide must be required or off, not '\(ide)'")
    }
  }

  var endpoint: (host: String, port: Int)? {
    guard let colon = connect.lastIndex(of: ":"), let port = Int(connect[connect.index(after: colon)...]),
      (1...65_535).contains(port), colon > connect.startIndex
    else { return nil }
    return (String(connect[..<colon]), port)
  }

  public func run() throws {
    let binding = SPDMSocketBinding(rawValue: transport)!
    let (host, port) = endpoint!
    var anchors: [X509Certificate] = []
    for file in trustAnchors { anchors += try CredentialFiles.certificates(file, option: "--trust-anchor") }
    var policy: SPDMRequesterPolicy
    if anchors.isEmpty {
      policy = try BuiltInDevice().requesterPolicy
      emitLine(
        "trust anchor: the built-in device's root (\(policy.trustAnchors[0].subject)), its measurements as reference"
      )
    } else {
      policy = SPDMRequesterPolicy(trustAnchors: anchors)
      emitLine("trust anchors: " + anchors.map(\.subject).joined(separator: "; "))
    }
    policy.validationTime = Int64(Date().timeIntervalSince1970)
    let dsmFunction = BDF(dsm)!.requesterID
    let tdi = BDF(interface)!.requesterID
    let configuration = TSMDeviceConfiguration(
      dsmFunction: dsmFunction, interfaces: dsmFunction == tdi ? [tdi] : [dsmFunction, tdi], streamID: stream,
      ide: TSMIDEPolicy(rawValue: ide)!)

    let connection: SPDMSocketConnection
    do {
      connection = try SPDMSocketConnection(
        host: host, port: port, binding: binding, timeout: .seconds(timeout))
    } catch {
      // A responder drops a frame of another transport without a word: say so.
      let hint =
        error == .connectionClosed(pendingBytes: 0)
        ? " during the TEST hello (is the responder on another transport than \(binding)?)" : ""
      FileHandle.standardError.write(Data("cove tsm: \(error)\(hint)\n".utf8))
      throw ExitCode(1)
    }
    emitLine(
      "connected to \(host):\(port), transport \(binding)\(binding.usesHello ? " (TEST hello answered)" : "")"
    )
    var capture: [PcapRecord] = []
    connection.onPayload = { payload, _ in
      let bytes: [UInt8]
      switch binding {
      case .doe: bytes = payload
      case .mctp: bytes = [0, 0, 0, 0xC0] + payload
      // NONE has no link type: each message as the DOE object that would carry it (see the responder);
      // a plain SPDM message starts with its version byte, a secured record with a session ID.
      case .none:
        let plain = (0x10...0x1F).contains(payload.first ?? 0)
        bytes = DOEDataObject(protocol: plain ? .spdm : .securedSPDM, payload: payload).paddedToDW().encode()
      }
      capture.append(PcapRecord(time: UInt64(capture.count) * 1000, bytes: bytes))
    }
    var secrets: [SPDMSessionSecrets] = []
    defer {
      if let pcap {
        let linkType = binding == .mctp ? PcapFormat.linkTypeMCTP : PcapFormat.linkTypePCIDOE
        ResponderCommand.saveFile(pcap, Data(PcapWriter.write(capture, linkType: linkType)))
      }
      if let keys {
        ResponderCommand.saveFile(keys, Data(SessionKeysFile.write(secrets).utf8))
      }
    }
    var failedStep = "connect"
    var passedSteps: [String] = []
    do {
      _ = try SPDMSocketTSMFlow.run(
        transport: SPDMSocketTSMTransport(connection: connection), configuration: configuration,
        interface: tdi,
        policy: policy, entropy: SystemEntropy(), log: { emitLine($0) }, sessionSecrets: { secrets = $0 },
        failure: {
          failedStep = $0
          passedSteps = $1
        })
    } catch {
      var socket = connection.lastError.map { " (socket: \($0))" } ?? ""
      if let hint = SPDMSocketTSMFlow.hint(for: error, at: failedStep, configuration: configuration) {
        socket += "\ncove tsm: \(hint)"
      }
      FileHandle.standardError.write(
        Data(
          """
          cove tsm: FAILED at \(failedStep): \(error)\(socket)
          cove tsm: passed before it: \(passedSteps.isEmpty ? "nothing" : passedSteps.joined(separator: "; "))

          """.utf8))
      // A refusal leaves the socket healthy: end it as a success would, so the responder is not
      // left with a dropped connection; after a socket error there is nothing to say.
      let ended =
        connection.lastError == nil && (try? connection.end(self.continue ? .continue : .shutdown)) != nil
      if !ended { connection.close() }
      throw ExitCode(1)
    }
    do { try connection.end(self.continue ? .continue : .shutdown) } catch {
      FileHandle.standardError.write(Data("cove tsm: ending the connection: \(error)\n".utf8))
      throw ExitCode(1)
    }
    emitLine("cove tsm: the responder passed every check")
  }
}

/// Certificates and keys from files, PEM or DER, with a usage error (exit 2) naming the file.
enum CredentialFiles {
  static func read(_ path: String, option: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ValidationError("\(option): cannot read \(path)")
    }
    return [UInt8](data)
  }

  /// Every certificate in the file: PEM blocks, or one or more DER certificates back to back (DMTF
  /// spdm-emu's `bundle_*.certchain.der`).
  static func certificates(_ path: String, option: String) throws -> [X509Certificate] {
    let bytes = try read(path, option: option)
    do {
      if let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN") {
        let certificates = try X509Certificate.certificates(fromPEM: text)
        guard !certificates.isEmpty else { throw ValidationError("\(option): no certificate in \(path)") }
        return certificates
      }
      var certificates: [X509Certificate] = []
      var rest = bytes[...]
      while !rest.isEmpty {
        guard let length = derElementLength(rest) else {
          throw ValidationError("\(option): \(path) is neither PEM nor DER certificates")
        }
        certificates.append(try X509Certificate(der: Array(rest.prefix(length))))
        rest = rest.dropFirst(length)
      }
      guard !certificates.isEmpty else { throw ValidationError("\(option): \(path) is empty") }
      return certificates
    } catch let error as ValidationError {
      throw error
    } catch {
      throw ValidationError("\(option): \(path): \(error)")
    }
  }

  /// The whole length of the DER SEQUENCE at the start of `bytes`, if it is one and fits.
  static func derElementLength(_ bytes: ArraySlice<UInt8>) -> Int? {
    let start = bytes.startIndex
    guard bytes.count >= 2, bytes[start] == 0x30 else { return nil }
    let first = Int(bytes[start + 1])
    var length = first
    var header = 2
    if first & 0x80 != 0 {
      let count = first & 0x7F
      guard (1...4).contains(count), bytes.count >= 2 + count else { return nil }
      length = 0
      for index in 0..<count { length = length << 8 | Int(bytes[start + 2 + index]) }
      header += count
    }
    guard header + length <= bytes.count else { return nil }
    return header + length
  }

  /// A P-256/P-384 private key: PEM, or DER (PKCS#8 or SEC1) wrapped as PEM for the parser.
  static func privateKey(_ path: String) throws -> ECPrivateKey {
    let bytes = try read(path, option: "--key")
    if let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN") {
      do { return try ECPrivateKey(pem: text) } catch { throw ValidationError("--key: \(path): \(error)") }
    }
    let base64 = Data(bytes).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
    for label in ["PRIVATE KEY", "EC PRIVATE KEY"] {
      if let key = try? ECPrivateKey(pem: "-----BEGIN \(label)-----\n\(base64)\n-----END \(label)-----\n") {
        return key
      }
    }
    throw ValidationError("--key: \(path) is not a P-256 or P-384 private key (PEM, PKCS#8 or SEC1 DER)")
  }
}

/// One line on standard output, written at once (unbuffered): the responder's live output must show
/// up while it runs, also through a pipe.
func emitLine(_ line: String) {
  FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
