/**
 * The baseline: a hand-written node:http handler for the same routes, written the way a careful
 * author would (Content-Length for hello, a write loop that waits for `drain`, `ws` on the
 * server's 'upgrade' event for `/ws`, `fs.createReadStream(path).pipe(res)` for `/file/NAME`, as
 * most node:http file servers do underneath). It ignores `mode`: both 1 KiB scenarios compare
 * against this one loop.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { FILE_ROOT_ENV, HELLO, SSE_EVENT, chunkOf, fileName, parseSseQuery, parseStreamQuery } from './routes.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

exitOnSignals();

/** fileRoot is the folder `/file/NAME` serves, when the suite made one. */
const fileRoot = process.env[FILE_ROOT_ENV];

/** sendFile answers `/file/NAME`: Content-Length from a stat, then the default 64 KiB reads piped. */
function sendFile(path: string, res: http.ServerResponse): void {
  stat(path).then(
    (info) => {
      if (!info.isFile()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': info.size });
      const file = createReadStream(path);
      // pipe() leaves the file open when the client leaves early.
      res.once('close', () => file.destroy());
      file.pipe(res);
    },
    () => res.writeHead(404).end(),
  );
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === '/hello') {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': HELLO.length });
    res.end(HELLO);
    return;
  }
  if (path === '/stream') {
    const asked = parseStreamQuery(q < 0 ? '' : url.slice(q + 1));
    if (typeof asked === 'string') {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end(asked);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    const full = chunkOf(asked.chunk);
    let left = asked.size;
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    const pump = (): void => {
      while (left > 0 && !closed) {
        const n = Math.min(left, asked.chunk);
        left -= n;
        if (!res.write(n === asked.chunk ? full : full.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      if (!closed) res.end();
    };
    pump();
    return;
  }
  if (path === '/sse') {
    const timed = parseSseQuery(q < 0 ? '' : url.slice(q + 1));
    if (typeof timed === 'string') {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end(timed);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write(SSE_EVENT);
    if (timed === null) return;
    let sent = 1;
    const tick = (): void => {
      if (sent === timed.count) {
        res.end();
        return;
      }
      sent++;
      res.write(SSE_EVENT);
      timer = setTimeout(tick, timed.every);
    };
    let timer = setTimeout(tick, timed.every);
    res.on('close', () => clearTimeout(timer));
    return;
  }
  const name = fileName(path);
  if (name !== null && fileRoot !== undefined) {
    sendFile(join(fileRoot, name), res);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found');
});
// As in the nsgi helper: no set of every client, no compression.
const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });
server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
  if (req.url !== '/ws') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});
server.listen(portFromArgv(), '127.0.0.1', () => {
  announce('node-http', (server.address() as { port: number }).port);
});
