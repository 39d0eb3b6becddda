import HostPlatform
import PCIe
import SPDM
import Testing

/// The fault-injecting DOE link on its own, in front of a device that answers every request with
/// the request's payload with the request bit of the code cleared (a response code) and 0xAA
/// appended: exactly which objects arrive, in which order, altered how.
@Suite struct DOEFaultInjectorTests {
  final class Log {
    var delivered: [[UInt8]] = []
    var resets = 0
  }

  struct EchoDevice: TSMTransport, DOEObjectExchange {
    let log: Log
    mutating func exchange(object: DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject {
      log.delivered.append(object.payload)
      var payload = object.payload
      if payload.count > 1 { payload[1] &= 0x7F }
      return DOEDataObject(protocol: .spdm, payload: payload + [0xAA, 0, 0, 0])
    }
    mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError) -> SPDMTransportMessage
    {
      try SPDMTransportMessage(doeResponse: try exchange(object: DOEDataObject(carrying: message)))
    }
    mutating func reset() { log.resets += 1 }
    mutating func discoverProtocols() throws(SPDMRequesterError) -> [DOEProtocol] { [] }
  }

  typealias Link = FaultInjectingDOETransport<EchoDevice>

  func link(_ rules: DOEFaultRule...) -> (Link, Log, DOEFaultInjector) {
    let log = Log()
    let injector = DOEFaultInjector()
    for rule in rules { injector.add(rule) }
    return (Link(inner: EchoDevice(log: log), injector: injector), log, injector)
  }

  /// A plain SPDM object whose payload is [0x12, code, marker, 0] (one DW).
  func object(_ code: UInt8, _ marker: UInt8) -> DOEDataObject {
    DOEDataObject(protocol: .spdm, payload: [0x12, code, marker, 0])
  }

  func echo(_ code: UInt8, _ marker: UInt8) -> [UInt8] { [0x12, code & 0x7F, marker, 0, 0xAA, 0, 0, 0] }

  static let timeout = SPDMRequesterError.timeout("DOE: no response within 1 s (PCIe 6.x §6.30.2)")

  @Test func withoutRulesEveryObjectPassesUnchanged() throws {
    var (link, log, injector) = link()
    #expect(try link.exchange(object: object(0x84, 1)).payload == echo(0x84, 1))
    #expect(log.delivered == [[0x12, 0x84, 1, 0]])
    #expect(injector.fired.isEmpty && injector.elapsedMicroseconds == 0)
  }

  @Test func dropLosesTheObjectAndCostsATimeout() throws {
    var (link, log, injector) = link(DOEFaultRule(.drop, .request))
    #expect(throws: Self.timeout) { try link.exchange(object: object(0x84, 1)) }
    #expect(log.delivered.isEmpty)
    #expect(injector.elapsedMicroseconds == 1_000_000)
    #expect(try link.exchange(object: object(0x84, 2)).payload == echo(0x84, 2))
  }

  @Test func corruptFlipsOneByteAndClampsTheOffset() throws {
    var (link, log, _) = link(
      DOEFaultRule(.corrupt(offset: 2, mask: 0x0F), .request, occurrence: .nth(1)),
      DOEFaultRule(.corrupt(offset: 99, mask: 0xFF), .request, occurrence: .nth(2)))
    _ = try link.exchange(object: object(0x84, 0x10))
    _ = try link.exchange(object: object(0x84, 0x10))
    #expect(log.delivered == [[0x12, 0x84, 0x1F, 0], [0x12, 0x84, 0x10, 0xFF]])
  }

  @Test func truncateKeepsAPrefixPaddedToADW() throws {
    var (link, log, _) = link(DOEFaultRule(.truncate(bytes: 2), .request))
    _ = try link.exchange(object: object(0x84, 1))
    #expect(log.delivered == [[0x12, 0x84, 0, 0]])
  }

  @Test func duplicateLeavesAStaleAnswerForTheNextExchange() throws {
    var (link, log, _) = link(DOEFaultRule(.duplicate, .request))
    #expect(try link.exchange(object: object(0x84, 1)).payload == echo(0x84, 1))
    #expect(try link.exchange(object: object(0xE1, 2)).payload == echo(0x84, 1))
    #expect(try link.exchange(object: object(0xE3, 3)).payload == echo(0xE1, 2))
    #expect(log.delivered.count == 4)
  }

  @Test func replayPicksAnEarlierObjectTheRuleSelects() throws {
    var (link, log, _) = link(
      DOEFaultRule(.replay(back: 2), .request, .spdm(code: 0x84), occurrence: .nth(3)))
    _ = try link.exchange(object: object(0x84, 1))
    _ = try link.exchange(object: object(0xE1, 2))
    _ = try link.exchange(object: object(0x84, 3))
    // The third GET_VERSION is replaced by the one two GET_VERSIONs back (marker 1).
    #expect(try link.exchange(object: object(0x84, 4)).payload == echo(0x84, 1))
    #expect(log.delivered.last == [0x12, 0x84, 1, 0])
  }

  @Test func replayWithNoEarlierObjectChangesNothing() throws {
    var (link, log, injector) = link(DOEFaultRule(.replay(back: 1), .request))
    _ = try link.exchange(object: object(0x84, 1))
    #expect(log.delivered == [[0x12, 0x84, 1, 0]])
    #expect(injector.fired.isEmpty)
  }

  @Test func delayWithinTheTimeoutOnlyMovesTheClock() throws {
    var (link, _, injector) = link(DOEFaultRule(.delay(microseconds: 999_999), .response))
    #expect(try link.exchange(object: object(0x84, 1)).payload == echo(0x84, 1))
    #expect(injector.elapsedMicroseconds == 999_999)
  }

  @Test func lateRequestArrivesAheadOfTheNextOne() throws {
    var (link, log, _) = link(DOEFaultRule(.delay(microseconds: 1_000_000), .request))
    #expect(throws: Self.timeout) { try link.exchange(object: object(0x84, 1)) }
    #expect(log.delivered.isEmpty)
    // Marker 1 reaches the device first, so its answer is what this exchange reads.
    #expect(try link.exchange(object: object(0xE1, 2)).payload == echo(0x84, 1))
    #expect(log.delivered == [[0x12, 0x84, 1, 0], [0x12, 0xE1, 2, 0]])
  }

  @Test func reorderedRequestArrivesAfterTheNextOne() throws {
    var (link, log, _) = link(DOEFaultRule(.reorder, .request))
    #expect(throws: Self.timeout) { try link.exchange(object: object(0x84, 1)) }
    #expect(try link.exchange(object: object(0xE1, 2)).payload == echo(0xE1, 2))
    #expect(log.delivered == [[0x12, 0xE1, 2, 0], [0x12, 0x84, 1, 0]])
    #expect(try link.exchange(object: object(0xE3, 3)).payload == echo(0x84, 1))
  }

  @Test func reorderedResponseIsReadAfterTheNextOne() throws {
    var (link, _, _) = link(DOEFaultRule(.reorder, .response))
    #expect(throws: Self.timeout) { try link.exchange(object: object(0x84, 1)) }
    #expect(try link.exchange(object: object(0xE1, 2)).payload == echo(0xE1, 2))
    #expect(try link.exchange(object: object(0xE3, 3)).payload == echo(0x84, 1))
  }

  @Test func rulesSelectByDirectionCodeAndOccurrence() throws {
    var (link, log, injector) = link(
      DOEFaultRule(.drop, .response, .spdm(code: 0x61), occurrence: .every),
      DOEFaultRule(.drop, .request, .secured))
    // GET_VERSION's answer (0x04) passes; every CAPABILITIES (0x61) answer is lost, though the
    // GET_CAPABILITIES requests reach the device. No secured object passes, so rule 2 never fires.
    #expect(try link.exchange(object: object(0x84, 1)).payload == echo(0x84, 1))
    #expect(throws: Self.timeout) { try link.exchange(object: object(0xE1, 2)) }
    #expect(throws: Self.timeout) { try link.exchange(object: object(0xE1, 3)) }
    #expect(log.delivered.count == 3)
    #expect(injector.fired.map(\.rule.direction) == [.response, .response])
  }

  @Test func resetEmptiesTheLinkAndAbortsTheMailbox() throws {
    var (link, log, _) = link(DOEFaultRule(.duplicate, .response))
    _ = try link.exchange(object: object(0x84, 1))
    link.reset()
    #expect(log.resets == 1)
    #expect(try link.exchange(object: object(0xE1, 2)).payload == echo(0xE1, 2))
  }
}

extension DOEFaultInjectorTests {
  @Test func everyReorderedObjectArrivesInOrderNoneIsLost() throws {
    var (link, log, _) = link(DOEFaultRule(.reorder, .request, occurrence: .every))
    // Each object is held and released once the next has passed: every exchange reads the answer to
    // the one before it, and the last object is still held.
    #expect(throws: Self.timeout) { try link.exchange(object: object(0x84, 1)) }
    #expect(try link.exchange(object: object(0x84, 2)).payload == echo(0x84, 1))
    #expect(try link.exchange(object: object(0x84, 3)).payload == echo(0x84, 2))
    #expect(log.delivered == [[0x12, 0x84, 1, 0], [0x12, 0x84, 2, 0]])
  }

  @Test func aHeldObjectIsReleasedEvenWhenTheNextOneIsDropped() throws {
    var (link, log, _) = link(
      DOEFaultRule(.reorder, .request, occurrence: .nth(1)),
      DOEFaultRule(.drop, .request, occurrence: .nth(2)))
    #expect(throws: Self.timeout) { try link.exchange(object: object(0x84, 1)) }
    // The second object is dropped, the first arrives in its wake and answers this exchange.
    #expect(try link.exchange(object: object(0xE1, 2)).payload == echo(0x84, 1))
    #expect(log.delivered == [[0x12, 0x84, 1, 0]])
  }
}
