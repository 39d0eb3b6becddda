// libFuzzer entry point for the SPDM socket protocol's incremental frame parser
// (CoveTransport/SPDMSocket): the bytes of a TCP stream, cut into pieces the input chooses, with a
// payload cap the input chooses. Nothing may crash or allocate an announced size before checking it;
// however the stream is cut, the parser yields the same frames and the same error as when it is fed
// in one piece; every frame re-encodes to exactly the bytes it came from; and the transport bindings
// never crash on a frame's payload.
import CoveTransport
import FuzzSupport
import PCIe
import SPDM

runLibFuzzer(fuzzInput)

func fuzzInput(_ input: [UInt8]) {
  var reader = FuzzReader(input)
  // The cap: small ones reach the error path with short inputs, 0xFF means the default (1 MiB).
  let capByte = reader.u8()
  let maximum = capByte == 0xFF ? SPDMSocketFrameParser.defaultMaximumPayloadSize : Int(capByte) * 3
  let cuts = reader.chunk8()
  let stream = reader.rest()

  let whole = parse([stream[...]], maximum: maximum)
  var pieces: [ArraySlice<UInt8>] = []
  var rest = stream[...]
  for cut in cuts where !rest.isEmpty {
    let length = min(Int(cut), rest.count)
    pieces.append(rest.prefix(length))
    rest = rest.dropFirst(length)
  }
  pieces.append(rest)
  let split = parse(pieces, maximum: maximum)
  precondition(split.frames == whole.frames, "a cut changed the frames")
  precondition(split.error == whole.error, "a cut changed the error")

  // Frames re-encode to the stream's prefix they came from.
  let encoded = whole.frames.flatMap { $0.encode() }
  precondition(Array(stream.prefix(encoded.count)) == encoded, "a frame does not re-encode to its bytes")
  for frame in whole.frames {
    precondition(frame.payload.count <= maximum, "a frame over the cap was returned")
    for binding in SPDMSocketBinding.allCases {
      if let message = try? binding.message(frame.payload, sessions: [0xFFFF_FFFF]) {
        fuzzLog("\(binding): \(message)")
      }
    }
  }
  if case .payloadTooLarge(let size, let cap)? = whole.error {
    precondition(Int(size) > cap && cap == maximum, "a size within the cap was refused")
  }
}

func parse(_ pieces: [ArraySlice<UInt8>], maximum: Int) -> (
  frames: [SPDMSocketFrame], error: SPDMSocketError?
) {
  var parser = SPDMSocketFrameParser(maximumPayloadSize: maximum)
  var frames: [SPDMSocketFrame] = []
  for piece in pieces {
    parser.append(piece)
    do {
      while let frame = try parser.next() { frames.append(frame) }
    } catch {
      return (frames, error)
    }
  }
  return (frames, nil)
}
