/**
 * An nsgi app served by `node:http`: {@link toNodeListener} turns an app into a request listener,
 * so it mounts wherever a Node `(req, res)` listener fits (`http.createServer`, `https`, Express's
 * `app.use`, a test harness).
 *
 * What node:http does and what this adapter does:
 * - HTTP parsing, framing, keep-alive, pipelining, Date and reading an unread body to the end are
 *   node:http's. The adapter hands it the status and headers (hop-by-hop fields removed, SR-9) and
 *   the body bytes; it lets node:http choose chunked or Content-Length framing.
 * - The lazy head, exc_info, `write()`, `flushHead()`, the body pump and `return()` are the shared
 *   {@link ResponseRunner}'s, as in `toFetch`.
 * - Backpressure: the runner pulls the next chunk only while `res.write()` returns true, else after
 *   `'drain'` (BODY-12). The request body is read through `req`'s own async iterator, which pauses
 *   the socket while the app does not read (IN-4).
 * - Disconnect: `res` closing before it finished aborts `nsgi.signal` (ENV-27), fails pending
 *   writes and input reads, and closes the iterator.
 * - `Expect: 100-continue` (IN-6): node:http answers it by itself, before the app runs, unless the
 *   server has a `'checkContinue'` listener. Register the same listener for both events
 *   (`server.on('checkContinue', listener)`, as {@link createNodeServer} does) and the adapter sends
 *   `100 Continue` at the app's first read of `nsgi.input`, as the spec asks.
 * - Early hints and trailers are not offered: `nsgi.early_hints` and `nsgi.set_trailers` are absent
 *   (EXT-2).
 */
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { App, Environ, ErrorStream, Input } from '../../protocol/nsgi.ts';
import { readBytes, readText } from '../body.ts';
import { buildEnviron } from '../environ.ts';
import { ClientGoneError } from '../errors.ts';
import type { RequestHead } from '../http1/parser.ts';
import { ResponseRunner, type ResponseHead, type ResponseSink } from './runner.ts';

/** NodeListenerOptions configures {@link toNodeListener}. */
export interface NodeListenerOptions {
  /** Where app errors go (`nsgi.errors`); default stderr. */
  errors?: ErrorStream;
  /** The path the app is mounted at; moved from PATH_INFO to SCRIPT_NAME (SPEC §2.2). */
  scriptName?: string;
  /** Sets `nsgi.multiprocess`. */
  multiprocess?: boolean;
}

/** NodeListener is a node:http request listener. */
export type NodeListener = (req: IncomingMessage, res: ServerResponse) => void;

const stderr: ErrorStream = {
  write(message: string): void {
    process.stderr.write(message.endsWith('\n') ? message : message + '\n');
  },
};

/**
 * toNodeListener returns a node:http request listener that serves `app`.
 *
 * ```ts
 * const listener = toNodeListener(app);
 * const server = http.createServer(listener);
 * server.on('checkContinue', listener); // 100 Continue at the app's first read
 * server.listen(8000);
 * ```
 */
export function toNodeListener(app: App, options: NodeListenerOptions = {}): NodeListener {
  if (typeof app !== 'function') throw new TypeError(`toNodeListener() needs an app function, got ${typeof app}`);
  const errors = options.errors ?? stderr;
  const scriptName = (options.scriptName ?? '').replace(/\/+$/, '');
  const multiprocess = options.multiprocess ?? false;
  return (req, res) => {
    const socket = req.socket;
    const head = requestHead(req);
    const controller = new AbortController();
    const sink = new NodeSink(res);
    const runner = new ResponseRunner(sink, errors, head.method === 'HEAD', `${head.method} ${head.target}`);
    const input = new NodeInput(req, () => {
      // IN-6, IN-7: one 100 Continue, at the first read, only if node:http has not sent it.
      const sent100 = (res as unknown as { _sent100?: boolean })._sent100 === true;
      if (head.expectContinue && head.version === 'HTTP/1.1' && !sent100 && !runner.headSent && !res.headersSent) res.writeContinue();
    });
    const environ: Environ = buildEnviron(
      head,
      {
        remoteAddress: socket.remoteAddress ?? '',
        remotePort: String(socket.remotePort ?? ''),
        localAddress: socket.localAddress ?? '',
        localPort: String(socket.localPort ?? ''),
        urlScheme: (socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http',
        scriptName,
        multiprocess,
        errors,
      },
      input,
      controller.signal,
    );
    res.on('close', () => {
      if (res.writableFinished) return;
      // ENV-27: the client left before the response was complete.
      const reason = new ClientGoneError();
      sink.gone(reason);
      if (!controller.signal.aborted) controller.abort(reason);
      runner.abort();
    });
    runner.run(app, environ);
  };
}

/**
 * createNodeServer is `http.createServer` with `app` served by {@link toNodeListener} for both
 * `'request'` and `'checkContinue'`, so `100 Continue` waits for the app's first read.
 */
export function createNodeServer(app: App, options: NodeListenerOptions = {}): http.Server {
  const listener = toNodeListener(app, options);
  const server = http.createServer(listener);
  server.on('checkContinue', listener);
  return server;
}

/** requestHead describes a node:http request the way the reference parser does, for buildEnviron. */
function requestHead(req: IncomingMessage): RequestHead {
  const raw = req.rawHeaders;
  const headers: Array<[string, string]> = [];
  let host: string | undefined;
  let contentLength = -1;
  let chunked = false;
  let expectContinue = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    headers.push([name, value]);
    const lower = name.toLowerCase();
    if (lower === 'host' && host === undefined) host = value;
    else if (lower === 'content-length') contentLength = Number(value);
    else if (lower === 'transfer-encoding') chunked = /chunked/i.test(value);
    else if (lower === 'expect') expectContinue = /^100-continue$/i.test(value.trim());
  }
  return {
    method: req.method ?? 'GET',
    target: req.url ?? '/',
    version: req.httpVersionMajor === 1 && req.httpVersionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1',
    headers,
    host,
    contentLength,
    chunked,
    keepAlive: !/close/i.test(req.headers.connection ?? ''),
    expectContinue,
    upgrade: false,
  };
}

/** NodeSink writes a runner's response to a node:http ServerResponse. */
class NodeSink implements ResponseSink {
  private closedBy: Error | null = null;
  private drainWaiter: Promise<void> | null = null;
  private drainResolve: (() => void) | null = null;
  private drainReject: ((err: Error) => void) | null = null;

  constructor(private readonly res: ServerResponse) {
    res.on('drain', () => {
      const resolve = this.drainResolve;
      this.drainWaiter = this.drainResolve = this.drainReject = null;
      resolve?.();
    });
  }

  /** gone fails pending and later drains: the client has left. */
  gone(reason: Error): void {
    this.closedBy = reason;
    const reject = this.drainReject;
    this.drainWaiter = this.drainResolve = this.drainReject = null;
    reject?.(reason);
  }

  head(head: ResponseHead, flush: boolean): void {
    const flat: string[] = [];
    for (const [name, value] of head.headers) flat.push(name, value);
    if (head.close) flat.push('Connection', 'close');
    const hasLength = head.headers.some(([n]) => n.length === 14 && n.toLowerCase() === 'content-length');
    if (!hasLength && head.contentLength >= 0) flat.push('Content-Length', String(head.contentLength));
    this.res.writeHead(head.status, head.reason || STATUS_CODES[head.status] || '', flat);
    // node:http holds the head until the first write or end(); flushHead() wants it now.
    if (flush) this.res.flushHeaders();
  }

  data(chunk: Uint8Array): boolean {
    if (this.closedBy !== null) return true;
    return this.res.write(chunk);
  }

  drain(): Promise<void> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (!this.res.writableNeedDrain) return Promise.resolve();
    this.drainWaiter ??= new Promise<void>((resolve, reject) => {
      this.drainResolve = resolve;
      this.drainReject = reject;
    });
    return this.drainWaiter;
  }

  end(close: boolean): void {
    if (close && !this.res.headersSent) this.res.setHeader('Connection', 'close');
    if (close) {
      // node:http lets go of the socket on 'finish', so take hold of it first (SR-17).
      const socket = this.res.socket;
      this.res.once('finish', () => socket?.destroySoon());
    }
    this.res.end();
  }

  failBeforeHead(isHead: boolean): void {
    const body = 'Internal Server Error\n';
    this.res.writeHead(500, 'Internal Server Error', [
      'Content-Type', 'text/plain; charset=utf-8',
      'Content-Length', String(Buffer.byteLength(body)),
    ]);
    this.res.end(isHead ? undefined : body);
  }

  cut(): void {
    // ERR-4: no terminating chunk, or fewer bytes than the Content-Length said. node:http corks
    // the socket until the next tick, so what was written is flushed first; then the socket is
    // ended and destroyed without the response being finished.
    const socket = this.res.socket;
    if (socket === null) {
      this.res.destroy();
      return;
    }
    while (socket.writableCorked > 0) socket.uncork();
    socket.destroySoon();
  }
}

/**
 * NodeInput is `nsgi.input` over an IncomingMessage: an async iterable of its body, read through
 * the stream's own iterator so the socket pauses while the app does not read (IN-4).
 */
class NodeInput implements Input {
  private iterated = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly firstRead: () => void,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new TypeError('nsgi.input can be iterated only once (SPEC §5, IN-2)');
    this.iterated = true;
    let inner: AsyncIterator<Buffer> | null = null;
    const open = (): AsyncIterator<Buffer> => {
      if (inner === null) {
        this.firstRead();
        // destroyOnReturn: false, so that an app that stops reading early does not destroy the
        // request, and with it the socket its response is about to use.
        inner = this.req.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>;
      }
      return inner;
    };
    const req = this.req;
    return {
      next: async () => {
        try {
          return await open().next();
        } catch (err) {
          // IN-9: a client that left mid-body fails the read with an Error.
          throw err instanceof Error ? err : new ClientGoneError();
        }
      },
      return: async () => {
        // Stop reading: take the iterator's listeners off, then let the rest of the body flow
        // away unread so that the connection can carry the next request (IN-8).
        if (inner !== null) {
          await inner.return?.();
          req.resume();
        }
        return { done: true, value: undefined };
      },
    };
  }

  bytes(): Promise<Uint8Array> {
    return readBytes(this);
  }

  text(): Promise<string> {
    return readText(this);
  }
}
