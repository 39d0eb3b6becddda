import CoveScenario
import Foundation
import Testing

@Suite struct HTMLReportTests {
  static let hostile = #"<script>alert("x")</script> & 'q'"#
  static let long =
    "CHALLENGE_AUTH with a measurement summary hash of "
    + String(repeating: "ab", count: 64) + " and the end of the summary"

  /// A small run: boot, attest 03:00.1 over SPDM, lock two TDIs (TDISP and IDE_KM), start one, and a
  /// failing step where the second goes to ERROR with a hostile summary.
  static func sampleRun() -> (records: [TraceRecord], steps: [StepResult]) {
    let recorder = TraceRecorder()
    var steps: [StepResult] = []
    func step(_ description: String, _ outcome: StepResult.Outcome = .passed, _ body: () -> Void) {
      let index = steps.count
      recorder.currentStep = index
      let first = recorder.records.count
      recorder.add(TraceRecord(component: .runner, kind: .step, summary: description))
      body()
      steps.append(
        StepResult(
          index: index, description: description, outcome: outcome, firstRecord: first,
          endRecord: recorder.records.count))
    }
    func message(
      _ kind: TraceRecord.Kind, _ from: TraceRecord.Lane, _ to: TraceRecord.Lane, _ summary: String,
      request: Bool?, device: String? = nil
    ) {
      recorder.add(
        TraceRecord(
          component: .tsm, kind: kind, device: device, summary: summary, bytes: [0x10, 0x84, 0, 0],
          from: from,
          to: to, isRequest: request))
    }
    func state(_ device: String, _ before: String, _ after: String) {
      recorder.add(
        TraceRecord(
          component: .tdi, kind: .state, device: device, summary: "\(device): \(before) → \(after)",
          before: before, after: after))
    }

    recorder.add(TraceRecord(component: .vmm, kind: .event, summary: "platform up (before any step)"))
    step("boot guest") {
      recorder.add(TraceRecord(component: .guest, kind: .driver, summary: "bound cove-nic to 03:00.1"))
    }
    step("attest 03:00.1") {
      message(.spdm, .tsm, .dsm, "GET_VERSION", request: true)
      message(.spdm, .dsm, .tsm, "VERSION 1.2 1.3", request: false)
      message(.spdm, .tsm, .dsm, long, request: true)
      message(.spdm, .dsm, .tsm, "CHALLENGE_AUTH", request: false)
    }
    step("lock 03:00.1 and 03:00.2") {
      message(.idekm, .tsm, .dsm, "KEY_PROG stream 0", request: true)
      message(.idekm, .dsm, .tsm, "KP_ACK", request: false)
      message(.tdisp, .tsm, .tdi("03:00.1"), "LOCK_INTERFACE_REQUEST", request: true, device: "03:00.1")
      state("03:00.1", "CONFIG_UNLOCKED", "CONFIG_LOCKED")
      message(.tdisp, .tdi("03:00.1"), .tsm, "LOCK_INTERFACE_RESPONSE", request: false, device: "03:00.1")
      message(.tdisp, .tsm, .tdi("03:00.2"), "LOCK_INTERFACE_REQUEST", request: true, device: "03:00.2")
      state("03:00.2", "CONFIG_UNLOCKED", "CONFIG_LOCKED")
      message(.tdisp, .tdi("03:00.2"), .tsm, "LOCK_INTERFACE_RESPONSE", request: false, device: "03:00.2")
    }
    step("start 03:00.1") {
      message(.event, .host, .tsm, "VMM asks for START", request: nil)
      message(.tdisp, .guest, .tsm, "accept 03:00.1", request: true, device: "03:00.1")
      message(.tdisp, .tsm, .tdi("03:00.1"), "START_INTERFACE_REQUEST", request: true, device: "03:00.1")
      state("03:00.1", "CONFIG_LOCKED", "RUN")
      message(.tdisp, .tdi("03:00.1"), .tsm, "START_INTERFACE_RESPONSE", request: false, device: "03:00.1")
      message(.event, .tsm, .tsm, "TSM bookkeeping", request: nil)
    }
    step(
      "DMA from 03:00.2 before RUN is blocked",
      .failed(expected: "blocked <fault> \"UR\"", actual: "allowed & written 'ok' <done>")
    ) {
      message(.tlp, .tdi("03:00.2"), .iommu, hostile, request: nil, device: "03:00.2")
      recorder.add(
        TraceRecord(
          component: .iommu, kind: .fault, device: "03:00.2", summary: hostile, before: "<tlp>", after: "&"))
      state("03:00.2", "CONFIG_LOCKED", "ERROR")
      recorder.add(
        TraceRecord(
          component: .runner, kind: .expectation, summary: "expect blocked", before: "blocked",
          after: "allowed"))
    }
    recorder.currentStep = nil
    recorder.add(TraceRecord(component: .vmm, kind: .event, summary: "teardown (after the steps)"))
    return (recorder.records, steps)
  }

  static func render(
    _ run: (records: [TraceRecord], steps: [StepResult]), options: HTMLReport.Options = .init()
  )
    -> String
  {
    HTMLReport.render(
      title: "Cove run <report>", image: "default & \"quoted\"", seed: 42, records: run.records,
      steps: run.steps,
      options: options)
  }

  @Test func thePageIsWellFormedAndEscapesEveryPieceOfRunData() throws {
    let page = Self.render(Self.sampleRun())
    let parsed = try PageChecker.parse(page)
    #expect(parsed.problems == [])
    #expect(!page.contains("<script"), "a summary's markup must never reach the page as markup")
    #expect(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"))
    #expect(page.hasPrefix("<!DOCTYPE html>"))
    // Self-contained: no scripts, nothing loaded, and a policy that forbids it.
    #expect(parsed.elements.allSatisfy { !["script", "link", "img", "iframe", "object"].contains($0.name) })
    let withoutNamespaces = page.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
    #expect(!withoutNamespaces.contains("://"), "no URL but the SVG namespace")
    #expect(page.contains("default-src 'none'"))
    for tag in ["svg", "table", "details", "g", "tr"] {
      #expect(parsed.elements.contains { $0.name == tag }, "the page has a \(tag)")
    }
    #expect(parsed.text(of: "h1") == "Cove run <report>")
    #expect(parsed.elements.contains { $0.name == "dd" && $0.text == "default & \"quoted\"" })
    #expect(parsed.elements.contains { $0.name == "dd" && $0.text == "42 (0x2a)" })
    #expect(
      parsed.elements.contains { $0.name == "span" && $0.text == "FAILED" && $0.classes.contains("fail") })
  }

  @Test func theSequenceDiagramHasOneArrowPerMessageInItsLanes() throws {
    let run = Self.sampleRun()
    let parsed = try PageChecker.parse(Self.render(run))
    let messages = run.records.filter { $0.from != nil && $0.to != nil }
    #expect(messages.count == 16)
    let arrows = parsed.elements.filter {
      $0.name == "g" && $0.classes.contains("arrow") && $0.inside("svg#sequence-diagram")
    }
    #expect(arrows.count == messages.count)
    #expect(arrows.map { $0.attributes["data-seq"] } == messages.map { "\($0.sequence)" })
    #expect(arrows.allSatisfy { $0.attributes["data-count"] == "1" && !$0.classes.contains("collapsed") })

    // Requests solid, responses dashed.
    let lines = parsed.elements.filter { $0.name == "line" && $0.inside("g.arrow") }
    let requestLines = lines.filter { $0.inside("g.request") }
    let responseLines = lines.filter { $0.inside("g.response") }
    #expect(requestLines.count == messages.count { $0.isRequest == true })
    #expect(responseLines.count == messages.count { $0.isRequest == false })
    #expect(requestLines.allSatisfy { $0.attributes["stroke-dasharray"] == "none" })
    #expect(responseLines.allSatisfy { $0.attributes["stroke-dasharray"] != "none" })

    // Lanes in order: TSM, DSM, the TDIs, guest, IOMMU, host (a message came from the host).
    let lanes = parsed.elements.filter {
      $0.name == "text" && $0.inside("svg#sequence-lanes") && $0.inside("g.lane")
    }
    #expect(lanes.map(\.text) == ["TSM", "DSM", "TDI 03:00.1", "TDI 03:00.2", "guest", "IOMMU", "host"])

    // Bands per step, labelled, the failed one marked.
    let bands = parsed.elements.filter { $0.name == "g" && $0.classes.contains("step-band") }
    #expect(bands.map { $0.attributes["data-step"] } == ["1", "2", "3", "4"])
    #expect(bands.filter { $0.classes.contains("failed") }.map { $0.attributes["data-step"] } == ["4"])
    #expect(bands[3].text.hasPrefix("step 5: DMA from 03:00.2 before RUN is blocked — FAILED"))

    // Long summaries are cut on the arrow, whole in its tooltip; the hostile one arrives intact.
    let longArrow = try #require(arrows.first { $0.text.contains("CHALLENGE_AUTH with") })
    let label = try #require(
      parsed.elements.first {
        $0.name == "text" && $0.parent == longArrow.index && !$0.classes.contains("time")
      })
    #expect(label.text.hasSuffix("…") && label.text.count <= HTMLReport.Options().maximumLabelLength)
    #expect(
      parsed.elements.contains {
        $0.name == "title" && $0.parent == longArrow.index && $0.text.contains(Self.long)
      })
    #expect(
      parsed.elements.contains {
        $0.name == "title" && $0.inside("g.arrow") && $0.text.contains(Self.hostile)
      })
  }

  @Test func theStateTimelineHasOneSegmentPerIntervalInTheStatesColours() throws {
    let parsed = try PageChecker.parse(Self.render(Self.sampleRun()))
    let rows = parsed.elements.filter {
      $0.name == "g" && $0.classes.contains("tdi-row") && $0.inside("svg#state-timeline")
    }
    #expect(rows.map { $0.attributes["data-tdi"] } == ["03:00.1", "03:00.2"])
    let colours = [
      "CONFIG_UNLOCKED": "#8c959f", "CONFIG_LOCKED": "#d4a72c", "RUN": "#2da44e", "ERROR": "#cf222e",
    ]
    let expected = [
      "03:00.1": ["CONFIG_UNLOCKED", "CONFIG_LOCKED", "RUN"],
      "03:00.2": ["CONFIG_UNLOCKED", "CONFIG_LOCKED", "ERROR"],
    ]
    var previousEnd = 0
    for row in rows {
      let segments = parsed.elements.filter {
        $0.name == "rect" && $0.classes.contains("segment") && $0.inside(row.index)
      }
      let states = try #require(expected[row.attributes["data-tdi"] ?? ""])
      #expect(segments.count == states.count)
      #expect(segments.map { $0.attributes["fill"] } == states.map { colours[$0] })
      for (segment, state) in zip(segments, states) {
        #expect(parsed.tooltip(of: segment)?.contains(": \(state) from ") == true)
      }
      // Segments follow each other left to right without gaps.
      previousEnd = 0
      for segment in segments {
        let x = Int(segment.attributes["x"] ?? "") ?? -1
        let width = Int(segment.attributes["width"] ?? "") ?? -1
        if previousEnd != 0 { #expect(x == previousEnd) }
        previousEnd = x + width
      }
    }
    // The legend names the four TDISP states.
    let legend = parsed.elements.filter { $0.name == "span" && $0.classes.contains("legend-state") }.map(
      \.text)
    #expect(legend == ["CONFIG_UNLOCKED", "CONFIG_LOCKED", "RUN", "ERROR"])
  }

  @Test func theStepTableShowsTheFailureEscapedAndEachStepsRecords() throws {
    let run = Self.sampleRun()
    let parsed = try PageChecker.parse(Self.render(run))
    let rows = parsed.elements.filter {
      $0.name == "tr" && $0.inside("table.step-results") && $0.inside("tbody")
    }
    #expect(rows.count == 5)
    #expect(rows.filter { $0.classes.contains("failed") }.count == 1)
    let expected = try #require(parsed.elements.first { $0.name == "td" && $0.classes.contains("expected") })
    let actual = try #require(parsed.elements.first { $0.name == "td" && $0.classes.contains("actual") })
    #expect(expected.text == "blocked <fault> \"UR\"")
    #expect(actual.text == "allowed & written 'ok' <done>")
    let page = Self.render(run)
    #expect(page.contains("blocked &lt;fault&gt; &quot;UR&quot;"))
    #expect(page.contains("allowed &amp; written &#39;ok&#39; &lt;done&gt;"))

    // One <details> per step, the failed one open, plus the records outside any step.
    let details = parsed.elements.filter { $0.name == "details" }
    #expect(
      details.map { $0.attributes["id"] } == [
        "step-0", "step-1", "step-2", "step-3", "step-4", "outside-steps",
      ])
    #expect(details.filter { $0.attributes["open"] != nil }.map { $0.attributes["id"] } == ["step-4"])
    // Every record is listed exactly once.
    let listed = parsed.elements.filter { $0.name == "tr" && $0.classes.contains("record") }
    #expect(listed.count == run.records.count)
    for (step, element) in zip(run.steps, details) {
      let mine = listed.filter { $0.inside(element.index) }
      #expect(mine.count == step.endRecord - step.firstRecord)
    }
    let failedRecords = listed.filter { $0.inside(details[4].index) }
    #expect(failedRecords.contains { $0.text.contains(Self.hostile) && $0.text.contains("<tlp> → &") })
  }

  @Test func renderingIsDeterministic() {
    let first = Self.render(Self.sampleRun())
    let second = Self.render(Self.sampleRun())
    #expect(first == second)
    #expect(Array(first.utf8) == Array(second.utf8))
  }

  /// Thousands of messages: runs of one kind between the same lanes in a step become one arrow "×N".
  static func longRun(pairs: Int) -> (records: [TraceRecord], steps: [StepResult]) {
    let recorder = TraceRecorder()
    recorder.currentStep = 0
    recorder.add(TraceRecord(component: .runner, kind: .step, summary: "DMA storm"))
    for index in 0..<pairs {
      recorder.add(
        TraceRecord(
          component: .iommu, kind: .tlp, device: "03:00.1",
          summary: "MemWr 0x\(String(index * 64, radix: 16))",
          from: .tdi("03:00.1"), to: .iommu, isRequest: true))
      recorder.add(
        TraceRecord(
          component: .iommu, kind: .tlp, device: "03:00.1", summary: "allowed", from: .iommu,
          to: .tdi("03:00.1"),
          isRequest: false))
    }
    recorder.add(
      TraceRecord(
        component: .tdi, kind: .state, device: "03:00.1", summary: "stop", before: "RUN",
        after: "CONFIG_UNLOCKED"))
    let middle = recorder.records.count
    recorder.currentStep = 1
    recorder.add(TraceRecord(component: .runner, kind: .step, summary: "re-attest"))
    for index in 0..<10 {
      recorder.add(
        TraceRecord(
          component: .tsm, kind: .spdm, summary: "message \(index)", from: index % 2 == 0 ? .tsm : .dsm,
          to: index % 2 == 0 ? .dsm : .tsm, isRequest: index % 2 == 0))
    }
    return (
      recorder.records,
      [
        StepResult(index: 0, description: "DMA storm", outcome: .passed, firstRecord: 0, endRecord: middle),
        StepResult(
          index: 1, description: "re-attest", outcome: .passed, firstRecord: middle,
          endRecord: recorder.records.count),
      ]
    )
  }

  @Test func longRunsCollapseConsecutiveMessagesOfOneKind() throws {
    let run = Self.longRun(pairs: 2_500)
    let page = Self.render(run)
    let parsed = try PageChecker.parse(page)
    #expect(parsed.problems == [])
    let arrows = parsed.elements.filter { $0.name == "g" && $0.classes.contains("arrow") }
    #expect(arrows.count == 2)
    #expect(arrows.map { $0.attributes["data-count"] } == ["5000", "10"])
    #expect(arrows.allSatisfy { $0.classes.contains("collapsed") })
    #expect(arrows[0].text.contains("tlp ×5000"))
    // Both directions went through the first run: a head at each end.
    #expect(parsed.elements.filter { $0.name == "polygon" && $0.inside(arrows[0].index) }.count == 2)
    // Under the threshold nothing collapses.
    let small = try PageChecker.parse(Self.render(Self.longRun(pairs: 100)))
    #expect(small.elements.filter { $0.name == "g" && $0.classes.contains("arrow") }.count == 210)
  }

  @Test func arrowsBeyondTheCapAreCountedNotDrawn() throws {
    let run = Self.longRun(pairs: 300)
    let parsed = try PageChecker.parse(
      Self.render(run, options: HTMLReport.Options(collapseAbove: 10_000, maximumArrows: 100)))
    let arrows = parsed.elements.filter { $0.name == "g" && $0.classes.contains("arrow") }
    #expect(arrows.count == 100)
    #expect(
      parsed.elements.contains { $0.name == "text" && $0.text.hasPrefix("… 510 more messages not drawn") })
    // The step tables still list every record.
    #expect(
      parsed.elements.filter { $0.name == "tr" && $0.classes.contains("record") }.count == run.records.count)
  }

  @Test func aRunWithoutMessagesOrStatesSaysSo() throws {
    let parsed = try PageChecker.parse(
      HTMLReport.render(title: "empty", image: "none", seed: 0, records: [], steps: []))
    #expect(parsed.problems == [])
    #expect(parsed.elements.contains { $0.name == "svg" && $0.attributes["id"] == "sequence-diagram" })
    #expect(parsed.elements.contains { $0.name == "svg" && $0.attributes["id"] == "state-timeline" })
    #expect(parsed.elements.contains { $0.text == "No messages were recorded." })
    #expect(parsed.elements.contains { $0.text == "No TDI was seen in this run." })
    #expect(parsed.elements.contains { $0.name == "span" && $0.text == "NO STEPS" })
  }

  /// The checker the tests lean on does catch what it claims to.
  @Test func theCheckerFindsUnbalancedTagsAndRawMarkup() throws {
    #expect(
      try PageChecker.parse("<svg><g><rect x=\"1\"/></g></svg><table><tr><td>a</td></tr></table>").problems
        == [])
    #expect(try PageChecker.parse("<svg><g></svg>").problems.count >= 1)
    #expect(try PageChecker.parse("<details><summary>x</summary>").problems.count == 1)
    #expect(try PageChecker.parse("<p>1 < 2</p>").problems == ["raw < at byte 5"])
    #expect(try PageChecker.parse("<p>a & b</p>").problems.count == 1)
    #expect(try PageChecker.parse("<p title=\"<b>\">x</p>").problems.count >= 1)
    #expect(try PageChecker.parse("<p>a &amp; &lt;b&gt; &#39;</p>").elements.first?.text == "a & <b> '")
  }

  /// With COVE_HTML_REPORT_EXAMPLE_DIR set, writes example.html (the sample run) and example-long.html
  /// (a collapsed long run) there, for `REPORT=… make check-report` to load in Chromium.
  @Test func writesExamplesWhenAsked() throws {
    guard let directory = ProcessInfo.processInfo.environment["COVE_HTML_REPORT_EXAMPLE_DIR"] else { return }
    try Self.render(Self.sampleRun()).write(
      toFile: directory + "/example.html", atomically: true, encoding: .utf8)
    try Self.render(Self.longRun(pairs: 2_500)).write(
      toFile: directory + "/example-long.html", atomically: true, encoding: .utf8)
  }
}

/// A tiny checker for the generated page: a tokenizer that balances every non-void element, insists
/// that `<` only opens a tag, `>` only closes one and `&` only starts a character reference, and keeps
/// each element's attributes, decoded text and parent, so tests can ask what is where.
struct PageChecker {
  struct Element {
    var index: Int
    var name: String
    var attributes: [String: String]
    var parent: Int?
    /// Selectors of the element and its ancestors, innermost first ("g.arrow", "svg#sequence-diagram").
    var path: [String]
    var ancestors: [Int]
    var text = ""

    var classes: [String] { (attributes["class"] ?? "").split(separator: " ").map(String.init) }
    func inside(_ selector: String) -> Bool { path.contains(selector) }
    func inside(_ ancestor: Int) -> Bool { ancestors.contains(ancestor) }
  }

  struct Malformed: Error {
    var problems: [String]
  }

  var elements: [Element] = []
  var problems: [String] = []

  func text(of name: String) -> String? { elements.first { $0.name == name }?.text }
  func tooltip(of element: Element) -> String? {
    elements.first { $0.name == "title" && $0.parent == element.index }?.text
  }

  static let void: Set<String> = ["meta", "link", "br", "hr", "img", "input", "wbr", "col", "source"]

  static func parse(_ page: String) throws -> PageChecker {
    var checker = PageChecker()
    let bytes = Array(page.utf8)
    var open: [Int] = []
    var i = 0
    var pendingText: [UInt8] = []

    func isNameByte(_ byte: UInt8) -> Bool {
      (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
        || byte == 0x2D || byte == 0x3A || byte == 0x5F
    }
    func flushText(_ checker: inout PageChecker) {
      guard !pendingText.isEmpty else { return }
      let decoded = decode(pendingText, &checker)
      for index in open { checker.elements[index].text += decoded }
      pendingText = []
    }

    while i < bytes.count {
      let byte = bytes[i]
      if byte == UInt8(ascii: "<") {
        flushText(&checker)
        if bytes[i...].starts(with: Array("<!DOCTYPE".utf8)) || bytes[i...].starts(with: Array("<!--".utf8)) {
          while i < bytes.count && bytes[i] != UInt8(ascii: ">") { i += 1 }
          i += 1
          continue
        }
        var j = i + 1
        let closing = j < bytes.count && bytes[j] == UInt8(ascii: "/")
        if closing { j += 1 }
        let nameStart = j
        while j < bytes.count && isNameByte(bytes[j]) { j += 1 }
        guard j > nameStart, (bytes[nameStart] | 0x20) >= 0x61, (bytes[nameStart] | 0x20) <= 0x7A else {
          checker.problems.append("raw < at byte \(i)")
          i += 1
          continue
        }
        let name = String(decoding: bytes[nameStart..<j], as: UTF8.self)
        if closing {
          guard j < bytes.count, bytes[j] == UInt8(ascii: ">") else {
            checker.problems.append("bad closing tag </\(name) at byte \(i)")
            i = j
            continue
          }
          if let top = open.last, checker.elements[top].name == name {
            open.removeLast()
          } else {
            checker.problems.append(
              "</\(name)> at byte \(i) closes \(open.last.map { checker.elements[$0].name } ?? "nothing")")
          }
          i = j + 1
          continue
        }
        // Attributes: name, or name="value" with no < or " inside the value.
        var attributes: [String: String] = [:]
        var selfClosing = false
        while true {
          while j < bytes.count && bytes[j] == UInt8(ascii: " ") || j < bytes.count && bytes[j] == 0x0A {
            j += 1
          }
          guard j < bytes.count else {
            checker.problems.append("unterminated <\(name)")
            break
          }
          if bytes[j] == UInt8(ascii: ">") {
            j += 1
            break
          }
          if bytes[j] == UInt8(ascii: "/"), j + 1 < bytes.count, bytes[j + 1] == UInt8(ascii: ">") {
            selfClosing = true
            j += 2
            break
          }
          let attributeStart = j
          while j < bytes.count && isNameByte(bytes[j]) { j += 1 }
          guard j > attributeStart else {
            checker.problems.append("junk in <\(name)> at byte \(j)")
            j += 1
            continue
          }
          let attribute = String(decoding: bytes[attributeStart..<j], as: UTF8.self)
          var value = ""
          if j < bytes.count, bytes[j] == UInt8(ascii: "=") {
            guard j + 1 < bytes.count, bytes[j + 1] == UInt8(ascii: "\"") else {
              checker.problems.append("unquoted \(attribute) in <\(name)>")
              j += 1
              continue
            }
            var k = j + 2
            while k < bytes.count && bytes[k] != UInt8(ascii: "\"") {
              if bytes[k] == UInt8(ascii: "<") {
                checker.problems.append("raw < in \(attribute) of <\(name)>")
              }
              k += 1
            }
            value = decode(Array(bytes[(j + 2)..<k]), &checker)
            j = k + 1
          }
          if attributes[attribute] != nil { checker.problems.append("\(attribute) twice in <\(name)>") }
          attributes[attribute] = value
        }
        let ownPath =
          [name] + (attributes["id"].map { [name + "#" + $0] } ?? [])
          + (attributes["class"] ?? "").split(separator: " ").map { name + "." + $0 }
        let parentPath = open.last.map { checker.elements[$0].path } ?? []
        let element = Element(
          index: checker.elements.count, name: name, attributes: attributes, parent: open.last,
          path: ownPath + parentPath, ancestors: open)
        checker.elements.append(element)
        if name == "style" {
          // Raw text up to </style>.
          let end = Array("</style>".utf8)
          while j < bytes.count && !bytes[j...].starts(with: end) { j += 1 }
          j += end.count
        } else if !selfClosing && !void.contains(name) {
          open.append(element.index)
        }
        i = j
        continue
      }
      if byte == UInt8(ascii: ">") { checker.problems.append("raw > at byte \(i)") }
      pendingText.append(byte)
      i += 1
    }
    flushText(&checker)
    if !open.isEmpty { checker.problems.append("unclosed: \(open.map { checker.elements[$0].name })") }
    if !checker.problems.isEmpty && checker.elements.isEmpty { throw Malformed(problems: checker.problems) }
    return checker
  }

  /// Decodes character references, recording a bare `&` as a problem.
  static func decode(_ bytes: [UInt8], _ checker: inout PageChecker) -> String {
    let named = ["amp": "&", "lt": "<", "gt": ">", "quot": "\"", "#39": "'"]
    var out = ""
    var i = 0
    var run: [UInt8] = []
    while i < bytes.count {
      if bytes[i] == UInt8(ascii: "&") {
        out += String(decoding: run, as: UTF8.self)
        run = []
        guard let semicolon = bytes[i...].firstIndex(of: UInt8(ascii: ";")), semicolon - i <= 8,
          let replacement = named[String(decoding: bytes[(i + 1)..<semicolon], as: UTF8.self)]
        else {
          checker.problems.append("bare & in \(String(decoding: bytes, as: UTF8.self).prefix(40))")
          out += "&"
          i += 1
          continue
        }
        out += replacement
        i = semicolon + 1
      } else {
        run.append(bytes[i])
        i += 1
      }
    }
    return out + String(decoding: run, as: UTF8.self)
  }
}
