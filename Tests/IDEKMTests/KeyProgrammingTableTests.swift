import Foundation
import IDEKM
import Testing

/// One row of specs/idekm/key-programming.tsv (the format is described at the top of that file).
struct KeyProgrammingRow: Sendable, CustomTestStringConvertible {
  var id: String
  var steps: [[String]]
  var responses: String
  var finalState: String
  var source: String
  var testDescription: String { id }

  static let all: [KeyProgrammingRow] = {
    // Tests/IDEKMTests/KeyProgrammingTableTests.swift → three levels up is the repository root.
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { root.deleteLastPathComponent() }
    let url = root.appendingPathComponent("specs/idekm/key-programming.tsv")
    guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
      if line.hasPrefix("#") || line.allSatisfy(\.isWhitespace) { return nil }
      let columns = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
      guard columns.count == 5 else {
        return KeyProgrammingRow(
          id: "malformed: \(line)", steps: [], responses: "?", finalState: "", source: "")
      }
      let steps = columns[1].split(separator: ";").map { $0.split(separator: " ").map(String.init) }
        .filter { !$0.isEmpty }
      return KeyProgrammingRow(
        id: columns[0], steps: steps, responses: columns[2], finalState: columns[3], source: columns[4])
    }
  }()
}

struct TableError: Error, CustomStringConvertible {
  var description: String
}

/// Runs a row's steps against a fresh device (`makeResponder`), collecting one character per response.
struct KeyProgrammingRunner {
  var responder = makeResponder()
  var responses = ""
  var noSession = false

  mutating func run(_ steps: [[String]]) throws {
    for step in steps {
      let verb = step[0]
      var options: [String: String] = [:]
      var positional: [String] = []
      for word in step.dropFirst() {
        if let eq = word.firstIndex(of: "=") {
          options[String(word[..<eq])] = String(word[word.index(after: eq)...])
        } else {
          positional.append(word)
        }
      }
      func number(_ name: String, _ fallback: Int) throws -> Int {
        guard let text = options[name] else { return fallback }
        let value = text.hasPrefix("0x") ? Int(text.dropFirst(2), radix: 16) : Int(text)
        guard let value else { throw TableError(description: "bad \(name)=\(text)") }
        return value
      }
      let session = IDEKMSessionID(UInt32(try number("s", 1)))
      let stream = UInt8(try number("stream", 1))
      let port = UInt8(try number("port", 0))
      switch verb {
      case "nosession":
        noSession = true
      case "end":
        guard let id = positional.first.flatMap({ UInt32($0) }) else {
          throw TableError(description: "end N")
        }
        _ = responder.sessionEnded(IDEKMSessionID(id))
      case "prog", "go", "stop":
        guard positional.count == 3 else { throw TableError(description: "\(verb) SET DIR SUB") }
        var sub = try Self.subStream(positional)
        if let raw = options["raw"] {
          sub = IDEKeySubStream(rawValue: UInt8(try number("raw", Int(raw) ?? 0)))
        }
        try send(
          verb, sub, stream: stream, port: port, session: session, length: options["len"].flatMap { Int($0) })
      case "prog-all", "go-all", "stop-all":
        guard let set = positional.first.flatMap(Self.keySet) else {
          throw TableError(description: "\(verb) SET")
        }
        for slot in IDEKeySlotID.all(in: set) {
          try send(
            String(verb.dropLast(4)), slot.keySubStream, stream: stream, port: port, session: session,
            length: nil)
        }
      default:
        throw TableError(description: "unknown step \(verb)")
      }
    }
  }

  mutating func send(
    _ verb: String, _ sub: IDEKeySubStream, stream: UInt8, port: UInt8, session: IDEKMSessionID, length: Int?
  ) throws {
    var request: [UInt8]
    switch verb {
    case "prog":
      let seed = UInt8(truncatingIfNeeded: Int(sub.rawValue) &* 7 &+ Int(session.rawValue))
      request = IDEKMKeyProgram(streamID: stream, subStream: sub, portIndex: port, key: testKey(seed))
        .encode()
    case "go": request = IDEKMKeySetCommand.go(streamID: stream, subStream: sub, portIndex: port).encode()
    default: request = IDEKMKeySetCommand.stop(streamID: stream, subStream: sub, portIndex: port).encode()
    }
    if let length {
      request = Array(request.prefix(length)) + Array(repeating: 0, count: max(0, length - request.count))
    }
    let output = responder.respond(to: request, session: noSession ? nil : session)
    noSession = false
    guard let reply = output.response else {
      responses += "-"
      return
    }
    switch try IDEKMMessage(parsing: reply) {
    case .keyProgramAck(let ack): responses += String(ack.status.rawValue)
    case .keyGoStopAck: responses += "g"
    default: throw TableError(description: "unexpected response \(reply)")
    }
  }

  static func keySet(_ text: String) -> IDEKeySet? {
    switch text {
    case "k0": .k0
    case "k1": .k1
    default: nil
    }
  }

  static func subStream(_ words: [String]) throws -> IDEKeySubStream {
    guard let set = keySet(words[0]) else { throw TableError(description: "key set \(words[0])") }
    let direction: IDEDirection
    switch words[1] {
    case "rx": direction = .receive
    case "tx": direction = .transmit
    default: throw TableError(description: "direction \(words[1])")
    }
    let sub: IDESubStream
    switch words[2] {
    case "pr": sub = .posted
    case "npr": sub = .nonPosted
    case "cpl": sub = .completion
    default:
      guard let value = UInt8(words[2]), value < 16 else {
        throw TableError(description: "sub-stream \(words[2])")
      }
      sub = IDESubStream(rawValue: value)
    }
    return IDEKeySubStream(keySet: set, direction: direction, subStream: sub)
  }
}

@Suite struct KeyProgrammingTableTests {
  @Test(arguments: KeyProgrammingRow.all)
  func row(_ row: KeyProgrammingRow) throws {
    #expect(!row.id.hasPrefix("malformed"), "\(row.id)")
    #expect(row.source.contains("§6.33"), "every row cites PCIe §6.33")
    var runner = KeyProgrammingRunner()
    try runner.run(row.steps)
    #expect(runner.responses == row.responses, "\(row.id): \(row.source)")
    var stream: UInt8 = 1
    var expected = row.finalState
    if expected.hasPrefix("stream "), let colon = expected.firstIndex(of: ":") {
      stream = UInt8(expected[expected.index(expected.startIndex, offsetBy: 7)..<colon])!
      expected = expected[expected.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    #expect(runner.responder.ports[0].endpoint.state(of: stream).description == expected, "\(row.id)")
  }

  @Test func rowCount() {
    #expect(KeyProgrammingRow.all.count == 41)
    #expect(Set(KeyProgrammingRow.all.map(\.id)).count == KeyProgrammingRow.all.count)
  }
}
