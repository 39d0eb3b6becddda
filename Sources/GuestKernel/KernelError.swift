public import IOMMU

/// An error from the guest kernel's API, as an errno (the value a Linux call would return, so users
/// can compare, SEMANTICS.md) with what went wrong.
public struct KernelError: Error, Hashable, Sendable, CustomStringConvertible {
  public var errno: Errno
  public var message: String
  /// The check that failed, when evidence refused an accept.
  public var evidence: EvidenceFailure?

  public init(_ errno: Errno, _ message: String, evidence: EvidenceFailure? = nil) {
    self.errno = errno
    self.message = message
    self.evidence = evidence
  }

  public var description: String { "\(errno): \(message)" }
}
