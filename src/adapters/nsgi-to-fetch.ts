/**
 * An nsgi app served as a fetch handler: {@link toFetch}, for runtimes and frameworks that speak
 * fetch, and for testing an app without a socket (`src/testing.ts` is built on it). The promised
 * `Response` resolves when the head is known, which is lazy as on the nsgi server (SPEC §3.2); its
 * body is a stream that pulls the app's iterator on demand.
 */
import type { App, Chunk, ErrorStream } from '../../protocol/nsgi.ts';
import { ResponseCycle } from '../cycle.ts';
import { DrainWaiter } from '../drain.ts';
import type { RequestDescription } from '../environ.ts';
import { ClientGoneError, ProtocolError, STDERR } from '../errors.ts';
import { checkHeaderList } from '../http1/fields.ts';
import { REASONS, connectionOptions, type BodyRule, type HeadCache, type Status } from '../http1/writer.ts';
import { InputBase, inputAfterResponse } from '../input.ts';
import type { ResponseSink } from '../sink.ts';
import { AdapterShared, plainHead, toBytes, type HeaderFields, type ResponseHead } from './plain.ts';

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
  const head = describeRequest(request, url, hooks.target ?? url.pathname + url.search);
  const controller = new AbortController();
  return new Promise<Response>((resolve, reject) => {
    const sink = new StreamSink(resolve, options.highWaterMark ?? 64 * 1024, hooks, shared.heads);
    const runner = new ResponseCycle(sink, head, errors);
    // A body declared empty is no body: nothing of it can be left unread (IN-8).
    const input = new StreamInput(request.headers.get('content-length') === '0' ? null : request.body);
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
      sink.leave(reason);
      runner.abandon();
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
    // Once the response is complete an abort changes nothing, and a Request kept after its
    // response (by a cache or a log) must not keep the finished exchange alive through this listener.
    sink.onDone = () => request.signal.removeEventListener('abort', onAbort);
    runner.run(app, environ);
  });
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new ClientGoneError('the request was aborted');
}

/** describeRequest describes a Request for the environ: its fields, and a Host from the URL when it has none. */
function describeRequest(request: Request, url: URL, target: string): RequestDescription {
  const headers: Array<[string, string]> = [];
  let host: string | undefined;
  for (const [name, value] of request.headers) {
    headers.push([name, value]);
    if (name === 'host') host = value;
  }
  if (host === undefined) {
    host = url.host;
    headers.unshift(['host', host]);
  }
  return { method: request.method, target, version: 'HTTP/1.1', headers, host };
}

/** StreamSink hands a cycle's response to a fetch Response and its body stream. */
class StreamSink implements ResponseSink<HeaderFields> {
  /** onCancel is called when the consumer cancels the body. */
  onCancel: () => void = () => {};
  /** onDone is called once the response is complete, cut, or abandoned. */
  onDone: () => void = () => {};
  /** The request's `nsgi.input`, told when the response is complete (IN-8). */
  input: StreamInput | null = null;
  private readonly stream: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private closedBy: Error | null = null;
  private settled = false;
  private cutError: Error | null = null;
  private readonly waiter = new DrainWaiter();

  constructor(
    private readonly resolve: (response: Response) => void,
    private readonly highWaterMark: number,
    private readonly hooks: RunFetchHooks,
    readonly heads: HeadCache,
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
          this.waiter.drained();
        },
        cancel: () => {
          this.settled = true;
          this.onCancel();
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark }),
    );
  }

  get gone(): boolean {
    return this.closedBy !== null;
  }

  /** leave fails pending and later drains: the consumer has left. */
  leave(reason: Error): void {
    this.closedBy = reason;
    this.waiter.fail(reason);
    if (!this.settled) {
      this.settled = true;
      try {
        this.controller.error(reason);
      } catch {
        // already closed
      }
    }
  }

  checkHeaders(headers: unknown): HeaderFields {
    return checkHeaderList(headers);
  }

  head(status: Status, fields: HeaderFields, rule: BodyRule, knownLength: number): void {
    const head = plainHead(status, fields, rule, knownLength);
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

  data(data: Chunk): boolean {
    if (this.settled) return true;
    const chunk = toBytes(data);
    // Copy a chunk backed by a shared or larger buffer (Buffer's pool): the consumer owns what it reads.
    const own = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength ? chunk : new Uint8Array(chunk);
    this.controller.enqueue(own);
    return (this.controller.desiredSize ?? 0) > 0;
  }

  drain(): Promise<void> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (this.settled || (this.controller.desiredSize ?? 0) > 0) return Promise.resolve();
    return this.waiter.wait();
  }

  end(): void {
    this.input?.responseEnded();
    if (this.settled) return;
    this.settled = true;
    this.controller.close();
  }

  failBeforeHead(err: unknown, isHead: boolean): void {
    this.input?.responseEnded();
    this.settled = true;
    // IN-10: a request body found too large or malformed while the app read it, let through by
    // the app, is answered with its own status (a Request streamed from an nsgi server carries it).
    const status = err instanceof ProtocolError ? err.status : 500;
    const reason = REASONS[status] ?? 'Error';
    const body = err instanceof ProtocolError ? `${reason}: ${err.message}\n` : `${reason}\n`;
    const length = Buffer.byteLength(body);
    this.hooks.onHead?.({ status, reason, headers: [['content-type', 'text/plain; charset=utf-8']], contentLength: length, noBody: isHead, close: false, upgrade: '' });
    this.resolve(
      new Response(isHead ? null : body, {
        status,
        statusText: reason,
        headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(length) },
      }),
    );
  }

  cut(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    // The chunks already queued were sent, as far as the app knows: the reader gets them, then the error.
    this.cutError = error instanceof Error ? error : new Error('the app failed after the head was sent');
    if (this.queueEmpty()) this.controller.error(this.cutError);
  }

  done(): void {
    // The stream's own close or error tells the consumer; only the request's side is let go.
    this.onDone();
  }

  private queueEmpty(): boolean {
    return (this.controller.desiredSize ?? 0) >= this.highWaterMark;
  }
}

/** StreamInput is `nsgi.input` over a Request's body stream, read one chunk per `next()`. */
class StreamInput extends InputBase {
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  /** True once the body has been read to its end. */
  private readToEnd = false;
  /** True once the response ended with the body not read to its end: the rest was let go. */
  private discarded = false;

  constructor(private readonly body: ReadableStream<Uint8Array> | null) {
    super();
  }

  protected iterate(): AsyncIterator<Uint8Array> {
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
}
