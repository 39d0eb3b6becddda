/// The readable timeline a run prints (issue 7): one line per record, steps as headings, colour when
/// the output is a terminal. Verbose adds DOE objects and message bytes; quiet keeps step results only.
public struct Timeline: Sendable {
  public enum Detail: Sendable { case quiet, normal, verbose }
  public var colour: Bool
  public var detail: Detail

  public init(colour: Bool, detail: Detail = .normal) {
    self.colour = colour
    self.detail = detail
  }

  /// The line for a record, or nil when this level of detail leaves it out.
  public func line(for record: TraceRecord) -> String? {
    switch detail {
    case .quiet:
      guard record.kind == .step, let after = record.after else { return nil }
      return stepResult(record, after)
    case .normal:
      // Plain SPDM objects are shown; secured ones only in verbose (their TDISP and IDE_KM contents
      // have their own records).
      if record.kind == .doe && record.from == nil { return nil }
    case .verbose:
      break
    }
    if record.kind == .step {
      if let after = record.after { return stepResult(record, after) }
      return paint("\n\(time(record)) step \((record.step ?? 0) + 1): \(record.summary)", bold)
    }
    var text =
      "\(time(record))   \(pad(record.component.rawValue, 6)) \(pad(record.device ?? "", 8)) \(record.summary)"
    if let before = record.before, let after = record.after, record.kind != .expectation {
      text += "  [\(before) → \(after)]"
    }
    if record.kind == .expectation, let before = record.before, let after = record.after {
      text += ": expected \(before), got \(after)"
    }
    if detail == .verbose, let bytes = record.bytes {
      text +=
        "\n" + String(repeating: " ", count: 16) + TraceRecord.hex(Array(bytes.prefix(64)))
        + (bytes.count > 64 ? "… (\(bytes.count) bytes)" : "")
    }
    switch record.kind {
    case .fault, .expectation: return paint(text, red)
    case .state, .trust: return paint(text, yellow)
    case .spdm, .tdisp, .idekm, .doe: return paint(text, dim)
    default: return text
    }
  }

  /// The closing line: how many steps passed.
  public func summary(_ result: RunResult) -> String {
    let failed = result.steps.filter { !$0.passed }
    if failed.isEmpty {
      return paint(
        "\(result.image.name): all \(result.steps.count) steps passed (seed \(result.seed), \(result.records.count) records)",
        green)
    }
    var text =
      "\(result.image.name): \(failed.count) of \(result.steps.count) steps FAILED (seed \(result.seed))"
    for step in failed {
      if case .failed(let expected, let actual) = step.outcome {
        text += "\n  step \(step.index + 1) (\(step.description)): expected \(expected); got \(actual)"
      }
    }
    return paint(text, red)
  }

  private func stepResult(_ record: TraceRecord, _ after: String) -> String {
    let ok = after == "ok"
    return paint(
      "\(ok ? "  ✔" : "  ✘") step \((record.step ?? 0) + 1): \(record.summary)\(ok ? "" : " — " + after)",
      ok ? green : red)
  }

  private func time(_ record: TraceRecord) -> String {
    let text = "\(record.time / 1000).\(record.time % 1000 / 100)"
    return "[" + String(repeating: " ", count: max(0, 9 - text.count)) + text + " µs]"
  }

  private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
  }

  private let bold = "1", red = "31", green = "32", yellow = "33", dim = "2"
  private func paint(_ text: String, _ code: String) -> String {
    colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
  }
}
