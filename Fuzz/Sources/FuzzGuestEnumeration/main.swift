// libFuzzer entry point for the guest kernel's PCI enumeration (GuestKernel `enumerate`): a guest boots
// over a fake host whose one assigned function has a configuration space, BARs and MMIO registers
// taken from the input — what a hostile device (or host) controls. The kernel walks the capability
// list (MSI-X) and the extended capability list (ACS, PASID) from it, with or without a vIOMMU.
//
// Boot must never crash and never hang: it throws a KernelError, or yields the function with what
// the host and the config space say — its BARs as the host gave them, its IDs from offset 0, MSI-X
// only with a capability list, a table of 1…2048 entries and a PBA to match, PASIDs a power of two —
// after a bounded number of config reads. Then the kernel's accessors run over what it found: enable
// (a config write of the command register), readl/writel of every BAR at input offsets (the host
// must only ever see addresses inside the BAR), and the host-event entry.
//
// Input: flags (u8, see `Flags`), the function (u16), the BARs (count u8 at most 7; each index u8,
// base u64, length u64), eight MMIO values (u32 each), four MMIO offsets (u32 each), then the
// configuration space: the rest of the input as its bytes (zero-filled to 4 KiB), or with `template`
// patches (offset u16, chunk u8) over a well-formed function with MSI-X, ACS and PASID.
import CoveCrypto
import FuzzSupport
import GuestABI
import GuestKernel
import IOMMU
import PCIe
import TDISP

runLibFuzzer(fuzzInput)

struct Flags: OptionSet {
  var rawValue: UInt8
  /// The platform has a vIOMMU (the guest IOMMU driver probes the function too).
  static let viommu = Flags(rawValue: 1 << 0)
  /// The config space is a well-formed template patched by the input, not the input itself.
  static let template = Flags(rawValue: 1 << 1)
  /// Config reads outside the 4 KiB, or not naturally aligned, fail with EIO (else they read as
  /// all ones past the end, as a master abort does).
  static let strictConfig = Flags(rawValue: 1 << 2)
  /// The host refuses to say where the BARs are.
  static let barsFail = Flags(rawValue: 1 << 3)
}

/// Memory is private by default; the page-state hypercall always succeeds; the vIOMMU accepts every
/// command; guest requests to the TSM fail.
final class HostileHost: GuestHostInterface {
  static let configSize = 4096
  static let memoryBytes: UInt64 = 1 << 20

  let platform: GuestPlatformInfo
  let flags: Flags
  var config: [UInt8]
  let barRanges: [Int: Range<UInt64>]
  let mmioValues: [UInt32]
  /// Guest memory, by 4 KiB page, allocated as written.
  var pages: [UInt64: [UInt8]] = [:]
  var configReads = 0
  var configWrites: [(offset: Int, size: Int, value: UInt32)] = []
  var mmioAccesses: [UInt64] = []
  var viommuCommands = 0

  init(function: RequesterID, flags: Flags, config: [UInt8], bars: [Int: Range<UInt64>], mmio: [UInt32]) {
    platform = GuestPlatformInfo(
      memoryBytes: Self.memoryBytes, boundary: .max, viommu: flags.contains(.viommu), functions: [function])
    self.flags = flags
    self.config = config
    barRanges = bars
    mmioValues = mmio
  }

  func read(gpa: UInt64, count: Int) throws(HypercallError) -> [UInt8] {
    try checkMemory(gpa, count)
    return (0..<count).map { index in
      let address = gpa + UInt64(index)
      return pages[address >> 12]?[Int(address & 0xFFF)] ?? 0
    }
  }

  func write(gpa: UInt64, bytes: [UInt8]) throws(HypercallError) {
    try checkMemory(gpa, bytes.count)
    for (index, byte) in bytes.enumerated() {
      let address = gpa + UInt64(index)
      pages[address >> 12, default: [UInt8](repeating: 0, count: 4096)][Int(address & 0xFFF)] = byte
    }
  }

  private func checkMemory(_ gpa: UInt64, _ count: Int) throws(HypercallError) {
    guard count >= 0, gpa <= Self.memoryBytes, UInt64(count) <= Self.memoryBytes - gpa else {
      throw HypercallError(.EFAULT, "guest memory access outside memory")
    }
  }

  func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError) {}

  func configRead(_ function: RequesterID, offset: Int, size: Int) throws(HypercallError) -> UInt32 {
    precondition([1, 2, 4].contains(size), "a config read of \(size) bytes")
    configReads += 1
    precondition(configReads < 10_000, "the kernel keeps reading config space")
    guard function == platform.functions[0] else { throw HypercallError(.EPERM, "not assigned") }
    if flags.contains(.strictConfig),
      offset < 0 || offset % size != 0 || offset + size > Self.configSize
    {
      throw HypercallError(.EIO, "config read +0x\(String(offset, radix: 16)) of \(size) bytes")
    }
    var value: UInt32 = 0
    for byte in 0..<size {
      let at = offset + byte
      let part: UInt8 = at >= 0 && at < config.count ? config[at] : 0xFF
      value |= UInt32(part) << (8 * UInt32(byte))
    }
    return value
  }

  func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32) throws(HypercallError) {
    precondition([1, 2, 4].contains(size), "a config write of \(size) bytes")
    guard function == platform.functions[0] else { throw HypercallError(.EPERM, "not assigned") }
    configWrites.append((offset, size, value))
    for byte in 0..<size where offset + byte >= 0 && offset + byte < config.count {
      config[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte)))
    }
  }

  func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32 {
    mmioAccesses.append(address)
    return mmioValues[mmioAccesses.count % mmioValues.count] ^ UInt32(truncatingIfNeeded: address)
  }

  func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError) {
    mmioAccesses.append(address)
  }

  func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>] {
    if flags.contains(.barsFail) { throw HypercallError(.EIO, "no BARs today") }
    guard function == platform.functions[0] else { throw HypercallError(.EPERM, "not assigned") }
    return barRanges
  }

  func copy(from source: UInt64, to destination: UInt64, count: Int) throws(HypercallError) {
    try write(gpa: destination, bytes: try read(gpa: source, count: count))
  }

  /// A vIOMMU that accepts every command (STATUS reads 0: no error, no fault pending).
  func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64 {
    guard platform.viommu else { throw HypercallError(.ENODEV, "no vIOMMU") }
    return 0
  }

  func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError) {
    guard platform.viommu else { throw HypercallError(.ENODEV, "no vIOMMU") }
    if register == .commandQueueTail { viommuCommands += 1 }
  }

  func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    throw HypercallError(.EIO, "no TSM in this harness")
  }

  func drainNotifications() -> [HostNotification] { [] }
}

/// A well-formed endpoint: capability list (status bit 4) at 0x40 with MSI-X (32 entries, table at
/// BAR0+0xE000, PBA at BAR0+0xF000) then a PCI Express capability; extended capabilities ACS at 0x100
/// and PASID (20-bit) at 0x110.
enum Template {
  static let bytes: [UInt8] = {
    var space = [UInt8](repeating: 0, count: HostileHost.configSize)
    func put(_ offset: Int, _ value: UInt32, _ size: Int = 4) {
      for byte in 0..<size { space[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte))) }
    }
    put(0x00, 0x0010_1B36)  // vendor, device
    put(0x04, 0x0010_0000)  // command 0, status: capability list
    put(0x08, 0x0880_0001)  // class: system peripheral
    put(0x10, 0xFE00_000C)  // BAR0: 64-bit prefetchable memory
    put(0x34, 0x40, 1)
    put(0x40, 0x001F_5011)  // MSI-X, next 0x50, 32 entries
    put(0x44, 0x0000_E000)  // table: BAR0 + 0xE000
    put(0x48, 0x0000_F000)  // PBA: BAR0 + 0xF000
    put(0x50, 0x0002_0010)  // PCI Express, end of list
    put(0x100, 0x1101_000D)  // ACS v1, next 0x110
    put(0x110, 0x0001_001B)  // PASID v1, end of list
    put(0x114, 20 << 8)  // Max PASID Width 20
    return space
  }()
}

private func fuzzInput(_ input: [UInt8]) {
  var reader = FuzzReader(input)
  let flags = Flags(rawValue: reader.u8())
  let function = RequesterID(rawValue: reader.u16())
  var bars: [Int: Range<UInt64>] = [:]
  for _ in 0..<(reader.u8() % 8) {
    let index = Int(reader.u8() % 8)
    let base = reader.u64()
    let (end, overflow) = base.addingReportingOverflow(reader.u64())
    bars[index] = base..<(overflow ? UInt64.max : end)
  }
  let mmio = (0..<8).map { _ in reader.u32() }
  let offsets = (0..<4).map { _ in UInt64(reader.u32()) }
  var config: [UInt8]
  if flags.contains(.template) {
    config = Template.bytes
    while !reader.isAtEnd {
      let offset = Int(reader.u16() % UInt16(HostileHost.configSize))
      for (index, byte) in reader.chunk8().enumerated() where offset + index < config.count {
        config[offset + index] = byte
      }
    }
  } else {
    config = reader.bytes(HostileHost.configSize)
    config += [UInt8](repeating: 0, count: HostileHost.configSize - config.count)
  }

  let host = HostileHost(function: function, flags: flags, config: config, bars: bars, mmio: mmio)
  let kernel: GuestKernel
  do {
    kernel = try GuestKernel(
      host: host, options: KernelOptions(swiotlbBytes: 0), entropy: SeededEntropy(seed: 1))
  } catch {
    fuzzLog("boot failed: \(error)")
    return  // a typed KernelError: the only other outcome allowed
  }
  fuzzLog(
    "booted: \(kernel.devices.map { "\($0) bars \($0.bars) msix \(String(describing: $0.msix)) acs \($0.hasACS) pasid \($0.maxPASID)" })"
  )
  checkBoot(kernel, host: host, flags: flags, config: config)
  guard !kernel.devices.isEmpty else { return }
  exercise(kernel, host: host, offsets: offsets)
}

/// What the booted kernel must have found.
private func checkBoot(_ kernel: GuestKernel, host: HostileHost, flags: Flags, config: [UInt8]) {
  // Walks are bounded: IDs and command/status, the capability pointer, at most 48 legacy
  // capabilities (three reads each), at most 256 extended ones (two reads each).
  precondition(host.configReads <= 3 + 48 * 3 + 256 * 2, "boot read config space \(host.configReads) times")
  precondition(!flags.contains(.barsFail), "boot succeeded without the function's BARs")
  // A function whose vendor ID reads all ones is not there: skipped, not a failed boot.
  if config.count >= 2, config[0] == 0xFF, config[1] == 0xFF {
    precondition(kernel.devices.isEmpty, "an absent function was enumerated")
    return
  }
  precondition(kernel.devices.count == 1, "one function assigned, \(kernel.devices.count) devices found")
  precondition(
    (kernel.iommu != nil) == flags.contains(.viommu), "an IOMMU driver without a vIOMMU, or none with one")
  precondition(kernel.swiotlb == nil, "a swiotlb pool with swiotlb=0")
  let device = kernel.devices[0]
  func configWord(_ offset: Int) -> UInt16 { UInt16(config[offset]) | UInt16(config[offset + 1]) << 8 }
  precondition(device.function == host.platform.functions[0], "another function enumerated")
  precondition(device.vendorID == configWord(0) && device.deviceID == configWord(2), "IDs not from offset 0")
  precondition(device.vendorID != 0xFFFF, "a function that does not answer was enumerated")
  precondition(device.bars == host.barRanges, "BARs other than the host's")
  precondition(device.trust == .untrusted && device.driver == nil, "a fresh device that is trusted or bound")
  if let msix = device.msix {
    precondition(configWord(6) & 0x10 != 0, "MSI-X found without a capability list")
    let entries = msix.table.size / 16
    precondition(
      msix.table.size % 16 == 0 && (1...2048).contains(entries), "an MSI-X table of \(msix.table.size) bytes")
    precondition(msix.pba.size == (entries + 63) / 64 * 8, "a PBA that does not match the table")
    for region in [msix.table, msix.pba] {
      precondition((0..<8).contains(region.bar), "an MSI-X BIR of \(region.bar)")
      precondition(
        region.offset % 8 == 0 && region.offset <= UInt64(UInt32.max), "an MSI-X offset of \(region.offset)")
    }
  }
  precondition(
    device.maxPASID == 0 || device.maxPASID & (device.maxPASID - 1) == 0, "maxPASID \(device.maxPASID)")
  // Boot writes config space only to turn PASID on (PASID Control, 16 bits, value 1), and only when
  // there is an IOMMU to use it.
  for write in host.configWrites {
    precondition(
      host.platform.viommu && device.maxPASID > 0 && write.size == 2 && write.value == 1,
      "boot wrote config space: \(write)")
  }
}

/// The kernel's accessors over what enumeration found.
private func exercise(_ kernel: GuestKernel, host: HostileHost, offsets: [UInt64]) {
  let device = kernel.devices[0]
  let writesBefore = host.configWrites.count
  if (try? kernel.enableDevice(device)) != nil {
    for write in host.configWrites.dropFirst(writesBefore) {
      precondition(
        write.offset == 0x04 && write.size == 2 && write.value & 0x6 == 0x6, "enable wrote \(write)")
    }
  }
  for (bar, range) in device.bars.sorted(by: { $0.key < $1.key }) {
    for offset in [0] + offsets {
      let before = host.mmioAccesses.count
      let read = try? kernel.mmioRead(device, bar: bar, offset: offset)
      _ = try? kernel.mmioWrite(device, bar: bar, offset: offset, value: 0x5A5A_5A5A)
      precondition(
        host.mmioAccesses.count - before == (read == nil ? 0 : 2),
        "readl and writel disagree about BAR\(bar)+\(offset)")
      for address in host.mmioAccesses[before...] {
        precondition(
          address >= range.lowerBound && address <= range.upperBound && range.upperBound - address >= 4,
          "an MMIO access at 0x\(String(address, radix: 16)) outside BAR\(bar) \(range)")
      }
    }
  }
  kernel.handleHostEvents()
}
