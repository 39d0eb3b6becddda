public import CoveCrypto

/// The measurement summary hash in CHALLENGE_AUTH and KEY_EXCHANGE_RSP (DSP0274 1.2 §10.8, Table
/// "MeasurementSummaryHash"): the hash of the concatenated Measurement fields (DMTF type, size,
/// value) of the blocks requested — all of them (0xFF), or those of the trusted computing base (1).
/// Cove counts as TCB the immutable ROM, mutable firmware, hardware configuration and firmware
/// configuration types; both its requester and responder use this one definition.
public enum MeasurementSummary {
  public static func hash(
    type: MeasurementSummaryHashType, blocks: [MeasurementBlock], algorithm: HashAlgorithm
  ) -> [UInt8] {
    if type == .none { return [] }
    var hasher = IncrementalHash(algorithm)
    for block in blocks.sorted(by: { $0.index < $1.index }) {
      if type == .tcb {
        guard let dmtf = block.dmtf, isTCB(dmtf.valueType) else { continue }
      }
      hasher.update(block.measurement)
    }
    return hasher.finalize()
  }

  static func isTCB(_ type: DMTFMeasurementValueType) -> Bool {
    [.immutableROM, .mutableFirmware, .hardwareConfiguration, .firmwareConfiguration].contains(type)
  }
}
