/// Linux errno values, so every failure of the IOMMU core can be compared 1:1 with what the Linux
/// IOMMU core returns for the same call (SEMANTICS.md: "typed errors that map 1:1 onto them").
/// A struct with static members (STYLE.md rule 3): values outside the list survive.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: Int32
  public init(rawValue: Int32) { self.rawValue = rawValue }

  public static let EPERM = Errno(rawValue: 1)
  public static let ENOENT = Errno(rawValue: 2)
  public static let EIO = Errno(rawValue: 5)
  public static let EACCES = Errno(rawValue: 13)
  public static let ENOMEM = Errno(rawValue: 12)
  public static let EFAULT = Errno(rawValue: 14)
  public static let EBUSY = Errno(rawValue: 16)
  public static let EEXIST = Errno(rawValue: 17)
  public static let ENODEV = Errno(rawValue: 19)
  public static let EINVAL = Errno(rawValue: 22)
  public static let ENOSPC = Errno(rawValue: 28)
  public static let ERANGE = Errno(rawValue: 34)
  public static let EOVERFLOW = Errno(rawValue: 75)
  public static let EOPNOTSUPP = Errno(rawValue: 95)
  public static let EISCONN = Errno(rawValue: 106)
  public static let ENOTCONN = Errno(rawValue: 107)
  public static let ETIMEDOUT = Errno(rawValue: 110)
  /// The kernel-internal "try the probe again later" (include/linux/errno.h), never seen by userspace.
  public static let EPROBE_DEFER = Errno(rawValue: 517)

  public var name: String {
    switch self {
    case .EPERM: "EPERM"
    case .ENOENT: "ENOENT"
    case .EIO: "EIO"
    case .EACCES: "EACCES"
    case .ENOMEM: "ENOMEM"
    case .EFAULT: "EFAULT"
    case .EBUSY: "EBUSY"
    case .EEXIST: "EEXIST"
    case .ENODEV: "ENODEV"
    case .EINVAL: "EINVAL"
    case .ENOSPC: "ENOSPC"
    case .ERANGE: "ERANGE"
    case .EOVERFLOW: "EOVERFLOW"
    case .EOPNOTSUPP: "EOPNOTSUPP"
    case .EISCONN: "EISCONN"
    case .ENOTCONN: "ENOTCONN"
    case .ETIMEDOUT: "ETIMEDOUT"
    case .EPROBE_DEFER: "EPROBE_DEFER"
    default: "errno \(rawValue)"
    }
  }

  /// Looks a name up ("EBUSY"), for spec tables.
  public init?(name: String) {
    let all: [Errno] = [
      .EPERM, .ENOENT, .EIO, .EACCES, .ENOMEM, .EFAULT, .EBUSY, .EEXIST, .ENODEV, .EINVAL, .ENOSPC,
      .ERANGE, .EOVERFLOW, .EOPNOTSUPP, .EISCONN, .ENOTCONN, .ETIMEDOUT, .EPROBE_DEFER,
    ]
    guard let match = all.first(where: { $0.name == name }) else { return nil }
    self = match
  }

  public var description: String { name }
}

/// A refused IOMMU operation: its errno, and why in words.
public struct IOMMUError: Error, Hashable, Sendable, CustomStringConvertible {
  public var errno: Errno
  public var reason: String

  public init(_ errno: Errno, _ reason: String) {
    self.errno = errno
    self.reason = reason
  }

  public var description: String { "\(errno.name): \(reason)" }
}
