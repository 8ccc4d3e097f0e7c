/**
 * The nsgi app every nsgi server under test runs: an array body for `/hello`, a sync or an async
 * generator for `/stream`, an async generator that waits on `nsgi.signal` for `/sse` (or sends timed events and ends), and the
 * WebSocket helper echoing every message for `/ws`, and `sendFile` (a file body) for `/file/NAME`.
 */
import type { App } from '../../../protocol/nsgi.ts';
import { sendFile } from '../../../src/helpers/send-file.ts';
import { websocketApp } from '../../../src/websocket.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FILE_ROOT_ENV, HELLO, SSE_EVENT, chunkOf, fileName, parseSseQuery, parseStreamQuery, type TimedEvents } from './routes.ts';

const HELLO_HEADERS: Array<[string, string]> = [
  ['Content-Type', 'text/plain'],
  ['Content-Length', String(HELLO.length)],
];

/** echo answers `/ws`: each message goes back as it came, binary as binary. */
const echo = websocketApp((ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

/** fileRoot is the folder `/file/NAME` serves, when the suite made one. */
const fileRoot = process.env[FILE_ROOT_ENV];

/** app serves `/hello`, `/stream`, `/sse`, `/ws` and `/file/NAME`. */
export const app: App = (environ, startResponse) => {
  const path = environ.PATH_INFO;
  if (path === '/hello') {
    startResponse('200 OK', HELLO_HEADERS);
    return [HELLO];
  }
  if (path === '/stream') {
    const asked = parseStreamQuery(environ.QUERY_STRING);
    if (typeof asked === 'string') {
      startResponse('400 Bad Request', [['Content-Type', 'text/plain']]);
      return [asked];
    }
    startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
    return asked.mode === 'sync' ? syncChunks(asked.size, asked.chunk) : asyncChunks(asked.size, asked.chunk);
  }
  if (path === '/sse') {
    const timed = parseSseQuery(environ.QUERY_STRING);
    if (typeof timed === 'string') {
      startResponse('400 Bad Request', [['Content-Type', 'text/plain']]);
      return [timed];
    }
    startResponse('200 OK', [
      ['Content-Type', 'text/event-stream'],
      ['Cache-Control', 'no-cache'],
    ]);
    return timed === null ? events(environ['nsgi.signal']) : timedEvents(timed);
  }
  if (path === '/ws') return echo(environ, startResponse);
  const name = fileName(path);
  if (name !== null && fileRoot !== undefined) return sendFile(environ, startResponse, join(fileRoot, name));
  startResponse('404 Not Found', [['Content-Type', 'text/plain']]);
  return ['not found'];
};

/** syncChunks yields `size` bytes in `chunk`-byte pieces, the same buffer every time. */
function* syncChunks(size: number, chunk: number): Generator<Uint8Array> {
  const full = chunkOf(chunk);
  let left = size;
  while (left >= chunk) {
    left -= chunk;
    yield full;
  }
  if (left > 0) yield full.subarray(0, left);
}

/** asyncChunks is syncChunks as an async generator. */
async function* asyncChunks(size: number, chunk: number): AsyncGenerator<Uint8Array> {
  const full = chunkOf(chunk);
  let left = size;
  while (left >= chunk) {
    left -= chunk;
    yield full;
  }
  if (left > 0) yield full.subarray(0, left);
}

/** timedEvents sends `count` events, the first at once and then one every `every` ms. */
async function* timedEvents({ count, every }: TimedEvents): AsyncGenerator<Uint8Array> {
  yield SSE_EVENT;
  for (let i = 1; i < count; i++) {
    await sleep(every);
    yield SSE_EVENT;
  }
}

/** events sends one event, then holds the connection until the client goes away. */
async function* events(signal: AbortSignal): AsyncGenerator<Uint8Array> {
  yield SSE_EVENT;
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
