extension HTMLReport {
  /// The step table (index, description, result with expected and actual for a failure) and, per
  /// step, a collapsible list of the records it produced — open for a failed step. Records no step
  /// claims (before the first, between steps) get a list of their own, so every record is on the page.
  struct StepTables {
    let records: [TraceRecord]
    let steps: [StepResult]

    /// The records of a step, clamped to the records there are.
    func range(of step: StepResult) -> Range<Int> {
      let lower = min(max(0, step.firstRecord), records.count)
      let upper = min(max(lower, step.endRecord), records.count)
      return lower..<upper
    }

    func render(into page: inout Markup) {
      if steps.isEmpty {
        page.element("p", text: "The image has no steps.")
      } else {
        table(into: &page)
      }
      for step in steps {
        let range = range(of: step)
        let failed = !step.passed
        page.open(
          "details",
          failed
            ? ["id": "step-\(step.index)", "class": "failed", "open": ""]
            : ["id": "step-\(step.index)", "class": "passed"])
        page.element(
          "summary",
          text:
            "step \(step.index + 1): \(step.description) — \(failed ? "FAILED" : "passed"), "
            + "\(range.count) record\(range.count == 1 ? "" : "s")")
        list(records[range], into: &page)
        page.close("details")
      }

      var claimed = [Bool](repeating: false, count: records.count)
      for step in steps {
        for index in range(of: step) { claimed[index] = true }
      }
      let unclaimed = records.indices.filter { !claimed[$0] }.map { records[$0] }
      if !unclaimed.isEmpty {
        page.open("details", ["id": "outside-steps", "class": "outside"])
        page.element(
          "summary",
          text: "outside any step: \(unclaimed.count) record\(unclaimed.count == 1 ? "" : "s")")
        list(unclaimed[...], into: &page)
        page.close("details")
      }
    }

    private func table(into page: inout Markup) {
      page.open("table", ["class": "step-results"])
      page.raw("\n<thead><tr><th>#</th><th>step</th><th>result</th><th>expected</th><th>actual</th>")
      page.raw("<th>records</th></tr></thead>\n<tbody>\n")
      for step in steps {
        let count = range(of: step).count
        switch step.outcome {
        case .passed:
          page.open("tr", ["class": "passed"])
          cellLink(step.index, into: &page)
          page.element("td", ["class": "text"], text: step.description)
          page.element("td", ["class": "result passed"], text: "passed")
          page.element("td", text: "")
          page.element("td", text: "")
        case .failed(let expected, let actual):
          page.open("tr", ["class": "failed"])
          cellLink(step.index, into: &page)
          page.element("td", ["class": "text"], text: step.description)
          page.element("td", ["class": "result failed"], text: "FAILED")
          page.element("td", ["class": "text expected"], text: expected)
          page.element("td", ["class": "text actual"], text: actual)
        }
        page.element("td", ["class": "num"], text: "\(count)")
        page.close("tr")
      }
      page.raw("</tbody>\n")
      page.close("table")
    }

    private func cellLink(_ index: Int, into page: inout Markup) {
      page.open("td", ["class": "num"])
      page.element("a", ["href": "#step-\(index)"], text: "\(index + 1)")
      page.raw("</td>")
    }

    private func list(_ slice: ArraySlice<TraceRecord>, into page: inout Markup) {
      guard !slice.isEmpty else {
        page.element("p", text: "No records.")
        return
      }
      page.open("table", ["class": "records"])
      page.raw(
        "\n<thead><tr><th>#</th><th>time</th><th>component</th><th>kind</th><th>device</th><th>summary</th>"
          + "<th>before → after</th></tr></thead>\n<tbody>\n")
      for record in slice {
        page.open("tr", ["class": "record kind-\(record.kind.rawValue)"])
        page.element("td", ["class": "num"], text: "\(record.sequence)")
        page.element("td", ["class": "num"], text: HTMLReport.formatTime(record.time))
        page.element("td", text: record.component.rawValue)
        page.element("td", text: record.kind.rawValue)
        page.element("td", text: record.device ?? "")
        var summary = record.summary
        if let from = record.from, let to = record.to { summary += "  [\(from) → \(to)]" }
        if let bytes = record.bytes { summary += "  (\(bytes.count) bytes)" }
        page.element("td", ["class": "text"], text: summary)
        let change =
          switch (record.before, record.after) {
          case (let before?, let after?): "\(before) → \(after)"
          case (let before?, nil): before
          case (nil, let after?): "→ \(after)"
          case (nil, nil): ""
          }
        page.element("td", ["class": "text"], text: change)
        page.close("tr")
      }
      page.raw("</tbody>\n")
      page.close("table")
    }
  }
}
