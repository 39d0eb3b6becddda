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
  static let shipped = [
    "default", "attestation-failures", "boundary-all-private", "fault-injection", "multi-function-vfs",
    "ownership-vfio", "pasid-kernel-dma", "sva-process", "two-guests-isolation", "viommu-nested",
  ]

  @Test func theBuiltInImagesAreTheShippedFiles() throws {
    let files = try FileManager.default.contentsOfDirectory(
      atPath: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("guest-images").path
    ).filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    #expect(files == Self.shipped.sorted())
    #expect(BuiltInImages.all.map(\.name).sorted() == files, "run `make embed-images`")
    for (name, text) in BuiltInImages.all {
      #expect(text == (try Self.image("\(name).yaml")).text, "\(name): run `make embed-images`")
    }
    #expect(BuiltInImages.all.first?.name == "default")
  }

  @Test(arguments: shipped) func everyShippedImageRunsWithItsExpectations(_ name: String) throws {
    let (text, path) = try Self.image("\(name).yaml")
    let image = try GuestImage(yaml: text, file: path)
    let result = try ScenarioRunner(image: image).run()
    for step in result.steps where !step.passed {
      Issue.record("\(name) step \(step.index + 1) \(step.description): \(step.outcome)")
    }
    #expect(result.exitStatus == 0)
    #expect(result.steps.count == image.steps.count && !image.steps.isEmpty)
  }

  @Test func twoRunsWithTheSameSeedGiveTheSameTrace() throws {
    let image = try GuestImage(yaml: BuiltInImages.defaultImage, file: "default.yaml")
    let first = try ScenarioRunner(image: image, seed: 7).run().records.map(\.jsonLine)
    let second = try ScenarioRunner(image: image, seed: 7).run().records.map(\.jsonLine)
    #expect(first.count > 50)
    #expect(first == second)
  }
}

extension ScenarioRunnerTests {
  @Test func theDefaultRunsReportDrawsEveryMessageAndEveryStep() throws {
    let image = try GuestImage(yaml: BuiltInImages.defaultImage, file: "default.yaml")
    let result = try ScenarioRunner(image: image).run()
    let page = HTMLReport.render(
      title: "default", image: image.name, seed: result.seed, records: result.records, steps: result.steps)
    let messages = result.records.filter { $0.from != nil && $0.to != nil }
    #expect(messages.count > 40)
    #expect(page.components(separatedBy: "<g class=\"arrow ").count - 1 == messages.count)
    #expect(
      page.contains("id=\"\(HTMLReport.sequenceDiagramID)\"")
        && page.contains("id=\"\(HTMLReport.stateTimelineID)\""))
    for step in result.steps { #expect(page.contains("id=\"step-\(step.index)\"")) }
    // The TDI's states over the run: unlocked, locked, RUN, ERROR, unlocked, locked, RUN.
    let states = result.records.filter { $0.kind == .state && $0.device == "03:00.1" }.compactMap(\.after)
    #expect(states == ["CONFIG_LOCKED", "RUN", "ERROR", "CONFIG_UNLOCKED", "CONFIG_LOCKED", "RUN"])
  }
}
