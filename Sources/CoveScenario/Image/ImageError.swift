/// Why a guest image is invalid: the file, the line and column, the key path, and what is wrong —
/// `default.yaml:12:9: devices[1].assign[0]: '00:1f.9' is not a valid function`.
public struct ImageError: Error, Hashable, Sendable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var column: Int
  /// The key path, as `devices[1].bdf`; empty for the document itself.
  public var path: String
  public var message: String

  public init(file: String, line: Int, column: Int, path: String, message: String) {
    self.file = file
    self.line = line
    self.column = column
    self.path = path
    self.message = message
  }

  public var description: String {
    "\(file):\(line):\(column): " + (path.isEmpty ? "" : "\(path): ") + message
  }
}
