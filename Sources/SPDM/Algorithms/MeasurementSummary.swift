public import CoveCrypto
import CoveWire

/// The measurement summary hash in CHALLENGE_AUTH and KEY_EXCHANGE_RSP (DSP0274 1.2+, table
/// "MeasurementSummaryHash"): the hash (negotiated base hash) of the concatenation of whole
/// measurement blocks — each block's Index, MeasurementSpecification, MeasurementSize and
/// Measurement — in their digest form (the form GET_MEASUREMENTS returns without
/// RawBitStreamRequested), for all blocks (0xFF) or those the device counts as its trusted
/// computing base (1). libspdm computes it the same way (`libspdm_generate_measurement_summary_hash`).
///
/// Which blocks are TCB is the device's choice; Cove's devices count the immutable ROM, mutable
/// firmware, hardware configuration and firmware configuration types. A verifier can recompute only
/// the "all" summary, since it cannot know another device's TCB rule.
public enum MeasurementSummary {
  public static func hash(
    type: MeasurementSummaryHashType, digestBlocks blocks: [MeasurementBlock], algorithm: HashAlgorithm
  ) -> [UInt8] {
    if type == .none { return [] }
    var hasher = IncrementalHash(algorithm)
    for block in blocks.sorted(by: { $0.index < $1.index }) {
      if type == .tcb {
        guard let dmtf = block.dmtf, isTCB(dmtf.valueType) else { continue }
      }
      var writer = ByteWriter()
      block.encode(into: &writer)
      hasher.update(writer.bytes)
    }
    return hasher.finalize()
  }

  static func isTCB(_ type: DMTFMeasurementValueType) -> Bool {
    [.immutableROM, .mutableFirmware, .hardwareConfiguration, .firmwareConfiguration].contains(type)
  }
}

extension MeasurementBlock {
  /// The block as GET_MEASUREMENTS returns it when no raw bit stream was requested: a raw-bit-stream
  /// DMTF value is replaced by its digest under the negotiated measurement hash (DSP0274
  /// GET_MEASUREMENTS "RawBitStreamRequested"); digests and non-DMTF blocks are unchanged.
  public func digestForm(using hash: HashAlgorithm) -> MeasurementBlock {
    guard let dmtf, dmtf.isRawBitStream else { return self }
    return MeasurementBlock(
      index: index,
      dmtf: DMTFMeasurement(valueType: dmtf.valueType, isRawBitStream: false, value: hash.hash(dmtf.value)))
  }
}

extension MeasurementHashAlgorithms {
  /// The single Cove hash this selection names, if any (raw-bit-stream-only selects none).
  public var coveHash: HashAlgorithm? {
    switch self {
    case .sha256: .sha256
    case .sha384: .sha384
    default: nil
    }
  }
}
