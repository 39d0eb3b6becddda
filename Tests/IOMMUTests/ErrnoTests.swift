import IOMMU
import Testing

@Suite struct ErrnoTests {
  /// The values are Linux's (include/uapi/asm-generic/errno-base.h and errno.h).
  @Test(arguments: [
    ("EPERM", 1), ("ENOENT", 2), ("ENOMEM", 12), ("EFAULT", 14), ("EBUSY", 16), ("EEXIST", 17),
    ("ENODEV", 19),
    ("EINVAL", 22), ("ENOSPC", 28), ("ERANGE", 34), ("EOVERFLOW", 75), ("EOPNOTSUPP", 95), ("EIO", 5),
    ("EISCONN", 106), ("ENOTCONN", 107), ("ETIMEDOUT", 110),
  ])
  func namesAndValuesAreLinuxs(_ name: String, _ value: Int32) {
    #expect(Errno(name: name)?.rawValue == value)
    #expect(Errno(rawValue: value).name == name)
  }

  @Test func unknownValuesSurvive() {
    #expect(Errno(rawValue: 200).name == "errno 200")
    #expect(Errno(name: "EWHATEVER") == nil)
  }
}
