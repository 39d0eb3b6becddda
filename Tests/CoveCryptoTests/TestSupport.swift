import CoveCrypto
import Foundation

/// Bytes from a hex string (whitespace ignored).
func hex(_ text: String) -> [UInt8] {
  let digits = Array(text.filter { !$0.isWhitespace })
  precondition(digits.count % 2 == 0, "odd hex length")
  return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

func hexString(_ bytes: [UInt8]) -> String {
  bytes.map { String(format: "%02x", $0) }.joined()
}

struct ProcessResult {
  var status: Int32
  var output: [UInt8]
  var errorText: String
}

/// Runs a tool found on PATH (`openssl`, `python3`) and collects its output.
@discardableResult
func run(_ tool: String, _ arguments: [String], in directory: URL? = nil, input: [UInt8]? = nil) throws
  -> ProcessResult
{
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = [tool] + arguments
  if let directory { process.currentDirectoryURL = directory }
  let output = Pipe()
  let errors = Pipe()
  process.standardOutput = output
  process.standardError = errors
  let stdin = Pipe()
  process.standardInput = stdin
  try process.run()
  if let input { stdin.fileHandleForWriting.write(Data(input)) }
  try stdin.fileHandleForWriting.close()
  let outData = output.fileHandleForReading.readDataToEndOfFile()
  let errData = errors.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return ProcessResult(
    status: process.terminationStatus, output: Array(outData),
    errorText: String(decoding: errData, as: UTF8.self))
}

/// A fresh temporary directory, removed by the caller via `defer`.
func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "cove-crypto-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

func write(_ bytes: [UInt8], to url: URL) throws { try Data(bytes).write(to: url) }
func write(_ text: String, to url: URL) throws { try Data(text.utf8).write(to: url) }
func read(_ url: URL) throws -> [UInt8] { Array(try Data(contentsOf: url)) }
