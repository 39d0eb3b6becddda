import CoveGuestDrivers
public import GuestKernel
import Synchronization

/// The guest drivers an image may name in `drivers:`: Cove's sample drivers, and any a user's package
/// registers before it runs an image (Examples/custom-driver shows how). Each run makes fresh driver
/// objects through the factories.
public enum DriverRegistry {
  public typealias Factory = @Sendable () -> any PCIDriver

  private static let factories = Mutex<[String: Factory]>([
    "cove-dma": { CoveDMADriver() },
    "cove-dma-pasid": { PASIDCopyDriver() },
  ])

  /// Registers a driver under `name` (replacing one of the same name). Register before decoding the
  /// image that names it.
  public static func register(_ name: String, factory: @escaping Factory) {
    factories.withLock { $0[name] = factory }
  }

  /// Every name an image may use, sorted.
  public static var names: [String] { factories.withLock { $0.keys.sorted() } }

  /// A new driver for `name`, or nil when nothing is registered under it.
  public static func make(_ name: String) -> (any PCIDriver)? { factories.withLock { $0[name] }?() }
}

/// A driver that can copy between two guest buffers with its device: what an image's `dma` step
/// drives. Cove's sample drivers conform; a custom driver conforms to be usable in `dma` steps.
public protocol CopyingDriver: PCIDriver {
  /// Copies `length` bytes from the buffer at guest-physical `source` to the one at `destination`
  /// with `device`, through the DMA API; returns the bytes the device moved.
  func copy(
    _ device: PCIDevice, kernel: GuestKernel, from source: UInt64, to destination: UInt64, length: Int
  )
    throws(KernelError) -> Int
}

extension CoveDMADriver: CopyingDriver {}
extension PASIDCopyDriver: CopyingDriver {}
