internal import COpenSSL

/// Conversion between SPDM's raw ECDSA signature (r ‖ s, each left-padded to the coordinate size,
/// DSP0274 §"Signature generation") and the DER `ECDSA-Sig-Value` SEQUENCE { r INTEGER, s INTEGER }
/// that X.509 and the `openssl` CLI use (RFC 5480 §2.2 / SEC1 §C.8 / RFC 3279 §2.2.3).
public enum ECDSASignatureEncoding {
  /// DER `ECDSA-Sig-Value` from raw r ‖ s. Throws `.invalidSignature` for an empty or odd length.
  public static func der(fromRaw raw: [UInt8]) throws(CryptoError) -> [UInt8] {
    guard !raw.isEmpty, raw.count % 2 == 0 else {
      throw CryptoError(code: .invalidSignature, operation: "ECDSA raw signature length")
    }
    let half = raw.count / 2
    let signature = try OpenSSLObject(ECDSA_SIG_new(), operation: "ECDSA_SIG_new") { ECDSA_SIG_free($0) }
    let r = raw[..<half].withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32(half), nil) }
    let s = raw[half...].withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32(half), nil) }
    // ECDSA_SIG_set0 takes ownership of r and s on success, so they are not given owners here.
    guard let r, let s, ECDSA_SIG_set0(signature.pointer, r, s) == 1 else {
      BN_free(r)
      BN_free(s)
      throw CryptoError.openSSL(.internalFailure, "ECDSA_SIG_set0")
    }
    return try encodeDER("i2d_ECDSA_SIG") { i2d_ECDSA_SIG(signature.pointer, $0) }
  }

  /// Raw r ‖ s (each `curve.coordinateSize` bytes) from DER. Throws `.invalidSignature` on malformed
  /// DER, trailing bytes, or an integer too wide for the curve.
  public static func raw(fromDER der: [UInt8], curve: EllipticCurve) throws(CryptoError) -> [UInt8] {
    let signature: OpenSSLObject
    do {
      signature = try decodeDER(
        der, "d2i_ECDSA_SIG", free: { ECDSA_SIG_free($0) },
        decode: { d2i_ECDSA_SIG(nil, $0, $1) })
    } catch {
      throw CryptoError(
        code: .invalidSignature, operation: error.operation, openSSLErrors: error.openSSLErrors)
    }
    guard let r = ECDSA_SIG_get0_r(signature.pointer), let s = ECDSA_SIG_get0_s(signature.pointer),
      let rBytes = bigEndianBytes(of: r, width: curve.coordinateSize),
      let sBytes = bigEndianBytes(of: s, width: curve.coordinateSize)
    else {
      throw CryptoError(code: .invalidSignature, operation: "ECDSA signature integer too wide for curve")
    }
    return rBytes + sBytes
  }
}
