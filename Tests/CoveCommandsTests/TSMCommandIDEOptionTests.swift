import ArgumentParser
import CoveCommands
import Testing

/// `cove tsm --ide required|off`: parsing and validation.
@Suite struct TSMCommandIDEOptionTests {
  @Test func ideDefaultsToRequired() throws {
    let command = try TSMCommand.parse(["--connect", "127.0.0.1:2398"])
    #expect(command.ide == "required")
  }

  @Test func ideOffParses() throws {
    let command = try TSMCommand.parse([
      "--connect", "127.0.0.1:2398", "--transport", "doe", "--ide", "off", "--dsm", "00:00.0", "--interface",
      "00:00.0",
    ])
    #expect(command.ide == "off")
    #expect(command.dsm == "00:00.0" && command.interface == "00:00.0")
  }

  @Test func anotherIDEValueIsAUsageError() {
    #expect(throws: (any Error).self) {
      try TSMCommand.parse(["--connect", "127.0.0.1:2398", "--ide", "maybe"])
    }
    #expect(
      TSMCommand.message(for: ValidationError("--ide must be required or off, not 'maybe'")).contains("--ide")
    )
    do {
      _ = try TSMCommand.parse(["--connect", "127.0.0.1:2398", "--ide", "maybe"])
      Issue.record("--ide maybe parsed")
    } catch {
      #expect(TSMCommand.message(for: error) == "--ide must be required or off, not 'maybe'")
    }
  }
}
