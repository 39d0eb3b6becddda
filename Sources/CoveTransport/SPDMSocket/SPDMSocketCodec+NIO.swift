public import NIOCore

/// NIO decoder of SPDM socket frames: the header is read and checked by
/// ``SPDMSocketFrameParser/header(_:maximumPayloadSize:)`` (the same check the fuzzed parser runs),
/// so an absurd size fails the channel before any payload is buffered; a frame is passed on once all
/// its payload bytes are in.
public struct SPDMSocketFrameDecoder: ByteToMessageDecoder {
  public typealias InboundOut = SPDMSocketFrame

  public let maximumPayloadSize: Int

  public init(maximumPayloadSize: Int = SPDMSocketFrameParser.defaultMaximumPayloadSize) {
    self.maximumPayloadSize = maximumPayloadSize
  }

  public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws
    -> DecodingState
  {
    guard
      let headerBytes = buffer.getBytes(at: buffer.readerIndex, length: SPDMSocketFrame.headerSize)
    else { return .needMoreData }
    let header = try SPDMSocketFrameParser.header(headerBytes, maximumPayloadSize: maximumPayloadSize)
    guard buffer.readableBytes >= SPDMSocketFrame.headerSize + header.payloadSize else {
      return .needMoreData
    }
    buffer.moveReaderIndex(forwardBy: SPDMSocketFrame.headerSize)
    let payload = buffer.readBytes(length: header.payloadSize) ?? []
    context.fireChannelRead(
      wrapInboundOut(
        SPDMSocketFrame(command: header.command, transportType: header.transportType, payload: payload)))
    return .continue
  }

  public mutating func decodeLast(
    context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
  ) throws -> DecodingState {
    while try decode(context: context, buffer: &buffer) == .continue {}
    if seenEOF, buffer.readableBytes > 0 {
      let pending = buffer.readableBytes
      buffer.moveReaderIndex(forwardBy: pending)
      throw SPDMSocketError.connectionClosed(pendingBytes: pending)
    }
    return .needMoreData
  }
}

/// NIO encoder: header and payload into one buffer, so each frame leaves in one write.
public struct SPDMSocketFrameEncoder: MessageToByteEncoder {
  public typealias OutboundIn = SPDMSocketFrame

  public init() {}

  public func encode(data: SPDMSocketFrame, out: inout ByteBuffer) throws {
    out.reserveCapacity(minimumWritableBytes: SPDMSocketFrame.headerSize + data.payload.count)
    out.writeInteger(data.command.rawValue, endianness: .big)
    out.writeInteger(data.transportType.rawValue, endianness: .big)
    out.writeInteger(UInt32(data.payload.count), endianness: .big)
    out.writeBytes(data.payload)
  }
}
