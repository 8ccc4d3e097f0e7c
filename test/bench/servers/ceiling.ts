/**
 * The ceiling: a node:net server that answers canned bytes without parsing HTTP. It only finds
 * where each request head ends (`\r\n\r\n`) and looks at the first letters of the path to pick
 * the route; every hello in one read is answered with one write. Streams are written as
 * prebuilt chunked frames, a tick's worth under cork, waiting for `drain` when the socket is
 * full. Nothing else Node can do on this route is cheaper, so it bounds what any Node server can
 * reach. It is not an HTTP server: it assumes well-formed GET requests from the suite's clients.
 */
import net from 'node:net';
import { HELLO, SSE_EVENT, chunkOf, parseStreamQuery } from './routes.ts';
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
const NOT_FOUND = Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const CHAR_H = 'h'.charCodeAt(0);
const CHAR_S = 's'.charCodeAt(0);
const CHAR_T = 't'.charCodeAt(0);

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

const server = net.createServer({ noDelay: true }, (socket) => {
  let carry: Buffer | null = null;
  socket.on('error', () => {});
  socket.on('end', () => socket.end());
  socket.on('data', (data: Buffer) => {
    const buf: Buffer = carry === null ? data : Buffer.concat([carry, data]);
    carry = null;
    let start = 0;
    let pendingHellos = 0;
    for (;;) {
      const end = buf.indexOf(HEAD_END, start);
      if (end < 0) break;
      // `GET /h...`: the path's first letters pick the route.
      const first = buf[start + 5];
      if (first === CHAR_H) {
        pendingHellos++;
      } else {
        if (pendingHellos > 0) socket.write(helloBatch(pendingHellos));
        pendingHellos = 0;
        const line = buf.toString('latin1', start, buf.indexOf('\r\n', start));
        const target = line.split(' ')[1] ?? '/';
        const q = target.indexOf('?');
        if (first === CHAR_S && buf[start + 6] === CHAR_T) stream(socket, q < 0 ? '' : target.slice(q + 1));
        else if (first === CHAR_S) socket.write(SSE_RESPONSE);
        else socket.write(NOT_FOUND);
      }
      start = end + HEAD_END.length;
    }
    if (pendingHellos > 0) socket.write(helloBatch(pendingHellos));
    if (start < buf.length) carry = buf.subarray(start);
  });
});
server.listen(portFromArgv(), '127.0.0.1', () => {
  announce('ceiling', (server.address() as net.AddressInfo).port);
});
