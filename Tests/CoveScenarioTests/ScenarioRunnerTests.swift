import CoveScenario
import Foundation
import Testing

@Suite struct ScenarioRunnerTests {
  static func image(_ name: String) throws -> (text: String, path: String) {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let path = root.appendingPathComponent("guest-images/\(name)").path
    return (try String(contentsOfFile: path, encoding: .utf8), "guest-images/\(name)")
  }

  @Test func theDefaultImageRunsWithEveryExpectationHolding() throws {
    let (text, path) = try Self.image("default.yaml")
    let image = try GuestImage(yaml: text, file: path)
    let result = try ScenarioRunner(image: image).run()
    for step in result.steps where !step.passed {
      Issue.record("step \(step.index) \(step.description): \(step.outcome)")
    }
    #expect(result.exitStatus == 0)
    #expect(result.steps.count == image.steps.count)
  }
}

extension ScenarioRunnerTests {
  @Test func theBuiltInDefaultIsTheShippedFile() throws {
    #expect(BuiltInImages.defaultImage == (try Self.image("default.yaml")).text)
  }

  @Test func twoRunsWithTheSameSeedGiveTheSameTrace() throws {
    let image = try GuestImage(yaml: BuiltInImages.defaultImage, file: "default.yaml")
    let first = try ScenarioRunner(image: image, seed: 7).run().records.map(\.jsonLine)
    let second = try ScenarioRunner(image: image, seed: 7).run().records.map(\.jsonLine)
    #expect(first.count > 50)
    #expect(first == second)
  }
}
