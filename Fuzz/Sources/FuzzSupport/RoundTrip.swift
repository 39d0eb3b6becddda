public import CoveWire

/// Decodes `bytes`, and if that works, checks decode(encode(x)) == x: whatever a decoder accepts must
/// re-encode to something it decodes identically (every decoder harness's invariant).
public func roundTrip<Message: Equatable>(
  _ bytes: [UInt8], _ decode: ([UInt8]) throws(WireError) -> Message, _ encode: (Message) -> [UInt8]
) {
  guard let message = try? decode(bytes) else { return }
  let again = try? decode(encode(message))
  precondition(again == message, "\(Message.self) does not survive decode(encode(x))")
}
