import GuestABI
import IOMMU
import PCIe

/// A host that is the real VMM port except where a test makes it lie or fail: evidence rewritten in
/// transit, evidence replayed, conversions refused, BARs reported elsewhere, a vIOMMU command refused.
final class TamperingHost: GuestHostForwarder {
  /// Rewrites each evidence answer before the guest sees it.
  var tamperEvidence: ((inout DeviceEvidence) -> Void)?
  /// Answers every evidence request with the first evidence it ever fetched (a replay).
  var replayFirstEvidence = false
  private var firstEvidence: DeviceEvidence?
  /// Refuses conversions with this errno.
  var failConversions: Errno?
  /// Moves every BAR the guest enumerates by this much.
  var barShift: UInt64 = 0
  private(set) var conversions = 0
  /// Makes the vIOMMU refuse the next command with this errno (STATUS.CQE, "command refused").
  var refuseNextVIOMMUCommand: Errno?
  private var refusing: Errno?

  override func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError) {
    conversions += 1
    if let errno = failConversions { throw HypercallError(errno, "refused by the test") }
    try inner.convert(gpa: gpa, pages: pages, toShared: toShared)
  }

  override func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32 {
    try inner.mmioRead(function, address: address - barShift)
  }

  override func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError) {
    try inner.mmioWrite(function, address: address - barShift, value: value)
  }

  override func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>] {
    try inner.bars(of: function).mapValues { ($0.lowerBound + barShift)..<($0.upperBound + barShift) }
  }

  override func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64 {
    if let errno = refusing {
      if register == .status {
        return VIOMMUStatus.commandQueueError
          | UInt64(VIOMMUCommandQueueErrorCode.commandRefused.rawValue) << VIOMMUStatus.errorCodeShift
      }
      if register == .commandQueueErrorDetail { return UInt64(errno.rawValue) }
    }
    return try inner.viommuRead(register)
  }

  override func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError) {
    if register == .commandQueueTail, let errno = refuseNextVIOMMUCommand {
      // The command is not executed; the guest sees the queue stopped on it.
      refuseNextVIOMMUCommand = nil
      refusing = errno
      return
    }
    if register == .commandQueueBase { refusing = nil }
    try inner.viommuWrite(register, value)
  }

  override func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    var response = try inner.tsm(request)
    if case .evidence(var evidence) = response {
      if replayFirstEvidence {
        if let first = firstEvidence { evidence = first } else { firstEvidence = evidence }
      }
      tamperEvidence?(&evidence)
      response = .evidence(evidence)
    }
    return response
  }
}
