/// The IOMMU tests' one deterministic generator.
/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014):
/// a tiny deterministic generator, so every property-test run replays exactly.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform enough in `0..<bound` for test generation (bound > 0).
  mutating func below(_ bound: UInt64) -> UInt64 { next() % bound }

  /// True with `percent` % probability.
  mutating func chance(_ percent: UInt64) -> Bool { below(100) < percent }
}

extension SplitMix64 {
  init(seed: UInt64) { self.init(state: seed) }
}
