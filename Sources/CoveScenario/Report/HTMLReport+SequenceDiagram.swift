extension HTMLReport {
  /// The sequence diagram: a lane per party (TSM, DSM, each TDI, guest, IOMMU, and the host when
  /// something involved it), one arrow per message record in record order — requests solid, responses
  /// dashed, coloured by kind — in bands, one per step. The lane names sit in a second SVG that stays
  /// at the top of the scrolling box.
  struct SequenceDiagram {
    /// One drawn arrow: a message, or a run of messages collapsed into one (`count` > 1).
    struct Arrow {
      var first: TraceRecord
      var last: TraceRecord
      var count: Int
      /// Some message of the run went the other way (the arrow gets a head at each end).
      var returns = false
    }

    /// Arrows of one step (or of none), drawn under one band.
    struct Band {
      var step: Int?
      var arrows: [Arrow]
    }

    let lanes: [TraceRecord.Lane]
    let bands: [Band]
    let messageCount: Int
    let drawnMessages: Int
    let collapsed: Bool
    let steps: [StepResult]
    let options: Options

    // Layout, in CSS pixels.
    static let gutter = 96
    static let laneSpacing = 180
    static let bandHeader = 24
    static let row = 26
    static let headerHeight = 36
    /// A generous average width of an 11 px character (capitals are wide), for fitting labels.
    static let characterWidth = 7

    init(records: [TraceRecord], steps: [StepResult], options: Options) {
      let messages = records.filter { $0.from != nil && $0.to != nil }
      var tdis: [String] = []
      var usesHost = false
      for record in records {
        for lane in [record.from, record.to] {
          if case .tdi(let function)? = lane { tdis.append(function) }
          if lane == .host { usesHost = true }
        }
        if record.kind == .state, let device = record.device { tdis.append(device) }
      }
      lanes =
        [.tsm, .dsm] + Array(Set(tdis)).sorted().map { .tdi($0) } + [.guest, .iommu]
        + (usesHost ? [.host] : [])

      collapsed = messages.count > options.collapseAbove
      var arrows: [Arrow] = []
      for message in messages {
        if collapsed, var run = arrows.last, Self.continues(run, with: message) {
          run.last = message
          run.count += 1
          if message.from != run.first.from { run.returns = true }
          arrows[arrows.count - 1] = run
        } else {
          arrows.append(Arrow(first: message, last: message, count: 1))
        }
      }
      let drawn = arrows.prefix(options.maximumArrows)
      drawnMessages = drawn.reduce(0) { $0 + $1.count }
      messageCount = messages.count

      var bands: [Band] = []
      for arrow in drawn {
        if let band = bands.last, band.step == arrow.first.step {
          bands[bands.count - 1].arrows.append(arrow)
        } else {
          bands.append(Band(step: arrow.first.step, arrows: [arrow]))
        }
      }
      self.bands = bands
      self.steps = steps
      self.options = options
    }

    /// Whether `message` joins the run: same kind and step, between the same two lanes either way.
    static func continues(_ run: Arrow, with message: TraceRecord) -> Bool {
      let first = run.first
      guard message.kind == first.kind, message.step == first.step else { return false }
      return (message.from == first.from && message.to == first.to)
        || (message.from == first.to && message.to == first.from)
    }

    var width: Int { Self.gutter + lanes.count * Self.laneSpacing + 16 }

    func x(of lane: TraceRecord.Lane) -> Int {
      let index = lanes.firstIndex(of: lane) ?? 0
      return Self.gutter + index * Self.laneSpacing + Self.laneSpacing / 2
    }

    func render(into page: inout Markup) {
      legend(into: &page)
      page.raw("<div class=\"diagram-scroll\">\n<div class=\"lanes-sticky\">\n")
      laneHeader(into: &page)
      page.raw("</div>\n")

      var height = 8
      for band in bands { height += Self.bandHeader + band.arrows.count * Self.row }
      let truncatedNote = drawnMessages < messageCount
      if truncatedNote || bands.isEmpty { height += Self.row }
      height += 8

      page.open(
        "svg",
        [
          "id": HTMLReport.sequenceDiagramID, "xmlns": "http://www.w3.org/2000/svg", "width": "\(width)",
          "height": "\(height)", "viewBox": "0 0 \(width) \(height)", "role": "img",
          "aria-label": "sequence diagram of \(messageCount) messages",
        ])
      page.raw("\n")

      // Step bands first, then lifelines over them, then arrows on top.
      var y = 8
      var bandNumber = 0
      var bandMarkup = Markup()
      var arrowMarkup = Markup()
      for band in bands {
        let bandHeight = Self.bandHeader + band.arrows.count * Self.row
        let step = band.step.flatMap { index in steps.first { $0.index == index } }
        let failed = step.map { !$0.passed } ?? false
        let fill = failed ? "#ffebe9" : (bandNumber % 2 == 0 ? "#f6f8fa" : "#ffffff")
        bandMarkup.open(
          "g",
          ["class": failed ? "step-band failed" : "step-band", "data-step": band.step.map(String.init) ?? ""])
        bandMarkup.empty(
          "rect",
          ["x": "0", "y": "\(y)", "width": "\(width)", "height": "\(bandHeight)", "fill": fill])
        bandMarkup.empty(
          "line",
          [
            "x1": "0", "y1": "\(y)", "x2": "\(width)", "y2": "\(y)", "stroke": failed ? "#cf222e" : "#d0d7de",
            "stroke-width": "1",
          ])
        let (label, _) = HTMLReport.label(bandTitle(band.step, step), limit: 140)
        bandMarkup.element(
          "text",
          ["class": "band-label", "x": "8", "y": "\(y + 16)", "fill": failed ? "#cf222e" : "#1f2328"],
          text: label)
        bandMarkup.close("g")
        bandNumber += 1

        var rowY = y + Self.bandHeader
        for arrow in band.arrows {
          draw(arrow, centre: rowY + Self.row / 2 + 4, into: &arrowMarkup)
          rowY += Self.row
        }
        y += bandHeight
      }
      page.raw(bandMarkup.text)

      for lane in lanes {
        let x = x(of: lane)
        page.empty(
          "line",
          [
            "class": "lifeline", "x1": "\(x)", "y1": "0", "x2": "\(x)", "y2": "\(height)",
            "stroke": "#8c959f",
            "stroke-width": "1", "stroke-dasharray": "2 4",
          ])
      }
      page.raw("\n")
      page.raw(arrowMarkup.text)

      if bands.isEmpty {
        page.element(
          "text", ["class": "note", "x": "\(Self.gutter)", "y": "\(y + 17)"],
          text: "No messages were recorded.")
      } else if truncatedNote {
        page.element(
          "text", ["class": "note", "x": "\(Self.gutter)", "y": "\(y + 17)"],
          text:
            "… \(messageCount - drawnMessages) more messages not drawn (over \(options.maximumArrows) arrows); "
            + "the step tables below list every record.")
      }
      page.close("svg")
      page.raw("</div>\n")
    }

    private func bandTitle(_ index: Int?, _ step: StepResult?) -> String {
      guard let index else { return "outside any step" }
      guard let step else { return "step \(index + 1)" }
      return "step \(index + 1): \(step.description) — " + (step.passed ? "passed" : "FAILED")
    }

    private func legend(into page: inout Markup) {
      page.raw("<div class=\"legend\">\n")
      var kinds: [TraceRecord.Kind] = []
      for band in bands {
        for arrow in band.arrows where !kinds.contains(arrow.first.kind) { kinds.append(arrow.first.kind) }
      }
      let ordered = TraceRecord.Kind.allCases.filter { kinds.contains($0) }
      for kind in ordered {
        legendItem(into: &page, colour: Self.colour(of: kind), dashed: false, text: kind.rawValue)
      }
      legendItem(into: &page, colour: "#59636e", dashed: false, text: "request: solid")
      legendItem(into: &page, colour: "#59636e", dashed: true, text: "response: dashed")
      if collapsed {
        page.element(
          "span", ["class": "collapse-note"],
          text:
            "\(messageCount) messages: consecutive messages of one kind between the same lanes in a step "
            + "are drawn as one arrow (×N)")
      }
      page.raw("</div>\n")
    }

    private func legendItem(into page: inout Markup, colour: String, dashed: Bool, text: String) {
      page.open("span")
      page.raw("<svg width=\"28\" height=\"10\" viewBox=\"0 0 28 10\" aria-hidden=\"true\">")
      page.empty(
        "line",
        [
          "x1": "1", "y1": "5", "x2": "27", "y2": "5", "stroke": colour, "stroke-width": "2",
          "stroke-dasharray": dashed ? "5 3" : "none",
        ])
      page.raw("</svg>")
      page.escaped(text)
      page.raw("</span>\n")
    }

    private func laneHeader(into page: inout Markup) {
      page.open(
        "svg",
        [
          "id": "sequence-lanes", "xmlns": "http://www.w3.org/2000/svg", "width": "\(width)",
          "height": "\(Self.headerHeight)", "viewBox": "0 0 \(width) \(Self.headerHeight)",
        ])
      page.element("text", ["class": "time", "x": "8", "y": "22"], text: "virtual time")
      for lane in lanes {
        let x = x(of: lane)
        let isTDI = if case .tdi = lane { true } else { false }
        page.open("g", ["class": "lane"])
        page.empty(
          "rect",
          [
            "x": "\(x - 75)", "y": "5", "width": "150", "height": "26", "rx": "5",
            "fill": isTDI ? "#fff8c5" : "#ddf4ff", "stroke": isTDI ? "#bf8700" : "#54aeff",
          ])
        page.element(
          "text", ["class": "lane-label", "x": "\(x)", "y": "22", "text-anchor": "middle"],
          text: lane.description)
        page.close("g")
      }
      page.close("svg")
    }

    private func draw(_ arrow: Arrow, centre y: Int, into page: inout Markup) {
      let first = arrow.first
      guard let from = first.from, let to = first.to else { return }
      let colour = Self.colour(of: first.kind)
      let dash = first.isRequest == false ? "6 4" : "none"
      let direction = first.isRequest.map { $0 ? "request" : "response" } ?? "message"
      let x1 = x(of: from)
      let x2 = x(of: to)

      var classes = "arrow \(direction) kind-\(first.kind.rawValue)"
      if arrow.count > 1 { classes += " collapsed" }
      page.open(
        "g",
        ["class": classes, "data-seq": "\(first.sequence)", "data-count": "\(arrow.count)"])
      page.element("title", text: tooltip(arrow))
      page.element(
        "text", ["class": "time", "x": "8", "y": "\(y + 4)"], text: HTMLReport.formatTime(first.time))

      var text = arrow.count > 1 ? "\(first.kind.rawValue) ×\(arrow.count): \(first.summary)" : first.summary
      if x1 == x2 {
        // A message to oneself: a loop to the right of the lifeline.
        page.empty(
          "path",
          [
            "d": "M \(x1) \(y - 6) h 28 v 12 h -20", "fill": "none", "stroke": colour, "stroke-width": "1.5",
            "stroke-dasharray": dash,
          ])
        head(at: x1, y + 6, pointing: -1, colour: colour, into: &page)
        let limit = min(options.maximumLabelLength, (Self.laneSpacing - 40) / Self.characterWidth)
        text = HTMLReport.label(text, limit: limit).text
        page.element("text", ["x": "\(x1 + 34)", "y": "\(y + 3)"], text: text)
      } else {
        let sense = x2 > x1 ? 1 : -1
        let start = arrow.returns ? x1 + 9 * sense : x1
        page.empty(
          "line",
          [
            "x1": "\(start)", "y1": "\(y)", "x2": "\(x2 - 9 * sense)", "y2": "\(y)", "stroke": colour,
            "stroke-width": "1.5", "stroke-dasharray": dash,
          ])
        head(at: x2, y, pointing: sense, colour: colour, into: &page)
        if arrow.returns { head(at: x1, y, pointing: -sense, colour: colour, into: &page) }
        let span = abs(x2 - x1)
        let limit = min(options.maximumLabelLength, max(12, (span - 12) / Self.characterWidth))
        text = HTMLReport.label(text, limit: limit).text
        page.element("text", ["x": "\((x1 + x2) / 2)", "y": "\(y - 5)", "text-anchor": "middle"], text: text)
      }
      page.close("g")
    }

    private func head(at x: Int, _ y: Int, pointing direction: Int, colour: String, into page: inout Markup) {
      let back = x - 9 * direction
      page.empty("polygon", ["points": "\(x),\(y) \(back),\(y - 4) \(back),\(y + 4)", "fill": colour])
    }

    private func tooltip(_ arrow: Arrow) -> String {
      let first = arrow.first
      let route = "\(first.from?.description ?? "?") → \(first.to?.description ?? "?")"
      let direction = first.isRequest.map { $0 ? "request" : "response" } ?? "message"
      if arrow.count == 1 {
        var text =
          "#\(first.sequence) at \(HTMLReport.formatTime(first.time)): \(first.kind.rawValue) \(direction) "
          + "\(route)\n\(first.summary)"
        if let bytes = first.bytes { text += "\n\(bytes.count) bytes" }
        return text
      }
      let last = arrow.last
      return
        "\(arrow.count) \(first.kind.rawValue) messages between \(first.from?.description ?? "?") and "
        + "\(first.to?.description ?? "?"), #\(first.sequence)–#\(last.sequence), "
        + "\(HTMLReport.formatTime(first.time)) – \(HTMLReport.formatTime(last.time))\n"
        + "first: \(first.summary)\nlast: \(last.summary)"
    }

    /// Arrow colour by record kind.
    static func colour(of kind: TraceRecord.Kind) -> String {
      switch kind {
      case .spdm: "#0969da"
      case .tdisp: "#8250df"
      case .idekm: "#1b7c83"
      case .doe: "#6e7781"
      case .tlp: "#bc4c00"
      case .fault: "#cf222e"
      case .dmaAPI, .memory: "#9a6700"
      default: "#424a53"
      }
    }
  }
}
