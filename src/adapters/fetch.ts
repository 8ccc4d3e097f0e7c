/**
 * Fetch-style handlers and nsgi apps, each served as the other.
 *
 * {@link fromFetch} runs a `(request: Request) => Response` handler (Hono, itty-router, a Deno or
 * Bun style handler) as an nsgi app: the request body is a `ReadableStream` fed from `nsgi.input`
 * only as the handler reads it, the response body is pulled from the `Response`'s stream only as
 * fast as the server can send it, and `request.signal` aborts when the client leaves.
 *
 * {@link toFetch} goes the other way: it turns an nsgi app into a fetch handler, for runtimes and
 * frameworks that speak fetch, and for testing an app without a socket (`src/testing.ts` is built
 * on it). The promised `Response` resolves when the head is known, which is lazy as on the nsgi
 * server (SPEC §3.2); its body is a stream that pulls the app's iterator on demand.
 */
import { STATUS_CODES } from 'node:http';
import type { ReadableStreamReadResult } from 'node:stream/web';
import type { App, Environ, ErrorStream, HeaderList, Input } from '../../protocol/nsgi.ts';
import { inputAfterResponse, readBytes, readText } from '../body.ts';
import { ClientGoneError, STDERR } from '../errors.ts';
import type { RequestHead } from '../http1/parser.ts';
import { connectionOptions } from '../http1/writer.ts';
import { AdapterShared, ResponseRunner, type ResponseHead, type ResponseSink } from './runner.ts';

/** FetchHandler is a fetch-style request handler. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

// ---- fromFetch --------------------------------------------------------------------------------

/** Request fields that describe one connection, not the message; not passed to the handler. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade']);
/** Methods undici refuses to build a Request for (Fetch §2.2.1 forbidden methods). */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);
/** How many bytes fromFetch gathers, when the handler's body has them ready, before it sends the head. */
const READY_BYTES_LIMIT = 64 * 1024;

/**
 * fromFetch turns a fetch handler into an nsgi app.
 *
 * The Request: its URL is `nsgi.url_scheme`, the Host field (else SERVER_NAME and SERVER_PORT) and
 * REQUEST_URI, the target exactly as received (so a middleware's SCRIPT_NAME/PATH_INFO rewrite is
 * not seen by the handler). Its headers are `nsgi.headers` less the hop-by-hop fields. It has a
 * body when the request declares one (Content-Length or Transfer-Encoding) and the method is not
 * GET or HEAD; the body is read from `nsgi.input` only when the handler reads it, so
 * `Expect: 100-continue` is answered then. `request.signal` is `nsgi.signal`.
 *
 * The Response: its status and headers go to `startResponse` (several Set-Cookie fields stay
 * several). Body chunks the stream has ready at once (a string or JSON body) are sent with the
 * head, and a body that ends at once is returned as an array, so the server can send a
 * Content-Length. A body whose first chunk is not ready by the next turn of the event loop (a
 * stream, server-sent events) gets its head sent at once with `flushHead()`: in fetch, a resolved
 * Response means the head is decided, and a client waiting on an event stream should see it.
 * Stopping the body early (client gone, HEAD) cancels the Response's stream.
 */
export function fromFetch(handler: FetchHandler): App {
  if (typeof handler !== 'function') throw new TypeError(`fromFetch() needs a handler function, got ${typeof handler}`);
  return async (environ, startResponse) => {
    const method = environ.REQUEST_METHOD;
    if (FORBIDDEN_METHODS.has(method.toUpperCase())) {
      const text = `${method} is not supported by a fetch handler\n`;
      startResponse('501 Not Implemented', [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(text.length)]]);
      return [text];
    }
    const signal = environ['nsgi.signal'];
    const init: RequestInit & { duplex?: 'half' } = { method, headers: requestHeaders(environ), signal };
    const hasBody = environ.CONTENT_LENGTH !== undefined || environ.HTTP_TRANSFER_ENCODING !== undefined;
    if (hasBody && method !== 'GET' && method !== 'HEAD') {
      init.body = inputStream(environ['nsgi.input']);
      // undici needs this for a streamed request body: the body is sent as it is produced.
      init.duplex = 'half';
    }
    const response = await handler(new Request(requestUrl(environ), init));
    if (!(response instanceof Response) || response.type === 'error') {
      throw new TypeError(`the fetch handler resolved to ${response instanceof Response ? 'a network error (Response.error())' : typeof response}, not a Response`);
    }
    const write = startResponse(`${response.status} ${response.statusText || STATUS_CODES[response.status] || ''}`.trimEnd(), responseHeaders(response.headers, response.status));
    const body = response.body;
    if (body === null) return [];
    const reader = body.getReader();
    // Take what the stream has ready now, so a small body leaves with the head.
    const ready: Uint8Array[] = [];
    let readyBytes = 0;
    let pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
    for (;;) {
      pending = reader.read();
      let r: ReadableStreamReadResult<Uint8Array> | typeof NOT_READY;
      try {
        r = await withinThisTurn(pending);
      } catch (err) {
        // Nothing sent yet: the server answers 500. Else the ready chunks go out, then the error.
        if (ready.length === 0) throw err;
        break;
      }
      if (r === NOT_READY) break;
      pending = null;
      if (r.done) {
        reader.releaseLock();
        return ready;
      }
      ready.push(r.value);
      readyBytes += r.value.length;
      if (readyBytes >= READY_BYTES_LIMIT) break;
    }
    if (ready.length === 0) write.flushHead();
    return responseBody(reader, ready, pending, signal);
  };
}

const NOT_READY = Symbol('not ready');

/** withinThisTurn settles as `p` if it settles before the event loop's next turn, else as NOT_READY. */
function withinThisTurn<T>(p: Promise<T>): Promise<T | typeof NOT_READY> {
  return Promise.race([p, new Promise<typeof NOT_READY>((resolve) => setImmediate(resolve, NOT_READY))]);
}

/**
 * responseBody yields a Response stream's chunks, reading the next one only when the server asks.
 * Its `finally` cancels the stream when the server stops early (BODY-16), and a client that leaves
 * while a read is pending cancels it at once through `nsgi.signal`.
 */
async function* responseBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ready: Uint8Array[],
  pending: Promise<ReadableStreamReadResult<Uint8Array>> | null,
  signal: AbortSignal,
): AsyncGenerator<Uint8Array> {
  let ended = false;
  pending?.catch(() => {});
  const onAbort = (): void => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (const chunk of ready) yield chunk;
    for (;;) {
      const r: ReadableStreamReadResult<Uint8Array> = await (pending ?? reader.read());
      pending = null;
      if (r.done) {
        ended = true;
        return;
      }
      yield r.value;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!ended) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** requestUrl rebuilds the request's URL from the environ. */
function requestUrl(environ: Environ): string {
  const uri = environ.REQUEST_URI;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(uri)) return uri; // absolute-form
  let host = environ.HTTP_HOST;
  if (host === undefined || host === '') {
    const scheme = environ['nsgi.url_scheme'];
    const port = environ.SERVER_PORT;
    const isDefault = (scheme === 'http' && port === '80') || (scheme === 'https' && port === '443');
    host = isDefault ? environ.SERVER_NAME : `${environ.SERVER_NAME}:${port}`;
  }
  // OPTIONS * has no path a URL can hold; the handler sees "/".
  const path = uri.startsWith('/') ? uri : '/';
  return `${environ['nsgi.url_scheme']}://${host}${path}`;
}

function requestHeaders(environ: Environ): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of environ['nsgi.headers']) {
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push([name, value]);
  }
  return out;
}

function responseHeaders(headers: Headers, status: number): HeaderList {
  const out: HeaderList = [];
  for (const [name, value] of headers) {
    // Connection: close is the one hop-by-hop field an app may give (SR-10, SR-11); toFetch passes
    // it on. A 426 keeps its Upgrade (SR-9).
    if (name === 'connection' && /^[ \t]*close[ \t]*$/i.test(value)) out.push([name, 'close']);
    if (name === 'upgrade' && status === 426) out.push([name, value]);
    if (name === 'set-cookie' || HOP_BY_HOP.has(name)) continue;
    out.push([name, value]);
  }
  for (const cookie of headers.getSetCookie()) out.push(['set-cookie', cookie]);
  return out;
}

/** inputStream is a pull-based ReadableStream over `nsgi.input`: each read of it is one read of the input. */
function inputStream(input: Input): ReadableStream<Uint8Array> {
  let it: AsyncIterator<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        it ??= input[Symbol.asyncIterator]();
        const r = await it.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      async cancel() {
        await it?.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

// ---- toFetch ----------------------------------------------------------------------------------

/** ToFetchOptions configures {@link toFetch}. */
export interface ToFetchOptions {
  /** Where app errors go (`nsgi.errors`); default stderr. */
  errors?: ErrorStream;
  /** REMOTE_ADDR: a fetch Request does not carry the peer; default `"127.0.0.1"`. */
  remoteAddress?: string;
  /** REMOTE_PORT; default `"0"`. */
  remotePort?: string;
  /** The path the app is mounted at; moved from PATH_INFO to SCRIPT_NAME (SPEC §2.2). */
  scriptName?: string;
  /** Extra environ keys, set after the standard ones (for tests: a prefixed key, say). */
  environ?: Record<string, unknown>;
  /** High-water mark in bytes of the response stream; the app is pulled while less is queued. Default 64 KiB. */
  highWaterMark?: number;
}

/** InternalOptions are hooks for testing.ts, not part of the public API. */
export interface RunFetchHooks {
  /** Called with the head as the app gave it (names' case and order kept). */
  onHead?: (head: ResponseHead) => void;
  /**
   * The request-target as written, for REQUEST_URI, PATH_INFO and QUERY_STRING: a URL removes dot
   * segments and an empty query, which a server never does (ENV-20).
   */
  target?: string;
}

/**
 * toFetch turns an nsgi app into a fetch handler.
 *
 * The environ is built from the Request by the same code as the nsgi server's, with these
 * approximations, since a Request is not a connection: REQUEST_URI is the URL's path and query (a
 * Request has no request-target); `nsgi.headers` are the Request's headers as `Headers` gives them
 * (lower-case names, sorted, repeated fields joined with ", "), plus a Host field from the URL when
 * the Request has none; SERVER_PROTOCOL is `"HTTP/1.1"`; REMOTE_ADDR and REMOTE_PORT come from the
 * options; CONTENT_LENGTH is present only when the Request has a Content-Length header (a body
 * given as a string or stream has none). `nsgi.early_hints` and `nsgi.set_trailers` are absent.
 *
 * The Response promise resolves when the head is known: with the first non-empty chunk, at the
 * end of the body, or at `flushHead()` (SPEC §3.2). An app error before that gives a 500 Response;
 * after it, the body stream errors. The body stream pulls the app only while less than its
 * high-water mark is queued, and cancelling it closes the app's iterator. `request.signal`
 * aborting, or the body being cancelled, aborts `nsgi.signal`. A request body the app has not read
 * to its end when its response ends is cancelled, and a later read rejects (IN-8), as on the
 * reference server.
 */
export function toFetch(app: App, options: ToFetchOptions = {}): (request: Request) => Promise<Response> {
  if (typeof app !== 'function') throw new TypeError(`toFetch() needs an app function, got ${typeof app}`);
  const shared = new AdapterShared();
  return (request) => runFetch(app, request, options, {}, shared);
}

/** runFetch serves one Request with `app`; see {@link toFetch}. */
export function runFetch(app: App, request: Request, options: ToFetchOptions, hooks: RunFetchHooks, shared = new AdapterShared()): Promise<Response> {
  const errors = options.errors ?? STDERR;
  const url = new URL(request.url);
  const head = requestHead(request, url, hooks.target ?? url.pathname + url.search);
  const controller = new AbortController();
  return new Promise<Response>((resolve, reject) => {
    const sink = new StreamSink(resolve, options.highWaterMark ?? 64 * 1024, hooks);
    const runner = new ResponseRunner(sink, errors, shared.heads, head.method === 'HEAD', `${head.method} ${head.target}`);
    // A body declared empty is no body: nothing of it can be left unread (IN-8).
    const input = new StreamInput(head.contentLength === 0 ? null : request.body);
    sink.input = input;
    const scheme = url.protocol === 'https:' ? 'https' : 'http';
    const environ = shared.environs.build(
      head,
      {
        remoteAddress: options.remoteAddress ?? '127.0.0.1',
        remotePort: options.remotePort ?? '0',
        localAddress: url.hostname,
        localPort: url.port || (scheme === 'https' ? '443' : '80'),
        urlScheme: scheme,
        scriptName: (options.scriptName ?? '').replace(/\/+$/, ''),
        multiprocess: false,
        errors,
      },
      input,
      controller.signal,
    );
    if (options.environ !== undefined) Object.assign(environ, options.environ);
    const leave = (reason: Error): void => {
      if (!controller.signal.aborted) controller.abort(reason);
      sink.gone(reason);
      runner.abort();
      if (!runner.headSent) reject(reason);
    };
    sink.onCancel = () => leave(new ClientGoneError('the response body was cancelled'));
    if (request.signal.aborted) {
      leave(asError(request.signal.reason));
      return;
    }
    const onAbort = (): void => {
      if (!runner.finished) leave(asError(request.signal.reason));
    };
    request.signal.addEventListener('abort', onAbort, { once: true });
    runner.run(app, environ);
  });
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new ClientGoneError('the request was aborted');
}

/** requestHead describes a Request the way the reference parser describes a request, for buildEnviron. */
function requestHead(request: Request, url: URL, target: string): RequestHead {
  const headers: Array<[string, string]> = [];
  let host: string | undefined;
  let contentLength = -1;
  for (const [name, value] of request.headers) {
    headers.push([name, value]);
    if (name === 'host') host = value;
    else if (name === 'content-length') contentLength = Number(value);
  }
  if (host === undefined) {
    host = url.host;
    headers.unshift(['host', host]);
  }
  return {
    method: request.method,
    target,
    version: 'HTTP/1.1',
    headers,
    host,
    contentLength,
    chunked: request.body !== null && contentLength < 0,
    keepAlive: true,
    expectContinue: false,
    upgrade: false,
  };
}

/** StreamSink hands a runner's response to a fetch Response and its body stream. */
class StreamSink implements ResponseSink {
  /** onCancel is called when the consumer cancels the body. */
  onCancel: () => void = () => {};
  /** The request's `nsgi.input`, told when the response is complete (IN-8). */
  input: StreamInput | null = null;
  private readonly stream: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private closedBy: Error | null = null;
  private done = false;
  private cutError: Error | null = null;
  private waiter: { resolve: () => void; reject: (err: Error) => void } | null = null;

  constructor(
    private readonly resolve: (response: Response) => void,
    private readonly highWaterMark: number,
    private readonly hooks: RunFetchHooks,
  ) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        pull: () => {
          if (this.cutError !== null) {
            if (this.queueEmpty()) this.controller.error(this.cutError);
            return;
          }
          const w = this.waiter;
          this.waiter = null;
          w?.resolve();
        },
        cancel: () => {
          this.done = true;
          this.onCancel();
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark }),
    );
  }

  /** gone fails pending and later drains: the consumer has left. */
  gone(reason: Error): void {
    this.closedBy = reason;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(reason);
    if (!this.done) {
      this.done = true;
      try {
        this.controller.error(reason);
      } catch {
        // already closed
      }
    }
  }

  head(head: ResponseHead): void {
    this.hooks.onHead?.(head);
    const headers = new Headers();
    for (const [name, value] of head.headers) headers.append(name, value);
    if (head.contentLength >= 0 && !headers.has('content-length')) headers.set('content-length', String(head.contentLength));
    // A Response has no connection; the app's Connection: close is passed on for a server to honour.
    const connection = connectionOptions(head.upgrade !== '', head.close, false);
    if (connection !== '') headers.set('connection', connection);
    const nullBody = head.noBody || head.status === 205;
    this.resolve(new Response(nullBody ? null : this.stream, { status: head.status, statusText: head.reason, headers }));
  }

  data(chunk: Uint8Array): boolean {
    if (this.done) return true;
    // Copy a chunk backed by a shared or larger buffer (Buffer's pool): the consumer owns what it reads.
    const own = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength ? chunk : new Uint8Array(chunk);
    this.controller.enqueue(own);
    return (this.controller.desiredSize ?? 0) > 0;
  }

  drain(): Promise<void> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (this.done || (this.controller.desiredSize ?? 0) > 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  end(): void {
    this.input?.responseEnded();
    if (this.done) return;
    this.done = true;
    this.controller.close();
  }

  failBeforeHead(isHead: boolean): void {
    this.input?.responseEnded();
    this.done = true;
    const body = 'Internal Server Error\n';
    this.hooks.onHead?.({ status: 500, reason: 'Internal Server Error', headers: [['content-type', 'text/plain; charset=utf-8']], contentLength: body.length, noBody: isHead, close: false, upgrade: '' });
    this.resolve(
      new Response(isHead ? null : body, {
        status: 500,
        statusText: 'Internal Server Error',
        headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length) },
      }),
    );
  }

  cut(error: unknown): void {
    if (this.done) return;
    this.done = true;
    // The chunks already queued were sent, as far as the app knows: the reader gets them, then the error.
    this.cutError = error instanceof Error ? error : new Error('the app failed after the head was sent');
    if (this.queueEmpty()) this.controller.error(this.cutError);
  }

  private queueEmpty(): boolean {
    return (this.controller.desiredSize ?? 0) >= this.highWaterMark;
  }
}

/** StreamInput is `nsgi.input` over a Request's body stream, read one chunk per `next()`. */
class StreamInput implements Input {
  private iterated = false;
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  /** True once the body has been read to its end. */
  private readToEnd = false;
  /** True once the response ended with the body not read to its end: the rest was let go. */
  private discarded = false;

  constructor(private readonly body: ReadableStream<Uint8Array> | null) {}

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new TypeError('nsgi.input can be iterated only once (SPEC §5, IN-2)');
    this.iterated = true;
    return {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        if (this.discarded) throw inputAfterResponse();
        if (this.body === null) return { done: true, value: undefined };
        this.reader ??= this.body.getReader();
        const r = await this.reader.read();
        if (r.done && this.discarded) throw inputAfterResponse();
        if (r.done) this.readToEnd = true;
        return r.done ? { done: true, value: undefined } : { done: false, value: r.value };
      },
      return: async (): Promise<IteratorResult<Uint8Array>> => {
        await this.reader?.cancel().catch(() => {});
        return { done: true, value: undefined };
      },
    };
  }

  /**
   * responseEnded is the response complete. A body not read to its end is cancelled, and a later
   * read rejects rather than ending early (IN-8), as on the reference server.
   */
  responseEnded(): void {
    if (this.body === null || this.readToEnd) return;
    this.discarded = true;
    if (this.reader !== null) this.reader.cancel().catch(() => {});
    else if (!this.body.locked) this.body.cancel().catch(() => {});
  }

  bytes(): Promise<Uint8Array> {
    return readBytes(this);
  }

  text(): Promise<string> {
    return readText(this);
  }
}
