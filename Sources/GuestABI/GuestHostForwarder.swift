public import PCIe

/// A host interface that passes every call to another: the base for a host that changes a few calls
/// and leaves the rest alone (a scenario's tampering host, a test's failing host, a tracing wrapper).
/// Subclasses override what they change.
open class GuestHostForwarder: GuestHostInterface {
  public let inner: any GuestHostInterface

  public init(_ inner: any GuestHostInterface) { self.inner = inner }

  open var platform: GuestPlatformInfo { inner.platform }
  open func read(gpa: UInt64, count: Int) throws(HypercallError) -> [UInt8] {
    try inner.read(gpa: gpa, count: count)
  }
  open func write(gpa: UInt64, bytes: [UInt8]) throws(HypercallError) {
    try inner.write(gpa: gpa, bytes: bytes)
  }
  open func copy(from source: UInt64, to destination: UInt64, count: Int) throws(HypercallError) {
    try inner.copy(from: source, to: destination, count: count)
  }
  open func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError) {
    try inner.convert(gpa: gpa, pages: pages, toShared: toShared)
  }
  open func configRead(_ function: RequesterID, offset: Int, size: Int) throws(HypercallError) -> UInt32 {
    try inner.configRead(function, offset: offset, size: size)
  }
  open func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32) throws(HypercallError)
  {
    try inner.configWrite(function, offset: offset, size: size, value: value)
  }
  open func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32 {
    try inner.mmioRead(function, address: address)
  }
  open func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError) {
    try inner.mmioWrite(function, address: address, value: value)
  }
  open func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>] {
    try inner.bars(of: function)
  }
  open func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64 {
    try inner.viommuRead(register)
  }
  open func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError) {
    try inner.viommuWrite(register, value)
  }
  open func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    try inner.tsm(request)
  }
  open func drainNotifications() -> [HostNotification] { inner.drainNotifications() }
}
