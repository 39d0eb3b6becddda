import CoveGuestDrivers
public import GuestABI
import GuestKernel
import HostPlatform
import IDEKM
import IOMMU
import PCIe
public import SPDM
import TDISP

/// The outcome of a run: every record, every step's result, and the exit status it calls for.
public struct RunResult: Sendable {
  public var image: GuestImage
  public var seed: UInt64
  public var records: [TraceRecord]
  public var steps: [StepResult]
  /// Every SPDM session the TSMs established, with what decrypts a capture of it (`--keys`).
  public var sessions: [SPDMSessionSecrets]
  /// 0: every expectation held; 1: one did not.
  public var exitStatus: Int32 { steps.allSatisfy(\.passed) ? 0 : 1 }
}

/// Runs a guest image: builds its platform, takes each step, checks the step's expectations and
/// records everything that happened as typed records (issue 7). Deterministic: with the same seed two
/// runs produce the same records — in one process or with the host in another (issue 8), where the
/// guest half runs here and the host half answers over a socket.
public final class ScenarioRunner {
  /// The host half, when it runs in this process.
  public let platform: ScenarioPlatform?
  /// The guest half: kernel, drivers, policy.
  public let guest: ScenarioGuest
  /// The host steps and observations: `platform` itself, or the connection to the host.
  public let host: any ScenarioHostControl
  public let recorder: TraceRecorder
  private var kernelEventsSeen = 0
  private var tdiStates: [RequesterID: TDIState] = [:]
  private var pendingNotes: [TraceRecord] = []

  /// Host and guest in this process.
  public init(image: GuestImage, seed: UInt64? = nil, recorder: TraceRecorder = TraceRecorder())
    throws(RunError)
  {
    let platform = try ScenarioPlatform(image: image, seed: seed ?? image.seed)
    platform.onRecord = { [recorder] in recorder.add($0) }
    try platform.connectAtBoot()
    self.platform = platform
    self.recorder = recorder
    self.host = platform
    guest = try ScenarioGuest(image: image, seed: platform.seed, host: platform.port)
    observeGuest()
  }

  /// The guest here, the host elsewhere: `interface` carries the guest's hypercalls and `control` the
  /// host steps; the host's records reach `recorder` through whoever delivers them (CoveTransport's
  /// guest link adds them as they arrive, before the answer to the call that caused them).
  public init(
    image: GuestImage, seed: UInt64, interface: any GuestHostInterface, control: any ScenarioHostControl,
    recorder: TraceRecorder
  ) throws(RunError) {
    platform = nil
    self.recorder = recorder
    host = control
    guest = try ScenarioGuest(image: image, seed: seed, host: interface)
    observeGuest()
  }

  private func observeGuest() {
    guest.kernel.dmaTrace = { [recorder] event in
      recorder.add(
        TraceRecord(
          component: .guest, kind: .dmaAPI, device: "\(event.device)", summary: event.description,
          from: .guest, to: .iommu))
    }
  }

  /// Boots the guest's drivers and runs every step.
  public func run() -> RunResult {
    let image = guest.image
    recorder.add(
      TraceRecord(
        component: .runner, kind: .event,
        summary:
          "\(image.name): seed \(guest.seed), \(image.guest.memory >> 20) MiB guest, \(image.guest.viommu == .off ? (image.guest.boundary == .max ? "all private" : "boundary X = 0x\(String(image.guest.boundary, radix: 16))") : "vIOMMU \(image.guest.viommu.rawValue)")"
      ))
    collect()
    do { try guest.registerDrivers() } catch {
      recorder.add(
        TraceRecord(component: .guest, kind: .driver, summary: "driver registration failed: \(error)"))
    }
    guest.kernel.handleHostEvents()
    collect()
    var results: [StepResult] = []
    for (index, step) in image.steps.enumerated() {
      // A host that went away answers nothing more: the run ends here (the caller reports why).
      if host.unreachable != nil { break }
      recorder.currentStep = index
      let first = recorder.records.count
      let described = Self.describe(step.action)
      recorder.add(TraceRecord(component: .runner, kind: .step, summary: described))
      let faultsBefore = (try? host.faultCount()) ?? 0
      let outcome = perform(step.action)
      // Interrupts and forced changes arrive after each step, as they would asynchronously.
      guest.kernel.handleHostEvents()
      collect()
      for note in pendingNotes { recorder.add(note) }
      pendingNotes.removeAll()
      let faulted = ((try? host.faultCount()) ?? 0) > faultsBefore
      let failures = check(step, outcome: outcome, faulted: faulted)
      let result: StepResult.Outcome =
        failures.isEmpty
        ? .passed
        : .failed(
          expected: failures.map(\.expected).joined(separator: "; "),
          actual: failures.map(\.actual).joined(separator: "; "))
      for failure in failures {
        recorder.add(
          TraceRecord(
            component: .runner, kind: .expectation, summary: "expectation failed: \(failure.what)",
            before: failure.expected, after: failure.actual))
      }
      recorder.add(
        TraceRecord(
          component: .runner, kind: .step, summary: described,
          after: failures.isEmpty ? "ok" : "FAILED: " + failures.map(\.what).joined(separator: ", ")))
      results.append(
        StepResult(
          index: index, description: described, outcome: result, firstRecord: first,
          endRecord: recorder.records.count))
    }
    recorder.currentStep = nil
    return RunResult(
      image: image, seed: guest.seed, records: recorder.records, steps: results,
      sessions: (try? host.sessions()) ?? [])
  }

  // MARK: Steps

  /// What a step did: the error it raised (if any) and, for DMA, the bytes and whether they bounced.
  struct Outcome {
    var error: (errno: Errno, message: String, check: String?)?
    var bytes: Int?
    var bounced: Bool?
    var device: RequesterID?
  }

  private func perform(_ action: GuestImage.Action) -> Outcome {
    let kernel = guest.kernel
    func pci(_ function: RequesterID) throws(KernelError) -> PCIDevice {
      guard let device = kernel.device(function) else {
        throw KernelError(.ENODEV, "\(function) is not in the guest")
      }
      return device
    }
    func guarded(_ device: RequesterID?, _ body: () throws(KernelError) -> Void) -> Outcome {
      do throws(KernelError) {
        try body()
        return Outcome(device: device)
      } catch {
        return Outcome(
          error: (error.errno, error.message, error.evidence.map { Self.checkName($0.check) }), device: device
        )
      }
    }
    switch action {
    case .bind(let function, let driver):
      return guarded(function) { () throws(KernelError) in try kernel.bind(try pci(function), driver: driver)
      }
    case .unbind(let function):
      return guarded(function) { () throws(KernelError) in try kernel.unbind(try pci(function)) }
    case .lock(let function):
      return guarded(function) { () throws(KernelError) in try kernel.tsmLock(try pci(function)) }
    case .verify(let function):
      return guarded(function) { () throws(KernelError) in
        let verified = try kernel.tsmVerify(try pci(function), policy: guest.policy)
        note(
          function,
          "evidence verified: \(verified.measurements.count) measurements, report \(verified.report.mmioRanges.count) ranges"
        )
      }
    case .accept(let function):
      return guarded(function) { () throws(KernelError) in
        let verified = try kernel.tsmAccept(try pci(function), policy: guest.policy)
        note(function, "evidence verified and accepted: \(verified.measurements.count) measurements")
      }
    case .unlock(let function):
      return guarded(function) { () throws(KernelError) in try kernel.tsmUnlock(try pci(function)) }
    case .claim(let function, let cookie):
      return guarded(function) { () throws(KernelError) in
        try kernel.claimDMAOwner(try pci(function), cookie: OwnerCookie(rawValue: cookie))
      }
    case .release(let function):
      return guarded(function) { () throws(KernelError) in try kernel.releaseDMAOwner(try pci(function)) }
    case .dma(let dma):
      return performDMA(dma)
    case .configWrite(let function, let offset, let size, let value, let byHost):
      if byHost {
        return hostStep(.configWrite(function, offset: offset, size: size, value: value), function)
      }
      return guarded(function) { () throws(KernelError) in
        do throws(HypercallError) {
          try kernel.host.configWrite(function, offset: offset, size: size, value: value)
        } catch { throw KernelError(error.errno, error.message) }
      }
    case .flr(let function):
      // Device Control (PCIe capability at 0x40 + 8), Initiate Function Level Reset.
      return hostStep(.configWrite(function, offset: 0x48, size: 2, value: 0x8000), function)
    case .convert(let gpa, let pages, let toShared):
      return guarded(nil) { () throws(KernelError) in
        do throws(HypercallError) {
          try kernel.host.convert(gpa: gpa, pages: pages, toShared: toShared)
        } catch { throw KernelError(error.errno, error.message) }
      }
    case .connect: return hostStep(.connect, nil)
    case .disconnect: return hostStep(.disconnect, nil)
    case .hostStop(let function): return hostStep(.stop(function), function)
    case .inject(let rule):
      var outcome = hostStep(.inject(rule), nil)
      outcome.device = nil
      return outcome
    case .wait:
      return Outcome()
    case .tamperEvidence(let function, let mode): return hostStep(.tamper(mode), function)
    case .sva(let function, let size, let lazy):
      return performSVA(function, size: size, lazy: lazy)
    case .escape(let function, let target, let address):
      return hostStep(.escape(function, target: target, address: address), function)
    }
  }

  /// A step the host takes (``HostStep``), its refusal the step's error.
  private func hostStep(_ step: HostStep, _ device: RequesterID?) -> Outcome {
    do throws(HypercallError) {
      try host.perform(step)
      return Outcome(device: device)
    } catch {
      return Outcome(error: (error.errno, error.message, nil), device: device)
    }
  }

  private func performSVA(_ function: RequesterID, size: Int, lazy: Bool) -> Outcome {
    let kernel = guest.kernel
    var outcome = Outcome(device: function)
    do throws(KernelError) {
      guard let device = kernel.device(function), let driver = device.driver as? PASIDCopyDriver else {
        throw KernelError(.ENODEV, "\(function) has no cove-dma-pasid driver bound")
      }
      let process = kernel.createProcess()
      defer { process.exit() }
      let pages = (size + 4095) / 4096
      let shared = !device.isAccepted
      let source = try process.mmap(pages: pages, populate: !lazy, shared: shared)
      let destination = try process.mmap(pages: pages, populate: !lazy, shared: shared)
      let pattern = (0..<size).map {
        UInt8(truncatingIfNeeded: $0 &* 29 &+ Int(truncatingIfNeeded: guest.seed))
      }
      try process.write(source, bytes: pattern)
      let pasid = try driver.attachProcess(process, device: device, kernel: kernel)
      defer { driver.detachProcess(device, kernel: kernel) }
      let populatedBefore = process.populatedPages
      let moved = try driver.copy(
        inProcessOf: device, kernel: kernel, from: source, to: destination, length: size)
      outcome.bytes = moved
      guard try process.read(destination, count: size) == pattern else {
        throw KernelError(.EIO, "the destination does not hold the source's bytes")
      }
      recorder.add(
        TraceRecord(
          component: .guest, kind: .dmaAPI, device: "\(function)",
          summary:
            "SVA copy of \(moved) bytes by virtual address (PASID \(pasid.rawValue)); \(process.populatedPages - populatedBefore) page(s) faulted in by the device",
          after: "data verified"))
    } catch {
      outcome.error = (error.errno, error.message, nil)
    }
    return outcome
  }

  private func performDMA(_ dma: GuestImage.DMAStep) -> Outcome {
    let kernel = guest.kernel
    var outcome = Outcome(device: dma.device)
    do throws(KernelError) {
      guard let device = kernel.device(dma.device) else {
        throw KernelError(.ENODEV, "\(dma.device) is not in the guest")
      }
      let pages = (dma.size + 4095) / 4096
      // Shared pages are made private again on the way out; any lost to a failed conversion stay lost.
      let source = try kernel.memory.allocatePages(pages)
      defer { kernel.memory.releasePages(source, count: pages) }
      let destination = try kernel.memory.allocatePages(pages)
      defer { kernel.memory.releasePages(destination, count: pages) }
      if dma.shared {
        try kernel.memory.setMemoryDecrypted(source, pages: pages)
        try kernel.memory.setMemoryDecrypted(destination, pages: pages)
      }
      // A pattern from the seed: the bytes are checked at the destination afterwards.
      var state = guest.seed &+ UInt64(recorder.records.count)
      let pattern = (0..<dma.size).map { _ -> UInt8 in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 56)
      }
      try kernel.memory.write(source, bytes: pattern)
      let bouncesBefore = kernel.swiotlb?.statistics.allocations ?? 0
      let moved: Int
      guard let driver = device.driver as? any CopyingDriver else {
        throw KernelError(.ENODEV, "\(device) has no DMA driver bound")
      }
      // `pasid: true` asks for PASID-tagged requests: only a driver that tags them will do.
      if dma.pasid && !(driver is PASIDCopyDriver) {
        throw KernelError(.ENODEV, "\(device): \(driver.name) does not tag its requests with a PASID")
      }
      moved = try driver.copy(device, kernel: kernel, from: source, to: destination, length: dma.size)
      outcome.bytes = moved
      outcome.bounced = (kernel.swiotlb?.statistics.allocations ?? 0) > bouncesBefore
      let arrived = try kernel.memory.read(destination, count: dma.size)
      guard arrived == pattern else {
        throw KernelError(.EIO, "the destination does not hold the source's bytes")
      }
      recorder.add(
        TraceRecord(
          component: .guest, kind: .dmaAPI, device: "\(dma.device)",
          summary:
            "copied \(moved) bytes \(outcome.bounced == true ? "through bounce buffers (T=0, shared)" : device.isAccepted ? "directly (T=1, private)" : "directly")",
          after: "data verified"))
    } catch {
      outcome.error = (error.errno, error.message, nil)
    }
    return outcome
  }

  /// A guest-side result, recorded after the messages the step exchanged (collected at its end).
  private func note(_ function: RequesterID, _ text: String) {
    pendingNotes.append(TraceRecord(component: .guest, kind: .event, device: "\(function)", summary: text))
  }

  // MARK: Expectations

  struct Failure {
    var what: String
    var expected: String
    var actual: String
  }

  private func check(_ step: GuestImage.Step, outcome: Outcome, faulted: Bool) -> [Failure] {
    var failures: [Failure] = []
    let expect = step.expect
    let actualError = outcome.error.map { "\($0.errno)" } ?? "none"
    let expectedError = expect.error.map { "\($0)" } ?? "none"
    if actualError != expectedError {
      failures.append(
        Failure(
          what: "error", expected: expectedError,
          actual: outcome.error.map { "\($0.errno) (\($0.message))" } ?? "none"))
    }
    if let check = expect.check, outcome.error?.check != check {
      failures.append(Failure(what: "check", expected: check, actual: outcome.error?.check ?? "none"))
    }
    let function = Self.function(of: step.action) ?? outcome.device
    if let state = expect.tdi {
      let states = (try? host.tdiStates()) ?? []
      let actual = function.flatMap { f in states.first { $0.function == f }?.state }
      if actual != state {
        failures.append(
          Failure(what: "tdi", expected: "\(state)", actual: actual.map { "\($0)" } ?? "no TDI"))
      }
    }
    if let trust = expect.trust {
      let actual =
        function.flatMap { guest.kernel.device($0) }.map { Self.trustName($0.trust) } ?? "no device"
      if actual != trust { failures.append(Failure(what: "trust", expected: trust, actual: actual)) }
    }
    if let driver = expect.driver {
      let actual =
        function.flatMap { guest.kernel.device($0) }.map { $0.driver?.name ?? "none" } ?? "no device"
      if actual != driver { failures.append(Failure(what: "driver", expected: driver, actual: actual)) }
    }
    if let bytes = expect.bytes, outcome.bytes != bytes {
      failures.append(
        Failure(what: "bytes", expected: "\(bytes)", actual: outcome.bytes.map { "\($0)" } ?? "none"))
    }
    if let bounced = expect.bounced, outcome.bounced != bounced {
      failures.append(
        Failure(what: "bounced", expected: "\(bounced)", actual: outcome.bounced.map { "\($0)" } ?? "no DMA"))
    }
    if let fault = expect.fault, fault != faulted {
      failures.append(Failure(what: "fault", expected: "\(fault)", actual: "\(faulted)"))
    }
    return failures
  }

  // MARK: Records from the platform and the kernel

  /// Turns whatever the platform, the TSMs and the kernel logged since the last call into records,
  /// then one `.state` record per TDI whose state changed.
  private func collect() {
    for record in (try? host.collect()) ?? [] { recorder.add(record) }
    let kernelEvents = guest.kernel.events
    for event in kernelEvents.dropFirst(kernelEventsSeen) { recorder.add(Self.record(event)) }
    kernelEventsSeen = kernelEvents.count
    for entry in (try? host.tdiStates()) ?? [] {
      guard let state = entry.state else { continue }
      let before = tdiStates[entry.function] ?? .configUnlocked
      if state != before {
        recorder.add(
          TraceRecord(
            component: .tdi, kind: .state, device: "\(entry.function)", summary: "TDI \(before) → \(state)",
            before: "\(before)", after: "\(state)"))
      }
      tdiStates[entry.function] = state
    }
  }

  static func record(_ event: PlatformEvent) -> TraceRecord {
    switch event {
    case .dmaBlocked(let fault):
      return TraceRecord(
        component: .iommu, kind: .fault, device: "\(fault.tlp.requesterID)",
        summary: "DMA blocked: \(fault.reason)",
        before: "\(fault.tlp)", after: "refused", from: .tdi("\(fault.tlp.requesterID)"), to: .iommu)
    case .interrupt(let function, _, let vector):
      return TraceRecord(
        component: .device, kind: .interrupt, device: "\(function)", summary: "MSI-X vector \(vector)",
        from: .tdi("\(function)"), to: .guest)
    case .deviceAssigned(let function, _, _):
      return TraceRecord(component: .vmm, kind: .event, device: "\(function)", summary: event.description)
    case .pagesConverted, .conversionRefused:
      return TraceRecord(component: .vmm, kind: .memory, summary: event.description)
    case .guestCreated, .guestDestroyed:
      return TraceRecord(component: .vmm, kind: .event, summary: event.description)
    }
  }

  static func record(_ event: KernelEvent) -> TraceRecord {
    switch event {
    case .driverBound(let function, _), .driverUnbound(let function, _, _), .probeFailed(let function, _, _),
      .probeDeferred(let function, _):
      return TraceRecord(component: .guest, kind: .driver, device: "\(function)", summary: event.description)
    case .trustChanged(let function, let from, let to):
      return TraceRecord(
        component: .guest, kind: .trust, device: "\(function)", summary: event.description,
        before: trustName(from),
        after: trustName(to))
    case .trustRevoked(let function, _, _):
      return TraceRecord(
        component: .guest, kind: .trust, device: "\(function)", summary: event.description, from: .host,
        to: .guest)
    case .interrupt(let function, _):
      return TraceRecord(
        component: .guest, kind: .interrupt, device: "\(function)", summary: event.description)
    case .dmaDebug(let report):
      return TraceRecord(
        component: .guest, kind: .fault, device: "\(report.device)", summary: event.description)
    case .memoryLeaked, .functionAbsent:
      return TraceRecord(component: .guest, kind: .memory, summary: event.description)
    }
  }

  /// A TSM exchange as two records: the request from the TSM and the response back.
  static func records(_ message: TSMMessageRecord, dsm: RequesterID) -> [TraceRecord] {
    let isTDISP = message.protocolID == .tdisp
    let kind: TraceRecord.Kind = isTDISP ? .tdisp : .idekm
    let peer: TraceRecord.Lane = .dsm
    func name(_ bytes: [UInt8], request: Bool) -> String {
      if isTDISP {
        guard bytes.count > 1 else { return "TDISP (truncated)" }
        return request
          ? "\(TDISPRequestCode(rawValue: bytes[1]))" : "\(TDISPResponseCode(rawValue: bytes[1]))"
      }
      guard let first = bytes.first else { return "IDE_KM (truncated)" }
      return "IDE_KM \(IDEKMObjectID(rawValue: first))"
    }
    return [
      TraceRecord(
        component: .tsm, kind: kind, device: "\(dsm)", summary: name(message.request, request: true),
        bytes: message.request, from: .tsm, to: peer, isRequest: true),
      TraceRecord(
        component: .dsm, kind: kind, device: "\(dsm)", summary: name(message.response, request: false),
        bytes: message.response, from: peer, to: .tsm, isRequest: false),
    ]
  }

  // MARK: Names

  static func describe(_ action: GuestImage.Action) -> String {
    switch action {
    case .bind(let function, let driver): "bind \(driver) to \(function)"
    case .unbind(let function): "unbind \(function)"
    case .lock(let function): "lock \(function)"
    case .verify(let function): "verify evidence of \(function)"
    case .accept(let function): "accept \(function)"
    case .unlock(let function): "unlock \(function)"
    case .dma(let dma):
      "DMA \(dma.size) bytes with \(dma.device)\(dma.shared ? " (shared buffers)" : "")\(dma.pasid ? " (PASID)" : "")"
    case .configWrite(let function, let offset, let size, let value, let byHost):
      "\(byHost ? "host" : "guest") config write \(function)+0x\(String(offset, radix: 16)) = 0x\(String(value, radix: 16)) (\(size) B)"
    case .flr(let function): "FLR \(function) (host)"
    case .convert(let gpa, let pages, let toShared):
      "convert \(pages) page(s) at GPA 0x\(String(gpa, radix: 16)) to \(toShared ? "shared" : "private")"
    case .connect: "TSM connect"
    case .disconnect: "TSM disconnect"
    case .hostStop(let function): "host TSM STOP \(function)"
    case .inject(let rule):
      "inject: \(rule.action) the \(rule.occurrence)th \(rule.match ?? "any") \(rule.direction)"
    case .wait: "wait for host events"
    case .escape(let function, let target, let address):
      "\(function) tries to write the neighbour's memory (\(target.rawValue) 0x\(String(address, radix: 16)))"
    case .tamperEvidence(let function, let mode):
      "host tampers with the next evidence of \(function) (\(mode))"
    case .sva(let function, let size, let lazy):
      "SVA: a process shares its address space with \(function), \(size) bytes\(lazy ? ", populated by IO page faults" : "")"
    case .claim(let function, let cookie): "user claims \(function) (cookie \(cookie))"
    case .release(let function): "user releases \(function)"
    }
  }

  static func function(of action: GuestImage.Action) -> RequesterID? {
    switch action {
    case .bind(let f, _), .unbind(let f), .lock(let f), .verify(let f), .accept(let f), .unlock(let f),
      .flr(let f),
      .hostStop(let f), .claim(let f, _), .release(let f), .configWrite(let f, _, _, _, _):
      f
    case .dma(let dma): dma.device
    case .tamperEvidence(let f, _), .sva(let f, _, _), .escape(let f, _, _): f
    case .convert, .connect, .disconnect, .inject, .wait: nil
    }
  }

  static func trustName(_ trust: DeviceTrust) -> String {
    switch trust {
    case .untrusted: "untrusted"
    case .locked: "locked"
    case .accepted: "accepted"
    case .revoked: "revoked"
    }
  }

  static func checkName(_ check: EvidenceFailure.Check) -> String {
    switch check {
    case .certificateChain: "certificateChain"
    case .measurementsSignature: "measurementsSignature"
    case .nonce: "nonce"
    case .measurementsFormat: "measurementsFormat"
    case .missingMeasurement: "missingMeasurement"
    case .measurementMismatch: "measurementMismatch"
    case .reportDigest: "reportDigest"
    case .interfaceReport: "interfaceReport"
    case .tdiState: "tdiState"
    }
  }

  static func faultRule(_ rule: GuestImage.InjectionRule) -> DOEFaultRule {
    let action: DOEFaultRule.Action =
      switch rule.action {
      case "drop": .drop
      case "corrupt": .corrupt(offset: 12, mask: 0xFF)
      case "truncate": .truncate(bytes: 8)
      case "duplicate": .duplicate
      case "replay": .replay(back: 1)
      default: .delay(microseconds: 2_000_000)
      }
    let match: DOEFaultRule.Match =
      switch rule.match {
      case "discovery": .discovery
      case "spdm": .anySPDM
      case "secured": .secured
      default: .any
      }
    return DOEFaultRule(
      action, rule.direction == "request" ? .request : .response, match, occurrence: .nth(rule.occurrence))
  }
}
