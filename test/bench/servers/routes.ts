/**
 * The routes every server under test answers, and the bytes they send. Plain data and pure
 * functions only, so the Node servers and the Bun server share them.
 *
 *   GET /hello                                  13 bytes, `Hello, World!`, with a Content-Length
 *   GET /stream?size=N&chunk=K&mode=sync|async  N bytes in K-byte chunks, chunked coding
 *   GET /sse                                    an event stream: one event, then silence until the client leaves
 *   GET /sse?count=N&every=MS                   N events, the first at once, then one every MS ms, then the end
 *   GET /ws                                     a WebSocket handshake, then every message echoed back
 *   GET /file/NAME                              the file NAME of the folder in $BENCH_FILE_ROOT, with a Content-Length
 */

/** HELLO is the body of `/hello`. */
export const HELLO = Buffer.from('Hello, World!');

/** SSE_EVENT is the one event `/sse` sends before it goes idle. */
export const SSE_EVENT = Buffer.from('data: hello\n\n');

/** MAX_STREAM_SIZE caps `/stream?size=` at 4 GiB, so every download ends. */
export const MAX_STREAM_SIZE = 4 * 1024 ** 3;

/** StreamRequest is what `/stream` was asked for. */
export interface StreamRequest {
  size: number;
  chunk: number;
  mode: 'sync' | 'async';
}

/** parseStreamQuery reads `/stream`'s query string; it returns an error message when it is bad. */
export function parseStreamQuery(query: string): StreamRequest | string {
  const params = new URLSearchParams(query);
  const size = Number(params.get('size') ?? 1024 * 1024);
  const chunk = Number(params.get('chunk') ?? 64 * 1024);
  const mode = params.get('mode') ?? 'sync';
  if (!Number.isInteger(size) || size < 0 || size > MAX_STREAM_SIZE) return `bad size ${params.get('size')}`;
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > 16 * 1024 * 1024) return `bad chunk ${params.get('chunk')}`;
  if (mode !== 'sync' && mode !== 'async') return `bad mode ${mode}`;
  return { size, chunk, mode };
}

/** FILE_ROOT_ENV names the environment variable holding the folder `/file/NAME` serves. */
export const FILE_ROOT_ENV = 'BENCH_FILE_ROOT';

/** FILE_NAME allows plain names only, so `/file/` can never reach outside its folder. */
const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** fileName returns NAME for a path `/file/NAME`, or null for any other path or an unsafe name. */
export function fileName(path: string): string | null {
  if (!path.startsWith('/file/')) return null;
  const name = path.slice('/file/'.length);
  return FILE_NAME.test(name) ? name : null;
}

/** MAX_SSE_COUNT and MAX_SSE_EVERY_MS bound `/sse?count=&every=`, so every timed stream ends. */
export const MAX_SSE_COUNT = 100_000;
export const MAX_SSE_EVERY_MS = 60_000;

/** TimedEvents is what `/sse?count=N&every=MS` asked for. */
export interface TimedEvents {
  count: number;
  every: number;
}

/**
 * parseSseQuery reads `/sse`'s query string: null for the idle stream (no `count`), the timed
 * stream's count and interval, or an error message when they are bad.
 */
export function parseSseQuery(query: string): TimedEvents | null | string {
  const params = new URLSearchParams(query);
  if (!params.has('count')) return null;
  const count = Number(params.get('count'));
  const every = Number(params.get('every') ?? 0);
  if (!Number.isInteger(count) || count < 1 || count > MAX_SSE_COUNT) return `bad count ${params.get('count')}`;
  if (!Number.isInteger(every) || every < 0 || every > MAX_SSE_EVERY_MS) return `bad every ${params.get('every')}`;
  return { count, every };
}

const chunks = new Map<number, Buffer>();

/** chunkOf returns a shared, never-changed buffer of `size` bytes, allocated once per size. */
export function chunkOf(size: number): Buffer {
  let chunk = chunks.get(size);
  if (chunk === undefined) {
    chunk = Buffer.alloc(size, 'x');
    chunks.set(size, chunk);
  }
  return chunk;
}
