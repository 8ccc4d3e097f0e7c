/**
 * Bun.serve, the reference peer, run by the `bun` binary (the npm package). `/stream` with
 * mode=sync is a pull-based ReadableStream, with mode=async an async generator body; `/ws` is
 * upgraded with `server.upgrade()` and echoed by Bun's native `websocket` handler; `/file/NAME`
 * is a `Bun.file` body, which Bun sends with sendfile.
 */
import { join } from 'node:path';
import { FILE_ROOT_ENV, HELLO, SSE_EVENT, chunkOf, fileName, parseSseQuery, parseStreamQuery } from './routes.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

// The few Bun APIs used here, declared locally so the typecheck needs no bun-types.
interface BunServer {
  port: number;
  upgrade(req: Request): boolean;
}
interface BunWebSocket {
  send(data: string | Uint8Array): number;
}
interface BunServeOptions {
  port: number;
  hostname: string;
  idleTimeout: number;
  fetch(req: Request, server: BunServer): Response | undefined;
  websocket: { message(ws: BunWebSocket, message: string | Uint8Array): void };
}
declare const Bun: { serve(options: BunServeOptions): BunServer; file(path: string): Blob };

exitOnSignals();

/** fileRoot is the folder `/file/NAME` serves, when the suite made one. */
const fileRoot = process.env[FILE_ROOT_ENV];

function syncBody(size: number, chunk: number): ReadableStream<Uint8Array> {
  const full = chunkOf(chunk);
  let left = size;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        while (left > 0 && (controller.desiredSize ?? 0) > 0) {
          const n = Math.min(left, chunk);
          left -= n;
          controller.enqueue(n === chunk ? full : full.subarray(0, n));
        }
        if (left === 0) controller.close();
      },
    },
    { highWaterMark: 64 * 1024, size: (c) => c.byteLength },
  );
}

async function* asyncBody(size: number, chunk: number): AsyncGenerator<Uint8Array> {
  const full = chunkOf(chunk);
  let left = size;
  while (left >= chunk) {
    left -= chunk;
    yield full;
  }
  if (left > 0) yield full.subarray(0, left);
}

const server = Bun.serve({
  port: portFromArgv(),
  hostname: '127.0.0.1',
  // Idle SSE connections must stay open; Bun closes idle sockets after 10 s by default.
  idleTimeout: 0,
  fetch(req, server) {
    const url = req.url;
    const start = url.indexOf('/', url.indexOf('//') + 2);
    const q = url.indexOf('?', start);
    const path = q < 0 ? url.slice(start) : url.slice(start, q);
    if (path === '/hello') return new Response(HELLO, { headers: { 'Content-Type': 'text/plain' } });
    if (path === '/stream') {
      const asked = parseStreamQuery(q < 0 ? '' : url.slice(q + 1));
      if (typeof asked === 'string') return new Response(asked, { status: 400 });
      const body = asked.mode === 'sync' ? syncBody(asked.size, asked.chunk) : asyncBody(asked.size, asked.chunk);
      return new Response(body as unknown as ReadableStream<Uint8Array>, { headers: { 'Content-Type': 'application/octet-stream' } });
    }
    if (path === '/sse') {
      const timed = parseSseQuery(q < 0 ? '' : url.slice(q + 1));
      if (typeof timed === 'string') return new Response(timed, { status: 400 });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(SSE_EVENT);
          if (timed === null) return;
          let sent = 1;
          const tick = (): void => {
            if (sent === timed.count) return controller.close();
            sent++;
            controller.enqueue(SSE_EVENT);
            timer = setTimeout(tick, timed.every);
          };
          timer = setTimeout(tick, timed.every);
        },
        cancel() {
          clearTimeout(timer);
        },
      });
      return new Response(body, { headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' } });
    }
    if (path === '/ws') {
      if (server.upgrade(req)) return undefined;
      return new Response('send a WebSocket handshake', { status: 426 });
    }
    const name = fileName(path);
    if (name !== null && fileRoot !== undefined) return new Response(Bun.file(join(fileRoot, name)), { headers: { 'Content-Type': 'application/octet-stream' } });
    return new Response('not found', { status: 404 });
  },
  websocket: {
    // A string message goes back as text, bytes as binary.
    message(ws, message) {
      ws.send(message);
    },
  },
});
announce('bun', server.port);
