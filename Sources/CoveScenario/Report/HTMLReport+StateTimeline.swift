extension HTMLReport {
  /// The TDI state timeline: a row per TDI, a coloured segment per interval between its `.state`
  /// records (TDISP states, PCIe 6.x §11.2: CONFIG_UNLOCKED, CONFIG_LOCKED, RUN, ERROR) over virtual
  /// time. A TDI with n state records has n + 1 segments: from the start of the run in the first
  /// record's `before` state, then in each record's `after` state until the next one or the end of the
  /// run (drawn a little past the last record, so a final state always shows).
  struct StateTimeline {
    /// A state the timeline knows, with its colour.
    struct Style {
      var name: String
      var className: String
      var colour: String
    }

    /// The four TDISP states, in the order they are usually visited; anything else is "other".
    static let styles: [Style] = [
      Style(name: "CONFIG_UNLOCKED", className: "state-config-unlocked", colour: "#8c959f"),
      Style(name: "CONFIG_LOCKED", className: "state-config-locked", colour: "#d4a72c"),
      Style(name: "RUN", className: "state-run", colour: "#2da44e"),
      Style(name: "ERROR", className: "state-error", colour: "#cf222e"),
    ]
    static let other = Style(name: "other", className: "state-other", colour: "#d8b9ff")

    /// The style of a state as a record spells it ("CONFIG_LOCKED", "configLocked" and
    /// "config-locked" are one state).
    static func style(of state: String?) -> Style {
      guard let state else { return other }
      let key = String(state.uppercased().filter { $0.isLetter || $0.isNumber })
      return styles.first { $0.name.filter { $0 != "_" } == key } ?? other
    }

    struct Segment {
      var start: UInt64
      var end: UInt64
      var state: String
      /// The record that began the segment (nil: the run's start).
      var cause: TraceRecord?
    }

    struct Row {
      var tdi: String
      var segments: [Segment]
    }

    let rows: [Row]
    let end: UInt64
    let steps: [StepResult]
    let stepStarts: [(step: StepResult, time: UInt64)]

    // Layout, in CSS pixels.
    static let labelWidth = 130
    static let plotWidth = 960
    /// Above the rows: tick labels, the axis line, then the numbers of the steps.
    static let axisHeight = 42
    static let axisLine = 18
    static let rowHeight = 30
    static let barHeight = 20

    init(records: [TraceRecord], steps: [StepResult]) {
      let last = records.map(\.time).max() ?? 0
      end = last + max(1, last / 40)

      var changes: [(tdi: String, record: TraceRecord)] = []
      var tdis: [String] = []
      for record in records {
        for lane in [record.from, record.to] {
          if case .tdi(let function)? = lane { tdis.append(function) }
        }
        guard record.kind == .state else { continue }
        var tdi = record.device
        if tdi == nil, case .tdi(let function)? = record.to ?? record.from { tdi = function }
        guard let tdi else { continue }
        tdis.append(tdi)
        changes.append((tdi, record))
      }

      var rows: [Row] = []
      for tdi in Array(Set(tdis)).sorted() {
        let mine = changes.filter { $0.tdi == tdi }.map(\.record)
        var segments: [Segment] = []
        if let first = mine.first {
          var start: UInt64 = 0
          var state = first.before ?? "unknown"
          var cause: TraceRecord? = nil
          for record in mine {
            segments.append(Segment(start: start, end: max(start, record.time), state: state, cause: cause))
            start = max(start, record.time)
            state = record.after ?? "unknown"
            cause = record
          }
          segments.append(Segment(start: start, end: max(start, end), state: state, cause: cause))
        }
        rows.append(Row(tdi: tdi, segments: segments))
      }
      self.rows = rows
      self.steps = steps
      stepStarts = steps.compactMap { step in
        guard step.firstRecord >= 0, step.firstRecord < records.count else { return nil }
        return (step, records[step.firstRecord].time)
      }
    }

    func x(_ time: UInt64) -> Int {
      Self.labelWidth + Int((Double(time) / Double(end) * Double(Self.plotWidth)).rounded())
    }

    func render(into page: inout Markup) {
      legend(into: &page)
      let width = Self.labelWidth + Self.plotWidth + 24
      let height = Self.axisHeight + max(1, rows.count) * Self.rowHeight + 8
      page.raw("<div class=\"timeline-scroll\">\n")
      page.open(
        "svg",
        [
          "id": HTMLReport.stateTimelineID, "xmlns": "http://www.w3.org/2000/svg", "width": "\(width)",
          "height": "\(height)", "viewBox": "0 0 \(width) \(height)", "role": "img",
          "aria-label": "TDI state timeline of \(rows.count) TDIs",
        ])
      page.raw("\n")
      axis(height: height, into: &page)

      if rows.isEmpty {
        page.element(
          "text", ["class": "note", "x": "\(Self.labelWidth)", "y": "\(Self.axisHeight + 19)"],
          text: "No TDI was seen in this run.")
      }
      var y = Self.axisHeight
      for row in rows {
        page.open("g", ["class": "tdi-row", "data-tdi": row.tdi])
        page.element(
          "text", ["class": "lane-label", "x": "8", "y": "\(y + 19)"],
          text: TraceRecord.Lane.tdi(row.tdi).description)
        if row.segments.isEmpty {
          page.element(
            "text", ["class": "note", "x": "\(Self.labelWidth)", "y": "\(y + 19)"],
            text: "no state changes recorded")
        }
        for segment in row.segments {
          draw(segment, tdi: row.tdi, top: y + (Self.rowHeight - Self.barHeight) / 2, into: &page)
        }
        page.close("g")
        y += Self.rowHeight
      }
      page.close("svg")
      page.raw("</div>\n")
    }

    private func draw(_ segment: Segment, tdi: String, top: Int, into page: inout Markup) {
      let style = Self.style(of: segment.state)
      let left = x(segment.start)
      let width = max(2, x(segment.end) - left)
      var tooltip =
        "TDI \(tdi): \(segment.state) from \(HTMLReport.formatTime(segment.start)) to "
        + (segment.end >= end ? "the end of the run" : HTMLReport.formatTime(segment.end))
      if let cause = segment.cause {
        tooltip += "\nentered at #\(cause.sequence) (\(cause.component.rawValue)): \(cause.summary)"
      }
      page.open("g", ["class": "segment-group"])
      page.shape(
        "rect",
        [
          "class": "segment \(style.className)", "x": "\(left)", "y": "\(top)", "width": "\(width)",
          "height": "\(Self.barHeight)", "fill": style.colour, "stroke": "#ffffff", "stroke-width": "1",
        ], tooltip: tooltip)
      // The state's name inside the bar when it fits (about 6 px a character at 10 px).
      let name = HTMLReport.label(segment.state, limit: 40).text
      if width >= name.count * 6 + 8 {
        page.element(
          "text", ["class": "segment-label", "x": "\(left + 4)", "y": "\(top + 14)"], text: name)
      }
      page.close("g")
    }

    private func axis(height: Int, into page: inout Markup) {
      // Ticks every 1, 2 or 5 × 10^k ns, at most 8 of them.
      var tick: UInt64 = 1
      var magnitude: UInt64 = 1
      search: while true {
        for factor: UInt64 in [1, 2, 5] where factor * magnitude * 8 >= end {
          tick = factor * magnitude
          break search
        }
        magnitude *= 10
      }
      page.open("g", ["class": "axis"])
      page.empty(
        "line",
        [
          "x1": "\(Self.labelWidth)", "y1": "\(Self.axisLine)", "x2": "\(Self.labelWidth + Self.plotWidth)",
          "y2": "\(Self.axisLine)", "stroke": "#8c959f",
        ])
      var time: UInt64 = 0
      while time <= end {
        let x = x(time)
        page.empty(
          "line",
          ["x1": "\(x)", "y1": "\(Self.axisLine - 4)", "x2": "\(x)", "y2": "\(height)", "stroke": "#eaeef2"])
        page.element(
          "text", ["class": "time", "x": "\(x)", "y": "\(Self.axisLine - 6)", "text-anchor": "middle"],
          text: HTMLReport.formatTime(time, trimmed: true))
        time += tick
      }
      // Where each step began; numbers only where there is room.
      var lastLabel: Int? = nil
      for (step, start) in stepStarts {
        let x = x(start)
        let failed = !step.passed
        page.open("g", ["class": "step-marker", "data-step": "\(step.index)"])
        page.shape(
          "line",
          [
            "x1": "\(x)", "y1": "\(Self.axisLine)", "x2": "\(x)", "y2": "\(height)",
            "stroke": failed ? "#cf222e" : "#6e7781", "stroke-dasharray": "3 3", "stroke-width": "1",
          ], tooltip: "step \(step.index + 1) begins at \(HTMLReport.formatTime(start)): \(step.description)")
        if lastLabel.map({ x - $0 >= 22 }) ?? true {
          page.element(
            "text", ["class": "time", "x": "\(x + 3)", "y": "\(Self.axisLine + 14)"],
            text: "\(step.index + 1)")
          lastLabel = x
        }
        page.close("g")
      }
      page.close("g")
    }

    private func legend(into page: inout Markup) {
      page.raw("<div class=\"legend\">\n")
      var shown = Self.styles
      let usesOther = rows.contains { row in
        row.segments.contains { Self.style(of: $0.state).className == Self.other.className }
      }
      if usesOther { shown.append(Self.other) }
      for style in shown {
        page.open("span", ["class": "legend-state"])
        page.raw("<svg width=\"18\" height=\"12\" viewBox=\"0 0 18 12\" aria-hidden=\"true\">")
        page.empty("rect", ["x": "0", "y": "0", "width": "18", "height": "12", "fill": style.colour])
        page.raw("</svg>")
        page.escaped(style.name)
        page.raw("</span>\n")
      }
      page.element("span", text: "dashed lines: where each step began (numbered)")
      page.raw("</div>\n")
    }
  }
}
