// libFuzzer entry point for the guest link (CoveTransport): the frame decoder fed the input cut at a
// point the input chooses, then every payload decoder a peer's bytes reach — the call (host side),
// the hello, the welcome, a refusal and every result reader (guest side). Nothing may crash or trap;
// a call that decodes must encode back to the same bytes; the decoder must never hold more than one
// frame's worth of bytes past the limit.
import CoveTransport
import FuzzSupport
import GuestABI

runLibFuzzer(fuzzInput)

func fuzzInput(_ input: [UInt8]) {
  guard input.count >= 2 else { return }
  let cut = Int(input[0]) * input.count / 256
  let body = Array(input.dropFirst())
  var decoder = GuestLinkFrameDecoder()
  decoder.append(body[..<min(cut, body.count)])
  var frames: [GuestLinkFrame] = []
  var failed = false
  func drain() {
    while !failed {
      do {
        guard let frame = try decoder.next() else { return }
        frames.append(frame)
      } catch {
        failed = true
      }
    }
  }
  drain()
  decoder.append(body[min(cut, body.count)...])
  drain()
  if !failed { precondition(decoder.buffered <= GuestLinkFrame.headerSize + GuestLinkFrame.maximumPayload) }
  // The payload decoders, on each frame's payload and on the raw body.
  for payload in frames.map(\.payload) + [body] { payloads(payload) }
}

func payloads(_ payload: [UInt8]) {
  if let call = try? GuestLinkCall(decoding: payload) {
    precondition(call.encoded == payload, "a decoded call re-encodes to other bytes")
  }
  _ = try? GuestLinkHello(decoding: payload)
  _ = try? GuestLinkWelcome(decoding: payload)
  _ = try? HypercallError(decoding: payload)
  _ = try? GuestLinkResult.readU32(payload)
  _ = try? GuestLinkResult.readU64(payload)
  _ = try? GuestLinkResult.readBars(payload)
  _ = try? GuestLinkResult.readNotifications(payload)
  _ = try? GuestLinkResult.readTSM(payload)
  _ = try? GuestLinkResult.readStates(payload)
  _ = try? GuestLinkResult.readRecords(payload)
  _ = try? GuestLinkResult.readSessions(payload)
}
