/**
 * fromNodeListener: a node:http request listener, `(req, res) => void` (an Express app, Koa's
 * `app.callback()`, a plain handler), served as an nsgi app on nsgi's server or any other.
 *
 * The listener gets node:http's own `IncomingMessage` and `ServerResponse`, so everything
 * frameworks reach for works (`res.setHeader`, `res.writeHead`, `pipe`, Express replacing their
 * prototypes); only the socket under them is this adapter's: a Writable that carries what the
 * response writes into the nsgi body, and reports the client as node:http's socket would.
 *
 * - The head: node:http serializes it into `res._header` and writes it with the first bytes. The
 *   adapter reads status and fields back from that text (so whatever way the listener set them
 *   counts), drops the fields the server owns (Connection, Keep-Alive, Transfer-Encoding, Date),
 *   and keeps Content-Length, which nsgi's server then enforces. `res.flushHeaders()` maps to
 *   `write.flushHead()` (SPEC §4.6). node:http is kept from chunk-encoding the body
 *   (`useChunkedEncodingByDefault = false`); the nsgi server frames it instead.
 * - Backpressure: a write is acknowledged only when the nsgi server pulls it, so `res.write()`
 *   returns false and `'drain'` comes exactly as on node:http when the client reads slowly, and
 *   `pipe()` pauses its source (SPEC §3.3).
 * - The request body is pulled from `nsgi.input` when the listener reads `req` (so Expect:
 *   100-continue is answered then, SPEC §5); `req.complete` is set at its end.
 * - The client leaving (`nsgi.signal`) or the body being closed early aborts `req` (`'aborted'`,
 *   `'close'`) and closes `res` (`'close'` without `'finish'`), as on node:http.
 * - Trailers are not carried: node:http writes them only inside its own chunked coding, which
 *   the adapter turns off so that the nsgi server frames the body; node:http then refuses a
 *   `Trailer` header itself (ERR_HTTP_TRAILER_INVALID, a 500) and ignores `res.addTrailers()`.
 */
import { IncomingMessage, ServerResponse, STATUS_CODES, type RequestListener } from 'node:http';
import { Writable } from 'node:stream';
import type { App, Body, Environ, HeaderList, StartResponse, Write } from '../../protocol/nsgi.ts';
import { decodePath } from '../environ.ts';

/** NodeRequestListener is a node:http request listener, as `http.createServer` takes it. */
export type NodeRequestListener = RequestListener;

/** OWNED_BY_SERVER are the response fields node:http writes that the nsgi server sets itself. */
const OWNED_BY_SERVER = new Set(['connection', 'keep-alive', 'transfer-encoding', 'date']);

/** RESPONSE_HIGH_WATER_MARK is how many response bytes wait for the pump before `res.write()` returns false: 64 KiB, the nsgi server's output buffer. */
const RESPONSE_HIGH_WATER_MARK = 64 * 1024;

/**
 * fromNodeListener returns an nsgi app that runs `listener` for each request, with node:http's
 * request and response objects. See the file comment for how each side is carried.
 */
export function fromNodeListener(listener: NodeRequestListener): App {
  if (typeof listener !== 'function') throw new TypeError(`fromNodeListener() needs a (req, res) listener function, got ${typeof listener}`);
  return (environ, startResponse) => {
    const exchange = new ListenerExchange(environ, startResponse);
    const returned: unknown = listener(exchange.req, exchange.res);
    // An async listener's rejection would otherwise be unhandled: it fails the response instead
    // (a 500 before the head, a cut after it, SPEC §8).
    if (returned instanceof Promise) returned.catch((err: unknown) => exchange.fail(err instanceof Error ? err : new Error(String(err))));
    return exchange.body();
  };
}

/** Pending is one write of the response, waiting for the nsgi server to pull it. */
interface Pending {
  bytes: Buffer;
  done: (err?: Error | null) => void;
}

/** ListenerExchange is one request through the adapter: the node objects and the body queue. */
class ListenerExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  private readonly socket: ResponseSocket;
  private readonly queue: Pending[] = [];
  private wake: (() => void) | null = null;
  private finished = false;
  private failed: Error | null = null;
  private closed = false;
  /** Header bytes still to strip from the front of what node:http writes. */
  private headBytes = -1;
  private write: Write | null = null;
  private input: AsyncIterator<Uint8Array> | null = null;

  constructor(
    private readonly environ: Environ,
    private readonly startResponse: StartResponse,
  ) {
    this.socket = new ResponseSocket(this, environ);
    const req = new IncomingMessage(this.socket as never);
    fillRequest(req, environ);
    // Own property: Express swaps req's prototype, which must not drop this.
    req._read = () => void this.pullInput();
    // node:http holds reads back until the first _read (its parser pushes on its own); this
    // _read pulls, so reading ahead is allowed from the start.
    (req as unknown as { _readableState: { readingMore: boolean } })._readableState.readingMore = false;
    this.req = req;
    const res = new ServerResponse(req);
    res.useChunkedEncodingByDefault = false;
    res.sendDate = false;
    res.assignSocket(this.socket as never);
    res.on('finish', () => {
      this.finished = true;
      this.notify();
    });
    this.res = res;
    const signal = environ['nsgi.signal'];
    if (signal.aborted) queueMicrotask(() => this.abort());
    else signal.addEventListener('abort', () => this.abort(), { once: true });
  }

  /** accept is the socket given bytes by node:http: held until the server pulls them. */
  accept(bytes: Buffer, done: (err?: Error | null) => void): void {
    if (this.closed) return done(new Error('the response is closed'));
    this.queue.push({ bytes, done });
    this.notify();
  }

  /** fail is the listener destroying the socket: the response is cut. */
  fail(err: Error | null): void {
    this.failed ??= err ?? new Error('the node listener destroyed its socket before the response ended');
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** body is the nsgi body: the response's bytes in the order node:http wrote them. */
  body(): Body {
    const iterator: AsyncIterableIterator<Uint8Array> = {
      [Symbol.asyncIterator]: () => iterator,
      next: () => this.next(),
      return: async () => {
        this.abort();
        return { done: true, value: undefined };
      },
    };
    return iterator;
  }

  private async next(): Promise<IteratorResult<Uint8Array>> {
    for (;;) {
      if (this.closed) return { done: true, value: undefined };
      const pending = this.queue.shift();
      if (pending !== undefined) {
        const bytes = this.takeHead(pending.bytes);
        // Acknowledged now: node:http may write more, and `'drain'` follows when the queue empties.
        pending.done();
        if (bytes.length > 0) return { done: false, value: bytes };
        continue;
      }
      if (this.failed !== null && !this.finished) throw this.failed;
      if (this.finished) {
        this.takeHead(Buffer.alloc(0));
        this.complete();
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /**
   * takeHead strips the serialized head from the front of the output and starts the nsgi
   * response with it, the first time; a head written alone (`flushHeaders()`) is flushed.
   */
  private takeHead(bytes: Buffer): Buffer {
    if (this.headBytes === -1) {
      const head = (this.res as unknown as { _header: string | null })._header;
      // Bytes before the head are interim responses node:http writes raw (`writeContinue()`,
      // `writeEarlyHints()`); the nsgi server sends 100 itself when the body is read (SPEC §5).
      if (typeof head !== 'string') return Buffer.alloc(0);
      this.headBytes = Buffer.byteLength(head, 'latin1');
      const [status, headers] = parseHead(head);
      this.write = this.startResponse(status, headers);
      if (bytes.length <= this.headBytes && !this.finished) {
        this.headBytes -= bytes.length;
        this.write.flushHead();
        return Buffer.alloc(0);
      }
    }
    if (this.headBytes === 0) return bytes;
    const skip = Math.min(this.headBytes, bytes.length);
    this.headBytes -= skip;
    return bytes.subarray(skip);
  }

  /** pullInput feeds `req` one chunk of `nsgi.input`, when the listener reads. */
  private pullInput(): void {
    this.input ??= this.environ['nsgi.input'][Symbol.asyncIterator]();
    this.input.next().then(
      (step) => {
        if (step.done === true) {
          this.req.complete = true;
          this.req.push(null);
        } else this.req.push(step.value);
      },
      (err: Error) => this.req.destroy(err),
    );
  }

  /** complete is the response finished: `res` closes, as node:http closes it after `'finish'`. */
  private complete(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }

  /** abort is the client gone or the body closed early: `req` aborts and `res` closes. */
  private abort(): void {
    if (this.closed) return;
    this.closed = true;
    for (const pending of this.queue.splice(0)) pending.done(new Error('the client went away'));
    if (!this.req.complete) this.req.destroy();
    this.socket.destroy();
    this.notify();
  }
}

/**
 * ResponseSocket stands where node:http's socket stands: a Writable whose writes join the
 * exchange's queue, with the peer and local addresses the listener may read.
 */
class ResponseSocket extends Writable {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Read by frameworks to tell https (`req.protocol`, `req.secure`). */
  readonly encrypted: boolean;
  _httpMessage: ServerResponse | null = null;
  /**
   * True while the request may still be read: `on-finished` (under Express's body parsers)
   * takes a socket that is not readable for a request already consumed.
   */
  readable = true;

  constructor(
    private readonly exchange: ListenerExchange,
    environ: Environ,
  ) {
    super({ highWaterMark: RESPONSE_HIGH_WATER_MARK, decodeStrings: true });
    this.remoteAddress = environ.REMOTE_ADDR;
    this.remotePort = Number(environ.REMOTE_PORT);
    this.localAddress = environ.SERVER_NAME;
    this.localPort = Number(environ.SERVER_PORT);
    this.encrypted = environ['nsgi.url_scheme'] === 'https';
    this.on('drain', () => {
      // node:http's server tells the response its socket drained; there is no server here.
      const res = this._httpMessage;
      if (res !== null && res.writableNeedDrain) res.emit('drain');
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.exchange.accept(chunk, done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.readable = false;
    this.exchange.fail(err);
    done(null);
  }

  /** setTimeout is a no-op: the nsgi server owns the connection's timeouts. */
  setTimeout(): this {
    return this;
  }

  /** pause and resume are no-ops: the request body is pulled through `req._read`. */
  pause(): this {
    return this;
  }

  resume(): this {
    return this;
  }

  /** setNoDelay and setKeepAlive are no-ops, for listeners that tune their socket. */
  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }
}

/** fillRequest gives `req` the method, URL, version and headers of the nsgi request. */
function fillRequest(req: IncomingMessage, environ: Environ): void {
  req.method = environ.REQUEST_METHOD;
  const { url, base } = urlBelowMount(environ);
  req.url = url;
  if (base !== '') {
    // Express keeps the target as received in originalUrl, and puts the prefixes of its own
    // routers after baseUrl, so an nsgi app it mounts in turn still learns its whole mount.
    const mounted = req as IncomingMessage & { originalUrl?: string; baseUrl?: string };
    mounted.originalUrl = environ.REQUEST_URI;
    mounted.baseUrl = base;
  }
  const version = environ.SERVER_PROTOCOL.slice(5);
  req.httpVersion = version;
  req.httpVersionMajor = Number(version[0]);
  req.httpVersionMinor = Number(version[2]);
  const raw: string[] = [];
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of environ['nsgi.headers']) {
    raw.push(name, value);
    const key = name.toLowerCase();
    const had = headers[key];
    // node:http's joining rules: set-cookie is a list, cookie joins with `; `, others with `, `.
    if (had === undefined) headers[key] = key === 'set-cookie' ? [value] : value;
    else if (Array.isArray(had)) had.push(value);
    else headers[key] = `${had}${key === 'cookie' ? '; ' : ', '}${value}`;
  }
  req.rawHeaders = raw;
  req.headers = headers;
}

/**
 * urlBelowMount is `req.url` for the listener, and the raw prefix it leaves out (`base`): the request-target as received (as node:http
 * gives it), without the part that SCRIPT_NAME names when the app is mounted (by `mount`, or
 * the server's root path), so the listener routes as if served alone. The raw target is cut
 * segment by segment so its escapes survive; a target that does not start with the mount (an
 * absolute-form target, say) is rebuilt from PATH_INFO and QUERY_STRING instead.
 */
function urlBelowMount(environ: Environ): { url: string; base: string } {
  const target = environ.REQUEST_URI;
  const mount = environ.SCRIPT_NAME;
  if (mount === '') return { url: target, base: '' };
  const query = environ.QUERY_STRING === '' ? '' : `?${environ.QUERY_STRING}`;
  const pathEnd = target.indexOf('?') === -1 ? target.length : target.indexOf('?');
  if (target.charCodeAt(0) === 0x2f /* / */) {
    let decoded = '';
    let at = 0;
    while (decoded.length < mount.length && at < pathEnd) {
      const next = target.indexOf('/', at + 1);
      const end = next === -1 || next > pathEnd ? pathEnd : next;
      decoded += decodePath(target.slice(at, end));
      at = end;
    }
    if (decoded === mount) return { url: (at === pathEnd ? '/' : target.slice(at, pathEnd)) + query, base: target.slice(0, at) };
  }
  return { url: encodeURI(environ.PATH_INFO === '' ? '/' : environ.PATH_INFO) + query, base: encodeURI(mount) };
}

/** parseHead reads status and fields back from the head node:http serialized. */
function parseHead(head: string): [string, HeaderList] {
  const end = head.indexOf('\r\n');
  const statusLine = head.slice(0, end);
  // `HTTP/1.1 200 OK`: the code and reason after the version.
  const status = statusLine.slice(statusLine.indexOf(' ') + 1);
  const code = Number(status.slice(0, 3));
  const reason = status.slice(4);
  const headers = parseFields(head.slice(end + 2)).filter(([name]) => !OWNED_BY_SERVER.has(name.toLowerCase()));
  return [`${code} ${reason || STATUS_CODES[code] || 'Unknown'}`, headers];
}

/** parseFields reads `Name: value` lines, as node:http writes them, into pairs. */
function parseFields(text: string): HeaderList {
  const fields: HeaderList = [];
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return fields;
}
