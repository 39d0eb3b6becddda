/// A run as one self-contained HTML page (issue 7, `cove run --report FILE.html`): a header with the
/// verdict, a sequence diagram of every message between the TSM, the DSM, the TDIs, the guest and the
/// IOMMU, a timeline of each TDI's TDISP state (PCIe 6.x §11.2) over virtual time, and the step table
/// with each step's records.
///
/// The page needs nothing but itself: CSS inline, diagrams as inline SVG, no script, no font or
/// stylesheet from the network. A Content-Security-Policy meta tag (`default-src 'none'`) makes the
/// browser refuse — and report on its console — anything that would load, so `make check-report`
/// catches a regression. Rendering is deterministic: the same records give the same bytes (no clock,
/// no dictionary order, integer layout).
public enum HTMLReport {
  /// Limits that keep long runs readable.
  public struct Options: Hashable, Sendable {
    /// Above this many messages, consecutive messages of one kind between the same two lanes in the
    /// same step are drawn as one arrow labelled "×N".
    public var collapseAbove: Int
    /// At most this many arrows are drawn; a note says how many messages were left out (the step
    /// tables still list every record).
    public var maximumArrows: Int
    /// Longest arrow label in characters; longer summaries are cut with "…" and carried whole by the
    /// arrow's `<title>` tooltip.
    public var maximumLabelLength: Int

    public init(collapseAbove: Int = 400, maximumArrows: Int = 2000, maximumLabelLength: Int = 60) {
      precondition(collapseAbove >= 0 && maximumArrows > 0 && maximumLabelLength >= 8)
      self.collapseAbove = collapseAbove
      self.maximumArrows = maximumArrows
      self.maximumLabelLength = maximumLabelLength
    }
  }

  /// The `id` of the sequence diagram's SVG (what `scripts/check-report.sh` looks for).
  public static let sequenceDiagramID = "sequence-diagram"
  /// The `id` of the TDI state timeline's SVG.
  public static let stateTimelineID = "state-timeline"

  /// The page for a run of `image` with `seed`. `steps[i].firstRecord..<endRecord` index `records`.
  public static func render(
    title: String, image: String, seed: UInt64, records: [TraceRecord], steps: [StepResult],
    options: Options = Options()
  ) -> String {
    var page = Markup()
    page.raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n")
    page.raw("<meta charset=\"utf-8\">\n")
    page.raw(
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
    )
    page.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
    page.raw("<meta name=\"generator\" content=\"cove\">\n")
    page.element("title", text: "\(title) — \(image)")
    page.raw("\n<style>\n\(stylesheet)</style>\n</head>\n<body>\n")

    header(into: &page, title: title, image: image, seed: seed, records: records, steps: steps)

    page.raw("<section id=\"sequence\">\n<h2>Sequence diagram</h2>\n")
    SequenceDiagram(records: records, steps: steps, options: options).render(into: &page)
    page.raw("</section>\n")

    page.raw("<section id=\"timeline\">\n<h2>TDI state timeline</h2>\n")
    StateTimeline(records: records, steps: steps).render(into: &page)
    page.raw("</section>\n")

    page.raw("<section id=\"steps\">\n<h2>Steps</h2>\n")
    StepTables(records: records, steps: steps).render(into: &page)
    page.raw("</section>\n")

    page.raw("</body>\n</html>\n")
    return page.text
  }

  private static func header(
    into page: inout Markup, title: String, image: String, seed: UInt64, records: [TraceRecord],
    steps: [StepResult]
  ) {
    let failed = steps.filter { !$0.passed }
    let verdict: (text: String, className: String) =
      if steps.isEmpty {
        ("NO STEPS", "verdict none")
      } else if failed.isEmpty {
        ("PASSED", "verdict pass")
      } else {
        ("FAILED", "verdict fail")
      }
    page.raw("<header>\n")
    page.element("h1", text: title)
    page.open("dl", ["class": "facts"])
    page.element("dt", text: "image")
    page.element("dd", text: image)
    page.element("dt", text: "seed")
    page.element("dd", text: "\(seed) (0x\(String(seed, radix: 16)))")
    page.element("dt", text: "result")
    page.open("dd")
    page.element("span", ["class": verdict.className], text: verdict.text)
    var tally = " \(steps.count - failed.count) of \(steps.count) step\(steps.count == 1 ? "" : "s") passed"
    if let first = failed.first { tally += "; first failure: step \(first.index + 1) (\(first.description))" }
    page.escaped(tally)
    page.close("dd")
    let messages = records.count { $0.from != nil && $0.to != nil }
    let states = records.count { $0.kind == .state }
    page.element("dt", text: "records")
    page.element(
      "dd",
      text:
        "\(records.count) records, \(messages) messages, \(states) TDI state changes, "
        + "\(formatTime(records.map(\.time).max() ?? 0)) of virtual time")
    page.close("dl")
    page.raw(
      "<nav><a href=\"#sequence\">Sequence diagram</a> · <a href=\"#timeline\">TDI states</a> · "
        + "<a href=\"#steps\">Steps</a></nav>\n")
    page.raw("</header>\n")
  }

  private static let stylesheet = """
    :root { color-scheme: light; }
    body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
      margin: 0 auto; padding: 16px 24px 48px; max-width: 1600px; color: #1f2328; background: #fff; }
    h1 { font-size: 22px; margin: 0 0 8px; }
    h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
    dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 8px; }
    dl.facts dt { color: #59636e; }
    dl.facts dd { margin: 0; }
    .verdict { font-weight: 700; padding: 1px 8px; border-radius: 10px; color: #fff; }
    .verdict.pass { background: #1a7f37; }
    .verdict.fail { background: #cf222e; }
    .verdict.none { background: #59636e; }
    nav a { color: #0969da; }
    .diagram-scroll { max-height: 80vh; overflow: auto; border: 1px solid #d0d7de; border-radius: 6px; }
    .lanes-sticky { position: sticky; top: 0; z-index: 1; background: #fff; }
    svg { display: block; font-family: inherit; }
    svg text { font-size: 11px; fill: #1f2328; }
    svg text.time { fill: #59636e; font-size: 10px; font-variant-numeric: tabular-nums; }
    svg text.band-label { font-weight: 600; }
    svg text.lane-label { font-weight: 600; font-size: 12px; }
    svg text.segment-label { fill: #1f2328; font-size: 10px; }
    svg text.note { fill: #59636e; font-style: italic; }
    .legend { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 6px 0; color: #59636e; font-size: 12px; }
    .legend span { display: inline-flex; align-items: center; gap: 6px; }
    .legend svg { display: inline-block; }
    .timeline-scroll { overflow-x: auto; }
    table { border-collapse: collapse; margin: 6px 0; }
    th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
    th { background: #f6f8fa; }
    td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
    td.text { white-space: pre-wrap; word-break: break-word; }
    tr.failed td { background: #ffebe9; }
    .result.passed { color: #1a7f37; font-weight: 600; }
    .result.failed { color: #cf222e; font-weight: 700; }
    details { margin: 4px 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 2px 8px; }
    details.failed { border-color: #cf222e; }
    details summary { cursor: pointer; font-weight: 600; }
    details table { font-size: 12px; }
    code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }

    """
}
