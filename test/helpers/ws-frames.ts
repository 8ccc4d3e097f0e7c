/**
 * Raw WebSocket bytes for tests that must behave as no well-mannered client would (flood without
 * reading, stall): a handshake request, masked client frames, and a reader for the server's
 * unmasked frames.
 */

/** wsHandshake is a valid WebSocket handshake request for raw TCP, with `extra` header lines (each ending in `\n`). */
export function wsHandshake(path = '/', extra = ''): string {
  return `GET ${path} HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n${extra}\n`;
}

/** clientFrame is one masked binary frame carrying `payload`, as a client must send it (RFC 6455 §5.3). */
export function clientFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const frame = Buffer.alloc(2 + lengthBytes + 4 + n);
  frame[0] = 0x82;
  if (lengthBytes === 0) frame[1] = 0x80 | n;
  else if (lengthBytes === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  const maskAt = 2 + lengthBytes;
  const mask = [0x12, 0x34, 0x56, 0x78];
  for (let i = 0; i < 4; i++) frame[maskAt + i] = mask[i]!;
  for (let i = 0; i < n; i++) frame[maskAt + 4 + i] = payload[i]! ^ mask[i % 4]!;
  return frame;
}

/** ServerFrame is one frame as the server sent it: its opcode and payload. */
export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

/**
 * serverFrames reads the unmasked frames in `data` (what follows the 101's head) and returns the
 * whole ones and the offset where an unfinished one starts.
 */
export function serverFrames(data: Buffer): { frames: ServerFrame[]; rest: number } {
  const frames: ServerFrame[] = [];
  let pos = 0;
  for (;;) {
    if (data.length - pos < 2) break;
    const opcode = data[pos]! & 0x0f;
    let n = data[pos + 1]! & 0x7f;
    let at = pos + 2;
    if (n === 126) {
      if (data.length - pos < 4) break;
      n = data.readUInt16BE(pos + 2);
      at = pos + 4;
    } else if (n === 127) {
      if (data.length - pos < 10) break;
      n = Number(data.readBigUInt64BE(pos + 2));
      at = pos + 10;
    }
    if (data.length - at < n) break;
    frames.push({ opcode, payload: data.subarray(at, at + n) });
    pos = at + n;
  }
  return { frames, rest: pos };
}

/** closeCode is the status code of a close frame's payload, or undefined when it carries none. */
export function closeCode(frame: ServerFrame): number | undefined {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined;
}
