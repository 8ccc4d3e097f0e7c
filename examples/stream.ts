/**
 * stream: a large body from a sync generator, pulled only as fast as the client reads it.
 *
 * `GET /?mb=N` sends N MiB (default 64, at most 4096) in 64 KiB chunks with a Content-Length.
 * Byte n of the body is `n % 256`. The generator yields the same preallocated chunk every time:
 * the server writes a chunk and asks for the next one only once the socket can take more, so
 * memory stays flat however large the body and however slow the client. Stop a slow download
 * midway and the generator's `finally` reports how far it got: the server called `return()`.
 *
 *   node bin/nsgi.js examples/stream.ts
 *   curl -s 'http://127.0.0.1:8000/?mb=1024' | sha256sum
 *   curl -s --limit-rate 1M 'http://127.0.0.1:8000/' > /dev/null     (then Ctrl-C it)
 */

import type { App, ErrorStream } from '../protocol/nsgi.ts';

/** CHUNK_SIZE is the size of every chunk the generator yields: 64 KiB. */
export const CHUNK_SIZE = 64 * 1024;

/** DEFAULT_MB is the body size in MiB when the query names none. */
export const DEFAULT_MB = 64;

/** MAX_MB caps `?mb=` at 4 GiB, so one request cannot ask for an endless body. */
export const MAX_MB = 4096;

const MIB = 1024 * 1024;

/** chunk is allocated once, filled with 0, 1, ..., 255, 0, 1, ... and never changed after. */
const chunk = new Uint8Array(CHUNK_SIZE).map((_, i) => i % 256);

/** app streams `?mb=` MiB of patterned bytes as application/octet-stream. */
export const app: App = (environ, startResponse) => {
  const asked = new URLSearchParams(environ.QUERY_STRING).get('mb') ?? String(DEFAULT_MB);
  if (!/^\d+$/.test(asked)) {
    const message = `mb must be a whole number of MiB, got ${JSON.stringify(asked)}\n`;
    startResponse('400 Bad Request', [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(Buffer.byteLength(message))],
    ]);
    return [message];
  }
  const mb = Math.min(Number(asked), MAX_MB);
  startResponse('200 OK', [
    ['Content-Type', 'application/octet-stream'],
    ['Content-Length', String(mb * MIB)],
  ]);
  return chunks((mb * MIB) / CHUNK_SIZE, environ['nsgi.errors']);
};

/** chunks yields `count` chunks, and says in its `finally` if it was stopped before the end. */
function* chunks(count: number, errors: ErrorStream): Generator<Uint8Array> {
  let pulled = 0;
  try {
    while (pulled < count) {
      pulled++;
      yield chunk;
    }
  } finally {
    // Runs when the body is done and when the server stops early (the client left): the server
    // calls return() on every early stop, which resumes the generator here.
    if (pulled < count) {
      errors.write(`stream: stopped early, ${((pulled * CHUNK_SIZE) / MIB).toFixed(2)} of ${(count * CHUNK_SIZE) / MIB} MiB pulled`);
    }
  }
}

export default app;
