/**
 * The ceiling: a node:net server that answers canned bytes without parsing HTTP. It only finds
 * where each request head ends (`\r\n\r\n`) and looks at the first letters of the path to pick
 * the route; every hello in one read is answered with one write. Streams are written as
 * prebuilt chunked frames, a tick's worth under cork, waiting for `drain` when the socket is
 * full; `/sse` is one prebuilt event (or, with `count`, prebuilt events on a timer, then the
 * last chunk). `/w...` is a minimal WebSocket echo: the 101 with its accept value, then every whole
 * client frame in one read is echoed unmasked in one write. Nothing else Node can do on these
 * routes is cheaper, so it bounds what any Node server can reach. It is not an HTTP server, nor a
 * WebSocket server: it assumes well-formed GET requests from the suite's clients, and
 * understands only small (payload under 126 bytes), masked, unfragmented frames, with no ping and
 * no close handshake beyond echoing the close frame and ending.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { HELLO, SSE_EVENT, chunkOf, parseSseQuery, parseStreamQuery } from './routes.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

exitOnSignals();

const HEAD_END = Buffer.from('\r\n\r\n');
const HELLO_RESPONSE = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${HELLO.length}\r\n\r\n${HELLO.toString()}`,
);
const STREAM_HEAD = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
const SSE_RESPONSE = Buffer.concat([
  Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n'),
  frame(SSE_EVENT),
]);
const SSE_FRAME = frame(SSE_EVENT);
const NOT_FOUND = Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const CHAR_H = 'h'.charCodeAt(0);
const CHAR_S = 's'.charCodeAt(0);
const CHAR_T = 't'.charCodeAt(0);
const CHAR_W = 'w'.charCodeAt(0);
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const WS_OP_CLOSE = 0x8;

/** hellos[n] is n hello responses back to back, built on first use. */
const hellos: Buffer[] = [];
const frames = new Map<number, Buffer>();

function frame(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
}

function helloBatch(n: number): Buffer {
  let batch = hellos[n];
  if (batch === undefined) {
    batch = Buffer.concat(new Array<Buffer>(n).fill(HELLO_RESPONSE));
    hellos[n] = batch;
  }
  return batch;
}

function stream(socket: net.Socket, query: string): void {
  const asked = parseStreamQuery(query);
  if (typeof asked === 'string') {
    socket.write(NOT_FOUND);
    return;
  }
  let full = frames.get(asked.chunk);
  if (full === undefined) {
    full = frame(chunkOf(asked.chunk));
    frames.set(asked.chunk, full);
  }
  const fullFrame = full;
  let left = asked.size;
  socket.write(STREAM_HEAD);
  const burst = (): void => {
    if (socket.destroyed) return;
    socket.cork();
    let more = true;
    while (left > 0 && more) {
      const n = Math.min(left, asked.chunk);
      left -= n;
      more = socket.write(n === asked.chunk ? fullFrame : frame(chunkOf(asked.chunk).subarray(0, n)));
    }
    if (left === 0) socket.write(LAST_CHUNK);
    socket.uncork();
    if (left > 0) socket.once('drain', burst);
  };
  burst();
}

/** events answers `/sse`: one event and silence, or `count` events `every` ms apart and the last chunk. */
function events(socket: net.Socket, query: string): void {
  const timed = parseSseQuery(query);
  if (typeof timed === 'string') {
    socket.write(NOT_FOUND);
    return;
  }
  socket.write(SSE_RESPONSE);
  if (timed === null) return;
  let sent = 1;
  const tick = (): void => {
    if (socket.destroyed) return;
    if (sent === timed.count) {
      socket.write(LAST_CHUNK);
      return;
    }
    sent++;
    socket.write(SSE_FRAME);
    setTimeout(tick, timed.every);
  };
  setTimeout(tick, timed.every);
}

/** switchProtocols is the 101 for a WebSocket handshake head, or null when it has no key. */
function switchProtocols(head: string): Buffer | null {
  const key = /\r\nsec-websocket-key:[ \t]*([^\r]*?)[ \t]*(?:\r\n|$)/i.exec(head)?.[1];
  if (key === undefined) return null;
  const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
  return Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
}

/**
 * echoFrames echoes the whole client frames in `buf` from `start`, unmasked, in one write, and
 * returns where the unread rest begins. A close frame is echoed and ends the connection; a frame
 * it does not understand (unmasked, or a payload of 126 bytes or more) destroys it.
 */
function echoFrames(socket: net.Socket, buf: Buffer, start: number): number {
  let end = start;
  let bytes = 0;
  let close = false;
  while (!close && buf.length - end >= 2) {
    const b1 = buf[end + 1]!;
    const length = b1 & 0x7f;
    if ((b1 & 0x80) === 0 || length >= 126) {
      socket.destroy();
      return buf.length;
    }
    if (buf.length - end < 6 + length) break;
    close = (buf[end]! & 0x0f) === WS_OP_CLOSE;
    bytes += 2 + length;
    end += 6 + length;
  }
  if (bytes === 0) return start;
  const out = Buffer.allocUnsafe(bytes);
  let o = 0;
  for (let i = start; i < end; ) {
    const length = buf[i + 1]! & 0x7f;
    out[o] = buf[i]!;
    out[o + 1] = length;
    const mask = i + 2;
    const payload = i + 6;
    for (let j = 0; j < length; j++) out[o + 2 + j] = buf[payload + j]! ^ buf[mask + (j & 3)]!;
    o += 2 + length;
    i += 6 + length;
  }
  if (close) {
    socket.end(out);
    return buf.length;
  }
  socket.write(out);
  return end;
}

const server = net.createServer({ noDelay: true }, (socket) => {
  let carry: Buffer | null = null;
  let websocket = false;
  socket.on('error', () => {});
  socket.on('end', () => socket.end());
  socket.on('data', (data: Buffer) => {
    const buf: Buffer = carry === null ? data : Buffer.concat([carry, data]);
    carry = null;
    let start = 0;
    let pendingHellos = 0;
    while (!websocket) {
      const end = buf.indexOf(HEAD_END, start);
      if (end < 0) break;
      // `GET /h...`: the path's first letters pick the route.
      const first = buf[start + 5];
      if (first === CHAR_H) {
        pendingHellos++;
      } else {
        if (pendingHellos > 0) socket.write(helloBatch(pendingHellos));
        pendingHellos = 0;
        if (first === CHAR_W) {
          const answer = switchProtocols(buf.toString('latin1', start, end));
          websocket = answer !== null;
          socket.write(answer ?? NOT_FOUND);
        } else {
          const line = buf.toString('latin1', start, buf.indexOf('\r\n', start));
          const target = line.split(' ')[1] ?? '/';
          const q = target.indexOf('?');
          if (first === CHAR_S && buf[start + 6] === CHAR_T) stream(socket, q < 0 ? '' : target.slice(q + 1));
          else if (first === CHAR_S) events(socket, q < 0 ? '' : target.slice(q + 1));
          else socket.write(NOT_FOUND);
        }
      }
      start = end + HEAD_END.length;
    }
    if (pendingHellos > 0) socket.write(helloBatch(pendingHellos));
    if (websocket) start = echoFrames(socket, buf, start);
    if (start < buf.length) carry = buf.subarray(start);
  });
});
server.listen(portFromArgv(), '127.0.0.1', () => {
  announce('ceiling', (server.address() as net.AddressInfo).port);
});
