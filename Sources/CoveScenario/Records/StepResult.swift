/// How one step of a guest image went (the report's step table, the exit status).
public struct StepResult: Hashable, Sendable {
  public enum Outcome: Hashable, Sendable {
    case passed
    /// An expectation did not hold: what was expected and what happened.
    case failed(expected: String, actual: String)
  }

  /// 0-based index in the image's steps.
  public var index: Int
  /// The step as written ("lock 03:00.1").
  public var description: String
  public var outcome: Outcome
  /// The records the step produced: `records[firstRecord..<endRecord]`.
  public var firstRecord: Int
  public var endRecord: Int

  public init(index: Int, description: String, outcome: Outcome, firstRecord: Int, endRecord: Int) {
    self.index = index
    self.description = description
    self.outcome = outcome
    self.firstRecord = firstRecord
    self.endRecord = endRecord
  }

  public var passed: Bool { outcome == .passed }
}
