/**
 * Testing an app without a socket. {@link request} runs an app against an in-memory request and
 * collects the response; {@link open} does the same but hands back the body chunk by chunk, as the
 * app produces it, so a test can read slowly, stop early, or look at the head before the body.
 *
 * Both are built on {@link toFetch}: the same runner that serves an app through fetch and through
 * node:http keeps the contract here too (lazy head, exc_info, `write()`, Content-Length checks,
 * `return()` exactly once), so what passes here behaves the same on a server.
 *
 * ```ts
 * import { request } from 'nsgi/testing';
 * const res = await request(app, { path: '/user/1' });
 * expect(res.status).toBe(200);
 * expect(res.text()).toBe('Request GET /user/1 has been processed\n');
 * ```
 */
import type { App, ErrorStream, HeaderList } from '../protocol/nsgi.ts';
import { runFetch, type ToFetchOptions } from './adapters/nsgi-to-fetch.ts';

/** TestRequest describes the request to make. Every field is optional. */
export interface TestRequest {
  /** The method; default `GET`. */
  method?: string;
  /** The path and query, such as `/search?q=1`, passed on as written (dot segments kept); default `/`. */
  path?: string;
  /** Request header fields, as pairs or a record. */
  headers?: HeaderList | Record<string, string>;
  /** The request body: text (sent as UTF-8), bytes, or an async iterable of byte chunks (streamed). */
  body?: string | Uint8Array | AsyncIterable<Uint8Array>;
  /** The origin the app sees in its environ; default `http://localhost`. */
  origin?: string;
  /** Aborts the request: `nsgi.signal` fires and the app's iterator is closed. */
  signal?: AbortSignal;
  /** Extra environ keys (after the standard ones), such as a prefixed key a middleware would set. */
  environ?: Record<string, unknown>;
  /** REMOTE_ADDR; default `"127.0.0.1"`. */
  remoteAddress?: string;
  /** SCRIPT_NAME mount path. */
  scriptName?: string;
  /** Also receives what is written to `nsgi.errors` (the response's `errors` collects it either way). */
  errors?: ErrorStream;
}

/** TestResponse is a collected response. */
export interface TestResponse {
  /** The status code. */
  readonly status: number;
  /** The reason phrase. */
  readonly statusText: string;
  /** The header fields as the app gave them, names' case and order kept (hop-by-hop fields removed). */
  readonly headerList: HeaderList;
  /** The header fields as a `Headers` object, for case-insensitive `get()`. */
  readonly headers: Headers;
  /** The whole body (empty for HEAD, 204 and 304). */
  readonly body: Buffer;
  /** True when the app failed after the head had been sent, so the body is cut short (SPEC §8). */
  readonly truncated: boolean;
  /** Everything written to `nsgi.errors` during the request, one entry per write. */
  readonly errors: string[];
  /** The body decoded as UTF-8. */
  text(): string;
  /** The body parsed as JSON. */
  json<T = unknown>(): T;
}

/** TestStream is a response whose body is read as the app produces it. */
export interface TestStream {
  /** The status code. */
  readonly status: number;
  /** The reason phrase. */
  readonly statusText: string;
  /** The header fields as the app gave them. */
  readonly headerList: HeaderList;
  /** The header fields as a `Headers` object. */
  readonly headers: Headers;
  /** Everything written to `nsgi.errors` so far. */
  readonly errors: string[];
  /** The body's chunks, pulled from the app one read at a time; stopping the loop closes the app's iterator. */
  chunks(): AsyncGenerator<Buffer>;
  /** read returns the next chunk, or null at the end of the body. It rejects if the body is cut short. */
  read(): Promise<Buffer | null>;
  /** cancel is the client going away: `nsgi.signal` fires and the app's iterator is closed. */
  cancel(): Promise<void>;
}

/**
 * open runs `app` for one request and resolves when the head is known: at the app's first
 * non-empty chunk, the end of its body, or `flushHead()` (SPEC §3.2), never earlier. The body is
 * then pulled from the app only as it is read.
 */
export async function open(app: App, req: TestRequest = {}): Promise<TestStream> {
  const errors: string[] = [];
  let headerList: HeaderList = [];
  const options: ToFetchOptions = {
    errors: {
      write: (message) => {
        errors.push(message);
        req.errors?.write(message);
      },
    },
    ...(req.environ !== undefined ? { environ: req.environ } : {}),
    ...(req.remoteAddress !== undefined ? { remoteAddress: req.remoteAddress } : {}),
    ...(req.scriptName !== undefined ? { scriptName: req.scriptName } : {}),
    // Pull the app one chunk per read, so a test sees exactly what the app produced so far.
    highWaterMark: 0,
  };
  const path = req.path ?? '/';
  const response = await runFetch(app, toRequest(req), options, {
    onHead: (head) => {
      headerList = head.headers.map(([n, v]) => [n, v]);
    },
    // The path as written, dot segments and all, as a server would pass it on (ENV-20); one a
    // server would refuse (spaces, a fragment) goes through the URL's escaping instead.
    target: /^\/[\x21-\x22\x24-\x7e]*$/.test(path) ? path : undefined,
  });
  const reader = response.body?.getReader() ?? null;
  let ended = reader === null;
  const read = async (): Promise<Buffer | null> => {
    if (ended || reader === null) return null;
    const r = await reader.read();
    if (r.done) {
      ended = true;
      return null;
    }
    return Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
  };
  const cancel = async (): Promise<void> => {
    if (ended || reader === null) return;
    ended = true;
    await reader.cancel();
  };
  return {
    status: response.status,
    statusText: response.statusText,
    headerList,
    headers: response.headers,
    errors,
    read,
    cancel,
    async *chunks() {
      try {
        for (;;) {
          const chunk = await read();
          if (chunk === null) return;
          yield chunk;
        }
      } finally {
        await cancel();
      }
    },
  };
}

/**
 * request runs `app` for one request and collects the whole response. It never rejects because
 * of the app: an error before the head is a 500 response, an error after it a `truncated` one.
 */
export async function request(app: App, req: TestRequest = {}): Promise<TestResponse> {
  const stream = await open(app, req);
  const parts: Buffer[] = [];
  let truncated = false;
  try {
    for (;;) {
      const chunk = await stream.read();
      if (chunk === null) break;
      parts.push(chunk);
    }
  } catch {
    truncated = true;
  }
  const body = Buffer.concat(parts);
  return {
    status: stream.status,
    statusText: stream.statusText,
    headerList: stream.headerList,
    headers: stream.headers,
    body,
    truncated,
    errors: stream.errors,
    text: () => body.toString('utf8'),
    json: <T>() => JSON.parse(body.toString('utf8')) as T,
  };
}

/** toRequest builds the fetch Request that toFetch turns into an environ. */
function toRequest(req: TestRequest): Request {
  const origin = req.origin ?? 'http://localhost';
  const path = req.path ?? '/';
  const init: RequestInit & { duplex?: 'half' } = { method: req.method ?? 'GET' };
  if (req.headers !== undefined) init.headers = req.headers;
  if (req.signal !== undefined) init.signal = req.signal;
  const body = req.body;
  // An empty body is sent as none, as a client sends Content-Length: 0 and no bytes.
  if (body !== undefined && !((typeof body === 'string' || body instanceof Uint8Array) && body.length === 0)) {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      init.body = body;
    } else {
      const it = body[Symbol.asyncIterator]();
      init.body = new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            const r = await it.next();
            if (r.done) controller.close();
            else controller.enqueue(r.value);
          },
          async cancel() {
            await it.return?.();
          },
        },
        { highWaterMark: 0 },
      );
      init.duplex = 'half';
    }
  }
  // A path is joined to the origin, not resolved against it: `//evil.example/x` is a path here,
  // as it is in a request-target, not another host.
  const url = path.startsWith('/') ? new URL(origin.replace(/\/+$/, '') + path) : new URL(path, origin);
  return new Request(url, init);
}
