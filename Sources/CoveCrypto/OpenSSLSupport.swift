internal import COpenSSL
import Glibc

// Shared plumbing: ownership of OpenSSL objects, error-queue draining, OSSL_PARAM lists, BIOs.

/// Owns one OpenSSL object and frees it in `deinit`, so every allocation has exactly one owner and
/// no early return can leak it (the swift-crypto / swift-nio-ssl pattern).
///
/// Locals holding an owner stay alive to the end of their scope (Swift lexical lifetimes; calls into
/// C are deinit barriers), so `owner.pointer` may be passed to C calls freely within that scope.
final class OpenSSLObject {
  let pointer: OpaquePointer
  private let release: (OpaquePointer) -> Void

  /// Takes ownership of `pointer`; a NULL pointer (allocation failure) throws with the drained queue.
  init(
    _ pointer: OpaquePointer?, operation: String, code: CryptoError.Code = .internalFailure,
    free release: @escaping (OpaquePointer) -> Void
  ) throws(CryptoError) {
    guard let pointer else { throw CryptoError.openSSL(code, operation) }
    self.pointer = pointer
    self.release = release
  }

  /// Takes ownership of a pointer already known to be non-NULL.
  init(owning pointer: OpaquePointer, free release: @escaping (OpaquePointer) -> Void) {
    self.pointer = pointer
    self.release = release
  }

  deinit { release(pointer) }
}

/// Pops every pending error off this thread's OpenSSL error queue, oldest first.
func drainOpenSSLErrors() -> [String] {
  var messages: [String] = []
  while true {
    let error = ERR_get_error()
    if error == 0 { break }
    var buffer = [CChar](repeating: 0, count: 256)
    buffer.withUnsafeMutableBufferPointer { ERR_error_string_n(error, $0.baseAddress, $0.count) }
    messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
  }
  return messages
}

extension CryptoError {
  /// A failure reported by OpenSSL: the error queue is drained into the error.
  static func openSSL(_ code: Code, _ operation: String) -> CryptoError {
    CryptoError(code: code, operation: operation, openSSLErrors: drainOpenSSLErrors())
  }
}

/// Throws `code` (with the drained error queue) unless an OpenSSL call returned success (1 or > 0).
@inline(__always)
func check(_ result: Int32, _ operation: String, _ code: CryptoError.Code = .internalFailure)
  throws(CryptoError)
{
  if result <= 0 { throw CryptoError.openSSL(code, operation) }
}

/// For operations the public API declares infallible (hashing, HMAC with a valid digest): OpenSSL can
/// only fail there on allocation failure or a broken installation, which is not recoverable.
func fatalOpenSSL(_ operation: String) -> Never {
  fatalError("OpenSSL failed in \(operation): \(drainOpenSSLErrors().joined(separator: "; "))")
}

/// An `OSSL_PARAM` array whose keys and values live in memory this object owns, because
/// `OSSL_PARAM_construct_*` stores pointers rather than copying (OpenSSL 3 "OSSL_PARAM" manual).
final class ParameterList {
  private var allocations: [UnsafeMutableRawPointer] = []
  private var parameters: [OSSL_PARAM] = []

  deinit {
    for allocation in allocations { free(allocation) }
  }

  private func store(_ bytes: [UInt8]) -> UnsafeMutableRawPointer {
    guard let memory = malloc(max(bytes.count, 1)) else { fatalError("out of memory") }
    bytes.withUnsafeBytes { source in
      if let base = source.baseAddress { memory.copyMemory(from: base, byteCount: source.count) }
    }
    allocations.append(memory)
    return memory
  }

  private func cString(_ text: String) -> UnsafeMutablePointer<CChar> {
    store(Array(text.utf8) + [0]).assumingMemoryBound(to: CChar.self)
  }

  func add(_ key: String, utf8 value: String) {
    parameters.append(OSSL_PARAM_construct_utf8_string(cString(key), cString(value), 0))
  }

  func add(_ key: String, octets value: [UInt8]) {
    parameters.append(OSSL_PARAM_construct_octet_string(cString(key), store(value), value.count))
  }

  func add(_ key: String, int value: Int32) {
    let memory = store(withUnsafeBytes(of: value) { Array($0) })
    parameters.append(
      OSSL_PARAM_construct_int(cString(key), memory.assumingMemoryBound(to: Int32.self)))
  }

  /// An unsigned big-endian integer; `OSSL_PARAM` integers are in native byte order.
  func add(_ key: String, unsignedBigEndian value: [UInt8]) {
    #if _endian(little)
      let native = Array(value.reversed())
    #else
      let native = value
    #endif
    parameters.append(
      OSSL_PARAM_construct_BN(
        cString(key), store(native).assumingMemoryBound(to: UInt8.self), native.count))
  }

  /// Calls `body` with a pointer to the parameters followed by the terminating `OSSL_PARAM_END`.
  func withParameters<R>(_ body: (UnsafeMutablePointer<OSSL_PARAM>) -> R) -> R {
    var terminated = parameters
    terminated.append(OSSL_PARAM_construct_end())
    return terminated.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
  }
}

/// Runs `body` with a pointer that is never NULL, even for an empty array: OpenSSL treats a NULL
/// key or data pointer as "not supplied" rather than "empty" in several places.
func withNonNullBytes<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
  if bytes.isEmpty {
    var placeholder: UInt8 = 0
    return withUnsafePointer(to: &placeholder) { body($0, 0) }
  }
  return bytes.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
}

/// A memory BIO, for PEM and name printing.
func makeMemoryBIO(_ operation: String) throws(CryptoError) -> OpenSSLObject {
  try OpenSSLObject(BIO_new(BIO_s_mem()), operation: operation) { _ = BIO_free($0) }
}

/// A read-only memory BIO over a copy of `bytes` (the copy lives as long as the BIO owner needs it,
/// because `BIO_new_mem_buf` does not copy).
final class ReadOnlyBIO {
  let bio: OpenSSLObject
  private let storage: UnsafeMutableRawPointer

  init(_ bytes: [UInt8], operation: String) throws(CryptoError) {
    guard let storage = malloc(max(bytes.count, 1)) else { fatalError("out of memory") }
    bytes.withUnsafeBytes { source in
      if let base = source.baseAddress { storage.copyMemory(from: base, byteCount: source.count) }
    }
    self.storage = storage
    do {
      bio = try OpenSSLObject(BIO_new_mem_buf(storage, Int32(bytes.count)), operation: operation) {
        _ = BIO_free($0)
      }
    } catch {
      free(storage)
      throw error
    }
  }

  deinit {
    // `bio` is released after this body runs, but nothing reads the buffer during BIO_free.
    free(storage)
  }
}

/// Everything written to a memory BIO, as bytes.
func contents(of bio: OpenSSLObject) -> [UInt8] {
  var data: UnsafeMutablePointer<CChar>? = nil
  let length = cove_BIO_get_mem_data(bio.pointer, &data)
  guard let data, length > 0 else { return [] }
  return data.withMemoryRebound(to: UInt8.self, capacity: length) {
    Array(UnsafeBufferPointer(start: $0, count: length))
  }
}
