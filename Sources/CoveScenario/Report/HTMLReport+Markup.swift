/// The report's writer: elements and attributes in the order written (`KeyValuePairs`, never a
/// dictionary, so the bytes are the same every run), every piece of text escaped on the way in.
struct Markup {
  private(set) var text = ""

  init() {
    text.reserveCapacity(1 << 16)
  }

  /// Markup written by the report itself (never run data).
  mutating func raw(_ markup: String) {
    text += markup
  }

  /// Run data as text or attribute content.
  mutating func escaped(_ content: String) {
    text += HTMLReport.escape(content)
  }

  mutating func open(_ tag: String, _ attributes: KeyValuePairs<String, String> = [:]) {
    text += "<" + tag
    appendAttributes(attributes)
    text += ">"
  }

  mutating func close(_ tag: String) {
    text += "</" + tag + ">\n"
  }

  /// `<tag …>text</tag>`.
  mutating func element(
    _ tag: String, _ attributes: KeyValuePairs<String, String> = [:], text content: String
  ) {
    open(tag, attributes)
    escaped(content)
    text += "</" + tag + ">"
    if !Self.inline.contains(tag) { text += "\n" }
  }

  /// `<tag …/>` — SVG shapes only (HTML has no self-closing elements besides the void ones).
  mutating func empty(_ tag: String, _ attributes: KeyValuePairs<String, String>) {
    text += "<" + tag
    appendAttributes(attributes)
    text += "/>"
  }

  /// An SVG shape with a tooltip: `<tag …><title>tooltip</title></tag>`.
  mutating func shape(_ tag: String, _ attributes: KeyValuePairs<String, String>, tooltip: String) {
    open(tag, attributes)
    element("title", text: tooltip)
    text += "</" + tag + ">"
  }

  private mutating func appendAttributes(_ attributes: KeyValuePairs<String, String>) {
    for (name, value) in attributes {
      text += " " + name + "=\"" + HTMLReport.escape(value) + "\""
    }
  }

  private static let inline: Set<String> = [
    "span", "a", "title", "text", "tspan", "code", "td", "th", "dt", "dd",
  ]
}

extension HTMLReport {
  /// Text safe in HTML and SVG content and in double- or single-quoted attributes: `& < > " '` become
  /// character references; C0 controls other than tab, line feed and carriage return (not allowed in
  /// HTML text, HTML §13.2.5) become U+FFFD.
  static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
      case let c where c.value < 0x20 || c.value == 0x7F: out += "\u{FFFD}"
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out
  }

  /// One line of at most `limit` characters (grapheme clusters): runs of white space become one space,
  /// and a longer text is cut, ending in "…". `truncated` says whether anything was cut.
  static func label(_ text: String, limit: Int) -> (text: String, truncated: Bool) {
    var line = ""
    var lastWasSpace = false
    for character in text {
      if character.isWhitespace {
        if !lastWasSpace && !line.isEmpty { line.append(" ") }
        lastWasSpace = true
      } else {
        line.append(character)
        lastWasSpace = false
      }
    }
    while line.last == " " { line.removeLast() }
    guard line.count > limit else { return (line, false) }
    return (String(line.prefix(max(1, limit - 1))) + "…", true)
  }

  /// Virtual time for people: "850 ns", "12.345 µs", "1.500 ms", "2.000 s" (integer arithmetic, so
  /// the same on every machine). `trimmed` drops trailing zeros for axis labels ("100 µs", "1.5 ms").
  static func formatTime(_ nanoseconds: UInt64, trimmed: Bool = false) -> String {
    func scaled(_ unit: UInt64, _ suffix: String) -> String {
      let whole = nanoseconds / unit
      let fraction = (nanoseconds % unit) * 1000 / unit
      var digits = String(fraction)
      digits = String(repeating: "0", count: 3 - digits.count) + digits
      if trimmed {
        while digits.last == "0" { digits.removeLast() }
      }
      return "\(whole)" + (digits.isEmpty ? "" : "." + digits) + " " + suffix
    }
    switch nanoseconds {
    case ..<1_000: return "\(nanoseconds) ns"
    case ..<1_000_000: return scaled(1_000, "µs")
    case ..<1_000_000_000: return scaled(1_000_000, "ms")
    default: return scaled(1_000_000_000, "s")
    }
  }
}
