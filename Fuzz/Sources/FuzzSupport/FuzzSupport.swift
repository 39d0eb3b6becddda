// The libFuzzer hand-off every Cove harness shares: store the harness body, give main to
// LLVMFuzzerRunDriver, and export LLVMFuzzerTestOneInput (which libFuzzer's own objects reference)
// calling the same body. SwiftPM gives every executable a Swift main, so the driver is started from
// there rather than by libFuzzer's main (see Fuzz/README.md).
import CLibFuzzer

#if canImport(Glibc)
  import Glibc
#endif

/// The harness body; set once before libFuzzer starts, then only read (libFuzzer is single-threaded).
nonisolated(unsafe) private var harnessBody: (([UInt8]) -> Void)?

/// Runs libFuzzer over `body`, one call per input; exits with libFuzzer's status.
public func runLibFuzzer(_ body: @escaping ([UInt8]) -> Void) -> Never {
  harnessBody = body
  var argc = CommandLine.argc
  var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
  let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    // libFuzzer may pass a null pointer for the empty input.
    harnessBody?(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
  }
  exit(status)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  harnessBody?(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
  return 0
}

/// Whether COVE_FUZZ_VERBOSE is set: harnesses then print each input's outcome (for replaying a few
/// inputs by hand, e.g. `COVE_FUZZ_VERBOSE=1 Fuzz/.build/debug/FuzzEvidence Fuzz/Seeds/FuzzEvidence/*`).
public let fuzzVerbose: Bool = getenv("COVE_FUZZ_VERBOSE") != nil

/// Prints `message()` when ``fuzzVerbose``.
public func fuzzLog(_ message: @autoclosure () -> String) {
  if fuzzVerbose { print(message()) }
}
