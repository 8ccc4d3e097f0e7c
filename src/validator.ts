/**
 * The validator middleware: `validate(app)` sits between a server and an app and checks, on every
 * call, that both keep the contract of `protocol/SPEC.md`, like Python's `wsgiref.validate` and
 * Rack::Lint. Each violation raises a {@link ValidationError} whose message starts with the rule id
 * and its section, quotes the bad value and says how to fix it:
 *
 *   [SR-5] (SPEC §4.2) value of header "X-Note" contains a control character: "a\r\nb"; ...
 *
 * The validator is itself a middleware that keeps the contract: it never pulls the body before the
 * server does (the head stays lazy, a sync body stays sync), forwards `return()` exactly once,
 * passes `excInfo` through, and wraps `write()`, `nsgi.input` and the extensions.
 *
 * Where each rule is checked. Violations of a MUST found while the app or the server calls through
 * the validator are thrown there, so the server treats them as app errors (a 500, or a cut
 * response) and logs them. Those found later, by a timer or an event, are written to
 * `nsgi.errors`. A SHOULD broken (SR-11, SR-30) is written to `nsgi.errors` as a warning, once per
 * request, and the call goes on: the response is what it would have been without the validator.
 *
 *   environ, when the app is called (server side):
 *     ENV-1  required keys and their types          ENV-2  no optional key set to undefined
 *     ENV-4  QUERY_STRING matches REQUEST_URI       ENV-5  REQUEST_URI is a request-target
 *     ENV-6  CONTENT_TYPE/LENGTH iff the field      ENV-7  SERVER_NAME/PORT from Host
 *     ENV-8  SERVER_PROTOCOL                        ENV-9  an HTTP_ key for every field
 *     ENV-10 no HTTP_CONTENT_TYPE/LENGTH            ENV-11 repeated fields joined with ", " / "; "
 *     ENV-12 no HTTP_ key from a name with "_"      ENV-13 PATH_INFO percent-decoded
 *     ENV-15 decoded as UTF-8                       ENV-16 absolute-form and "*" paths
 *     ENV-18 SCRIPT_NAME/PATH_INFO start with "/"   ENV-19 SCRIPT_NAME does not end with "/"
 *     ENV-20 SCRIPT_NAME + PATH_INFO = decoded path ENV-21 nsgi.version is [1, 0]
 *     ENV-22 nsgi.url_scheme                        ENV-23 nsgi.headers pairs and values
 *     ENV-26 no unknown nsgi.* keys                 EXT-2  extension keys hold functions
 *   nsgi.signal, when it aborts (server side):      ENV-28 the reason is an Error
 *                                                   BODY-16 return() called after the client left
 *   the app and its result (app side):
 *     APP-1  the app is a function; it returns a body or a thenable
 *     BODY-1 the body is iterable                   BODY-3 the body is not a string or Uint8Array
 *   startResponse, when the app calls it (app side, then the server's answer):
 *     SR-1   status format                          SR-2   status 200-599
 *     SR-3   headers are [string, string] pairs     SR-4   names are tokens
 *     SR-5   values: no controls, nothing > U+00FF  SR-6   Content-Length digits, equal repeats
 *     SR-11  no hop-by-hop fields but Connection: close
 *     SR-14  no Transfer-Encoding from the app      SR-22  a second call needs excInfo
 *     SR-23  (server) replaced while the head is unsent
 *     SR-24  (server) excInfo rethrown, itself, once the head is sent
 *   write() (app side, then the server's answer):
 *     BODY-4 chunk type                             BODY-7 a chunk is not changed after it is passed
 *     SR-16  no more bytes than Content-Length      SR-30  each write() awaited before the next
 *     SR-28  (server) write() after the end rejects
 *   the body iterator, as the server pulls it:
 *     BODY-4 chunk type                             BODY-7 a chunk is not changed after it is passed
 *     BODY-9 startResponse before the first non-empty chunk
 *     BODY-10 startResponse before the body ends    SR-16  body length = Content-Length
 *     BODY-2 (server) async iteration when both     BODY-13 (server) no next() while one is pending
 *     BODY-14 (server) no next() after the end      BODY-17 (server) return() at most once
 *     BODY-19 (server) HEAD pulls no further than the first non-empty chunk (async bodies)
 *   nsgi.input:
 *     IN-1   (server) chunks are Uint8Arrays        IN-2   (server) a second iteration throws
 *     IN-3   (app) no next() while one is pending
 *   extensions:
 *     EXT-6  (server) early_hints after the head does not throw
 *     EXT-7, EXT-11 (server) bad fields throw a TypeError
 *     EXT-9  (server) set_trailers answers a boolean, false when trailers cannot be sent
 *     EXT-12 (app) set_trailers before the body ends
 *     EXT-16 (server) file_wrapper gives an iterable body
 *     EXT-18 (server) file_wrapper refuses a bad offset, length or file
 *
 * Not checkable from a middleware's position: what reaches the wire (framing, Date, hop-by-hop
 * removal, 100 Continue, the 500 page, truncation: ENV-3, ENV-17, ENV-24, ENV-27, BODY-5, BODY-6,
 * BODY-8, BODY-11, BODY-12, BODY-15, SR-7 to SR-10, SR-12, SR-13, SR-15, SR-17 to SR-21, SR-26,
 * SR-27, SR-29, SR-31, SR-32, IN-4 to IN-10, EXT-4, EXT-5, EXT-8, EXT-10, EXT-15, EXT-17,
 * ERR-*, SRV-*), what an
 * app should do but need not (APP-5, ENV-25, ENV-29, SR-25, EXT-1, EXT-3, EXT-13, EXT-14,
 * BODY-20, EXT-19), and how often the server calls the app (APP-2 to APP-4). The contract suite in
 * `test/contract/` checks the server-side ones over real connections.
 */
import type { App, Body, Chunk, Environ, HeaderList, Input, StartResponse, Write } from '../protocol/nsgi.ts';
import { isThenable } from './iterators.ts';
import { decodePath } from './environ.ts';
import { isFieldValue, isToken } from './http1/syntax.ts';
import { FORBIDDEN_TRAILER_FIELDS } from './http1/fields.ts';
import { bodyAllowedForStatus } from './http1/writer.ts';

/** SECTIONS maps each rule id prefix and number range to its section of protocol/SPEC.md. */
const SECTIONS: Array<[prefix: string, from: number, to: number, section: string]> = [
  ['APP', 1, 5, '1'],
  ['ENV', 1, 3, '2'],
  ['ENV', 4, 12, '2.1'],
  ['ENV', 13, 20, '2.2'],
  ['ENV', 21, 26, '2.3'],
  ['ENV', 27, 29, '2.4'],
  ['BODY', 1, 3, '3'],
  ['BODY', 4, 7, '3.1'],
  ['BODY', 8, 11, '3.2'],
  ['BODY', 12, 15, '3.3'],
  ['BODY', 16, 20, '3.4'],
  ['SR', 1, 2, '4.1'],
  ['SR', 3, 13, '4.2'],
  ['SR', 14, 21, '4.3'],
  ['SR', 22, 25, '4.4'],
  ['SR', 26, 30, '4.5'],
  ['SR', 31, 32, '4.6'],
  ['IN', 1, 10, '5'],
  ['EXT', 1, 3, '7'],
  ['EXT', 4, 8, '7.1'],
  ['EXT', 9, 14, '7.2'],
  ['EXT', 15, 19, '7.3'],
];

/** sectionOf returns the SPEC section that holds rule `id`, such as `"4.2"` for `"SR-5"`. */
export function sectionOf(id: string): string {
  const m = /^([A-Z]+)-(\d+)$/.exec(id);
  if (m !== null) {
    const n = Number(m[2]);
    for (const [prefix, from, to, section] of SECTIONS) if (prefix === m[1] && n >= from && n <= to) return section;
  }
  return '?';
}

/** ValidationError is a breach of the nsgi contract found by {@link validate}, named by its rule id. */
export class ValidationError extends Error {
  /** The rule broken, such as `SR-5`. */
  readonly rule: string;
  /** Its section of protocol/SPEC.md, such as `4.2`. */
  readonly section: string;
  /** Who broke it: the app (or middleware below the validator) or the server (or middleware above). */
  readonly party: 'app' | 'server';

  constructor(rule: string, party: 'app' | 'server', message: string) {
    const section = sectionOf(rule);
    super(`[${rule}] (SPEC §${section}) ${message}`);
    this.name = 'ValidationError';
    this.rule = rule;
    this.section = section;
    this.party = party;
  }
}

/** ValidateOptions configures {@link validate}. */
export interface ValidateOptions {
  /**
   * Milliseconds the server has, after `nsgi.signal` aborts, to call the body iterator's
   * `return()` before a BODY-16 violation is written to `nsgi.errors`; default 2000.
   */
  closeTimeout?: number;
}

/**
 * validate wraps `app` in a middleware that checks both sides of the nsgi contract on every call
 * and throws a {@link ValidationError} naming the rule at the first violation. Use it in tests and
 * during development; it costs a copy of each byte chunk (to catch BODY-7).
 */
export function validate(app: App, options: ValidateOptions = {}): App {
  if (typeof app !== 'function') {
    throw new ValidationError('APP-1', 'app', `the app must be a function (environ, startResponse) => body, got ${show(app)}; wrap an object with a call method as (e, s) => obj.call(e, s)`);
  }
  const closeTimeout = options.closeTimeout ?? 2000;
  return (environ, startResponse) => new Call(environ, startResponse, closeTimeout).run(app);
}

const REQUIRED_STRINGS = [
  'REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'REQUEST_URI', 'SERVER_NAME', 'SERVER_PORT',
  'SERVER_PROTOCOL', 'REMOTE_ADDR', 'REMOTE_PORT', 'nsgi.url_scheme',
] as const;
const REQUIRED_BOOLEANS = ['nsgi.multithread', 'nsgi.multiprocess', 'nsgi.run_once'] as const;
const NSGI_KEYS = new Set([
  'nsgi.version', 'nsgi.url_scheme', 'nsgi.input', 'nsgi.errors', 'nsgi.signal', 'nsgi.headers', 'nsgi.multithread',
  'nsgi.multiprocess', 'nsgi.run_once', 'nsgi.early_hints', 'nsgi.set_trailers', 'nsgi.upgrade', 'nsgi.file_wrapper',
]);
const EXTENSIONS = ['nsgi.early_hints', 'nsgi.set_trailers', 'nsgi.upgrade', 'nsgi.file_wrapper'] as const;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade']);
const STATUS_FORMAT = /^[0-9]{3}(?: [\t\x20-\x7e\x80-\xff]*)?$/;

type Iter = Iterator<unknown> | AsyncIterator<unknown>;

/** Call checks one request: the environ, then everything the app and the server do with it. */
class Call {
  private readonly isHead: boolean;
  private readonly http10: boolean;
  private started = false;
  private status = 0;
  private contentLength = -1;
  private bytes = 0;
  /** A non-empty chunk has been handed to the server (yielded or written). */
  private delivered = false;
  /** The head has certainly left: flushHead(), a non-empty write(), or a pull after a non-empty chunk. */
  private headSent = false;
  private bodyEnded = false;
  private writePending = false;
  /** The SHOULD rules already warned about in this request. */
  private readonly warned = new Set<string>();
  private last: { chunk: Uint8Array; copy: Uint8Array } | null = null;
  private iterators = 0;
  private iterState: 'open' | 'done' | 'threw' | 'returned' = 'open';
  private closeCalls = 0;
  private closeTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly environ: Environ,
    private readonly startResponse: StartResponse,
    private readonly closeTimeout: number,
  ) {
    this.isHead = environ?.REQUEST_METHOD === 'HEAD';
    this.http10 = environ?.SERVER_PROTOCOL === 'HTTP/1.0';
  }

  run(app: App): Body | Promise<Body> {
    checkEnviron(this.environ);
    const inner = this.innerEnviron();
    const signal = this.environ['nsgi.signal'];
    const onAbort = (): void => this.onAbort();
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const result: unknown = app(inner, (status, headers, excInfo) => this.start(status, headers, excInfo));
    if (isThenable(result)) return Promise.resolve(result).then((body) => this.wrapBody(body));
    return this.wrapBody(result);
  }

  private report(error: ValidationError): void {
    try {
      this.environ['nsgi.errors'].write(`nsgi validator: ${error.message}`);
    } catch {
      // ENV-24 says write() does not throw; nothing more to do if it does.
    }
  }

  /** warn reports the breach of a SHOULD rule, once per rule and request; the call goes on. */
  private warn(error: ValidationError): void {
    if (this.warned.has(error.rule)) return;
    this.warned.add(error.rule);
    try {
      this.environ['nsgi.errors'].write(`nsgi validator warning: ${error.message}`);
    } catch {
      // As in report().
    }
  }

  private onAbort(): void {
    const signal = this.environ['nsgi.signal'];
    if (!(signal.reason instanceof Error)) {
      this.report(new ValidationError('ENV-28', 'server', `nsgi.signal was aborted with ${show(signal.reason)}, not an Error; abort it with an Error such as ClientGoneError`));
    }
    if (this.iterators > 0 && this.iterState === 'open' && this.closeTimeout > 0) {
      this.closeTimer = setTimeout(() => {
        if (this.iterState === 'open') {
          this.report(new ValidationError('BODY-16', 'server', `the client left ${this.closeTimeout} ms ago and the server has not called the body iterator's return(); call it whenever iteration stops`));
        }
      }, this.closeTimeout);
      this.closeTimer.unref();
    }
  }

  // ---- the environ passed down ---------------------------------------------------------------

  private innerEnviron(): Environ {
    const inner: Environ = { ...this.environ };
    inner['nsgi.input'] = this.wrapInput(this.environ['nsgi.input']);
    const hints = this.environ['nsgi.early_hints'];
    if (typeof hints === 'function') {
      inner['nsgi.early_hints'] = (headers) => {
        const bad = fieldProblem(headers);
        let threw = false;
        try {
          hints(headers);
        } catch (err) {
          threw = true;
          if (bad === null && this.headSent) {
            throw new ValidationError('EXT-6', 'server', `nsgi.early_hints threw after the head was sent (${errorText(err)}); it must then do nothing`);
          }
          throw err;
        }
        if (bad !== null && !threw) {
          throw new ValidationError('EXT-7', 'server', `nsgi.early_hints accepted invalid fields (${bad}); it must throw a TypeError naming the header`);
        }
      };
    }
    const trailers = this.environ['nsgi.set_trailers'];
    if (typeof trailers === 'function') {
      inner['nsgi.set_trailers'] = (fields) => {
        if (this.bodyEnded) {
          throw new ValidationError('EXT-12', 'app', 'nsgi.set_trailers called after the body ended; call it before the last chunk, for instance in the generator before it returns');
        }
        const bad = trailerProblem(fields);
        // A throw (the right answer to bad fields) propagates as it is.
        const result: unknown = trailers(fields);
        if (bad !== null) {
          throw new ValidationError('EXT-11', 'server', `nsgi.set_trailers accepted invalid fields (${bad}); it must throw a TypeError naming the header`);
        }
        if (typeof result !== 'boolean') {
          throw new ValidationError('EXT-9', 'server', `nsgi.set_trailers returned ${show(result)}; it must return true or false`);
        }
        const impossible = this.contentLength >= 0 ? 'the app gave a Content-Length'
          : this.isHead ? 'the request is HEAD'
          : this.http10 ? 'the request is HTTP/1.0'
          : this.started && !bodyAllowedForStatus(this.status) ? `the status is ${this.status}`
          : !this.started ? 'startResponse has not been called'
          : null;
        if (result && impossible !== null) {
          throw new ValidationError('EXT-9', 'server', `nsgi.set_trailers returned true although ${impossible}; it must return false when the response will not be chunked`);
        }
        return result;
      };
    }
    const files = this.environ['nsgi.file_wrapper'];
    if (typeof files === 'function') {
      inner['nsgi.file_wrapper'] = (file, options) => {
        const bad = fileArgumentProblem(file, options);
        let body: unknown;
        try {
          body = files(file, options);
        } catch (err) {
          // A throw is the right answer to bad arguments, and passes on as it is.
          if (bad !== null) throw err;
          throw new ValidationError('EXT-18', 'server', `nsgi.file_wrapper threw for valid arguments (${errorText(err)})`);
        }
        if (bad !== null) {
          throw new ValidationError('EXT-18', 'server', `nsgi.file_wrapper accepted ${bad}; it must throw a RangeError or TypeError naming the value`);
        }
        if (!isIterable(body)) {
          throw new ValidationError('EXT-16', 'server', `nsgi.file_wrapper returned ${show(body)}; it must return a body (an iterable of chunks)`);
        }
        return body as Body;
      };
    }
    return inner;
  }

  private wrapInput(input: Input): Input {
    let iterated = false;
    let pending = false;
    const wrapper: Input = {
      [Symbol.asyncIterator]: (): AsyncIterator<Uint8Array> => {
        if (iterated) {
          let threw = false;
          try {
            input[Symbol.asyncIterator]();
          } catch (err) {
            threw = true;
            if (!(err instanceof TypeError)) {
              throw new ValidationError('IN-2', 'server', `a second iteration of nsgi.input threw ${show(err)}, not a TypeError`);
            }
          }
          if (!threw) throw new ValidationError('IN-2', 'server', 'nsgi.input let itself be iterated a second time; the second [Symbol.asyncIterator]() must throw a TypeError');
          throw new TypeError('nsgi.input can be iterated only once (SPEC §5, IN-2)');
        }
        iterated = true;
        const it = input[Symbol.asyncIterator]();
        return {
          next: async (): Promise<IteratorResult<Uint8Array>> => {
            if (pending) {
              throw new ValidationError('IN-3', 'app', 'nsgi.input.next() called while the previous read was still pending; await each read (for await does)');
            }
            pending = true;
            let r: IteratorResult<Uint8Array>;
            try {
              r = await it.next();
            } finally {
              pending = false;
            }
            if (!r.done && !(r.value instanceof Uint8Array)) {
              throw new ValidationError('IN-1', 'server', `nsgi.input yielded ${show(r.value)}; it must yield Uint8Array chunks`);
            }
            return r;
          },
          return: async (): Promise<IteratorResult<Uint8Array>> => {
            if (typeof it.return === 'function') return it.return();
            return { done: true, value: undefined };
          },
        };
      },
      async bytes(): Promise<Uint8Array> {
        const parts: Uint8Array[] = [];
        for await (const part of wrapper) parts.push(part);
        return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      },
      async text(): Promise<string> {
        return new TextDecoder().decode(await wrapper.bytes());
      },
    };
    return wrapper;
  }

  // ---- startResponse and write -----------------------------------------------------------------

  private start(status: string, headers: HeaderList, excInfo?: unknown): Write {
    checkStatus(status);
    const length = checkResponseHeaders(headers, status.startsWith('426'), (warning) => this.warn(warning));
    if (this.started && excInfo === undefined) {
      throw new ValidationError('SR-22', 'app', `startResponse(${show(status)}) called a second time without excInfo; pass the caught error as the third argument to replace the response`);
    }
    let write: Write;
    if (this.started) {
      const unsent = !this.delivered && !this.headSent;
      try {
        write = this.startResponse(status, headers, excInfo);
      } catch (err) {
        if (err === excInfo) {
          if (unsent) {
            throw new ValidationError('SR-23', 'server', 'startResponse rethrew excInfo although no head had been sent (no chunk, no write, no flushHead); it must replace the status and headers');
          }
          throw err;
        }
        throw new ValidationError(this.headSent ? 'SR-24' : 'SR-23', 'server', `startResponse with excInfo threw ${show(err)} instead of ${this.headSent ? 'rethrowing excInfo itself' : 'replacing the response'}`);
      }
      if (this.headSent) {
        throw new ValidationError('SR-24', 'server', 'startResponse with excInfo returned normally after the head had been sent; it must rethrow excInfo');
      }
      this.bytes = 0;
    } else {
      write = this.startResponse(status, headers, excInfo);
    }
    this.started = true;
    this.status = Number(status.slice(0, 3));
    this.contentLength = length;
    return this.wrapWrite(write);
  }

  private wrapWrite(write: Write): Write {
    const wrapped = ((chunk: Chunk): Promise<void> => {
      this.checkLast();
      if (!isChunk(chunk)) {
        throw new ValidationError('BODY-4', 'app', `write() was given ${show(chunk)}; pass a string or a Uint8Array (Buffer.from(x) for an ArrayBuffer)`);
      }
      if (this.writePending) {
        this.warn(new ValidationError('SR-30', 'app', 'write() called again before the promise of the previous write() settled; await each write() so the server does not buffer without bound'));
      }
      const afterEnd = this.bodyEnded;
      this.count(chunk, 'with write()');
      if (chunk.length > 0) this.headSent = true;
      this.writePending = true;
      const p = write(chunk);
      const settle = (): void => {
        this.writePending = false;
      };
      p.then(settle, settle);
      if (afterEnd) {
        p.then(
          () => this.report(new ValidationError('SR-28', 'server', 'write() after the body ended resolved; it must reject')),
          () => {},
        );
      }
      return p;
    }) as Write;
    wrapped.flushHead = () => {
      this.headSent = true;
      write.flushHead();
    };
    return wrapped;
  }

  /** count checks a chunk on its way to the server: BODY-9 and SR-16. */
  private count(chunk: Chunk, via: string): void {
    const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (n === 0) return;
    if (!this.started) {
      throw new ValidationError('BODY-9', 'app', `the body produced a ${n}-byte chunk before startResponse was called; call startResponse before the first non-empty chunk`);
    }
    this.delivered = true;
    this.bytes += n;
    if (this.contentLength >= 0 && this.bytes > this.contentLength && !this.isHead && this.status !== 304) {
      throw new ValidationError('SR-16', 'app', `the body (${via}) is ${this.bytes} bytes so far, more than its Content-Length ${this.contentLength}; fix the length or send fewer bytes`);
    }
    if (chunk instanceof Uint8Array) this.last = { chunk, copy: Uint8Array.prototype.slice.call(chunk) };
    else this.last = null;
  }

  /** checkLast checks that the last byte chunk handed over is unchanged (BODY-7). */
  private checkLast(): void {
    const last = this.last;
    if (last === null) return;
    if (!Buffer.from(last.chunk.buffer, last.chunk.byteOffset, last.chunk.byteLength).equals(last.copy)) {
      this.last = null;
      throw new ValidationError('BODY-7', 'app', `a ${last.copy.length}-byte Uint8Array chunk was changed after it was passed to the server; allocate a new buffer per chunk instead of refilling one`);
    }
  }

  // ---- the body ----------------------------------------------------------------------------

  private wrapBody(body: unknown): Body {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      throw new ValidationError('BODY-3', 'app', `the app returned ${show(body)} itself as its body; wrap it in an array: [body]`);
    }
    const obj = body as Partial<Iterable<unknown> & AsyncIterable<unknown>> | null;
    const asyncFn = obj !== null && typeof obj === 'object' ? obj[Symbol.asyncIterator] : undefined;
    const syncFn = obj !== null && typeof obj === 'object' ? obj[Symbol.iterator] : undefined;
    if (typeof asyncFn !== 'function' && typeof syncFn !== 'function') {
      throw new ValidationError(
        body === undefined || body === null ? 'APP-1' : 'BODY-1',
        'app',
        `the app returned ${show(body)}, which has neither [Symbol.asyncIterator] nor [Symbol.iterator]; return an array, a generator or another iterable of chunks`,
      );
    }
    if (typeof asyncFn === 'function') {
      const wrapper: AsyncIterable<Chunk> & Partial<Iterable<Chunk>> = {
        [Symbol.asyncIterator]: () => this.wrapAsync(checkIterator(asyncFn.call(body), '[Symbol.asyncIterator]') as AsyncIterator<unknown>),
      };
      if (typeof syncFn === 'function') {
        wrapper[Symbol.iterator] = () => {
          throw new ValidationError('BODY-2', 'server', 'the body has both [Symbol.asyncIterator] and [Symbol.iterator], and the server iterated it synchronously; it must use [Symbol.asyncIterator]');
        };
      }
      return wrapper;
    }
    return { [Symbol.iterator]: () => this.wrapSync(checkIterator(syncFn!.call(body), '[Symbol.iterator]') as Iterator<unknown>) };
  }

  /** beforeNext runs the server-side checks of a pull (BODY-14, BODY-19) and BODY-7. */
  private beforeNext(isAsync: boolean): void {
    if (this.iterState !== 'open') {
      const why = this.iterState === 'done' ? 'it returned done: true' : this.iterState === 'threw' ? 'next() threw' : 'the server called return()';
      throw new ValidationError('BODY-14', 'server', `the server called next() on the body iterator after ${why}; it must stop pulling`);
    }
    if (this.delivered) {
      if (isAsync && this.isHead) {
        throw new ValidationError('BODY-19', 'server', 'for a HEAD request the server pulled the body past its first non-empty chunk; it must stop there, send the head and call return()');
      }
      // The server took the chunk and asked for more: the head has left.
      this.headSent = true;
    }
    this.checkLast();
  }

  /** afterNext checks what the inner iterator gave (BODY-4, BODY-9, BODY-10, SR-16). */
  private afterNext(r: IteratorResult<unknown>): IteratorResult<Chunk> {
    try {
      this.checkLast();
    } catch (err) {
      this.iterState = 'threw';
      throw err;
    }
    if (r.done) {
      this.iterState = 'done';
      this.bodyEnded = true;
      if (!this.started) {
        throw new ValidationError('BODY-10', 'app', 'the body ended but startResponse was never called; call it before returning, or in the generator before it ends');
      }
      if (this.contentLength >= 0 && this.bytes < this.contentLength && !this.isHead && this.status !== 304) {
        throw new ValidationError('SR-16', 'app', `the body ended after ${this.bytes} bytes but its Content-Length is ${this.contentLength}; fix the length or send the missing bytes`);
      }
      return { done: true, value: undefined };
    }
    const chunk = r.value;
    if (!isChunk(chunk)) {
      this.iterState = 'threw';
      const hint = chunk instanceof ArrayBuffer ? ' (wrap an ArrayBuffer as new Uint8Array(buf))' : isThenable(chunk) ? ' (a sync iterable\'s values are not awaited; use an async generator)' : '';
      throw new ValidationError('BODY-4', 'app', `the body yielded ${show(chunk)}; every chunk must be a string or a Uint8Array${hint}`);
    }
    try {
      this.count(chunk, 'yielded chunks and write() together');
    } catch (err) {
      this.iterState = 'threw';
      throw err;
    }
    return { done: false, value: chunk };
  }

  private closeInner(it: Iter): unknown {
    if (this.closeCalls++ > 0) {
      throw new ValidationError('BODY-17', 'server', 'the server called the body iterator\'s return() a second time; it must call it at most once');
    }
    this.iterState = 'returned';
    this.bodyEnded = true;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    return typeof it.return === 'function' ? it.return() : undefined;
  }

  private wrapSync(it: Iterator<unknown>): Iterator<Chunk> {
    this.iterators++;
    return {
      next: () => {
        this.beforeNext(false);
        let r: IteratorResult<unknown>;
        try {
          r = it.next();
        } catch (err) {
          this.iterState = 'threw';
          throw err;
        }
        return this.afterNext(r);
      },
      return: () => {
        this.closeInner(it);
        return { done: true, value: undefined };
      },
    };
  }

  private wrapAsync(it: AsyncIterator<unknown>): AsyncIterator<Chunk> {
    this.iterators++;
    let pending = false;
    return {
      next: async () => {
        if (pending) {
          throw new ValidationError('BODY-13', 'server', 'the server called next() on the async body iterator before the previous next() settled; it must wait for each');
        }
        this.beforeNext(true);
        pending = true;
        let r: IteratorResult<unknown>;
        try {
          r = await it.next();
        } catch (err) {
          if (this.iterState === 'open') this.iterState = 'threw';
          throw err;
        } finally {
          pending = false;
        }
        if (this.iterState === 'returned') return { done: true, value: undefined };
        return this.afterNext(r);
      },
      return: async () => {
        await this.closeInner(it);
        return { done: true, value: undefined };
      },
    };
  }
}

// ---- environ checks ------------------------------------------------------------------------------

/** checkEnviron checks the environ the server built (SPEC §2), throwing at the first violation. */
function checkEnviron(environ: Environ): void {
  if (environ === null || typeof environ !== 'object' || Array.isArray(environ)) {
    throw new ValidationError('ENV-1', 'server', `the environ must be a plain object, got ${show(environ)}`);
  }
  const proto = Object.getPrototypeOf(environ) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    throw new ValidationError('ENV-1', 'server', 'the environ must be a plain object ({...}), not an instance of a class');
  }
  for (const key of REQUIRED_STRINGS) {
    if (typeof environ[key] !== 'string') {
      throw new ValidationError('ENV-1', 'server', `environ[${JSON.stringify(key)}] must be a string, got ${show(environ[key])}`);
    }
  }
  for (const key of REQUIRED_BOOLEANS) {
    if (typeof environ[key] !== 'boolean') {
      throw new ValidationError('ENV-1', 'server', `environ[${JSON.stringify(key)}] must be a boolean, got ${show(environ[key])}`);
    }
  }
  const input = environ['nsgi.input'] as Partial<Input> | undefined;
  if (input === null || typeof input !== 'object' || typeof input[Symbol.asyncIterator] !== 'function' || typeof input.bytes !== 'function' || typeof input.text !== 'function') {
    throw new ValidationError('ENV-1', 'server', `environ["nsgi.input"] must be an async iterable with bytes() and text(), got ${show(input)}`);
  }
  const errors = environ['nsgi.errors'] as { write?: unknown } | undefined;
  if (errors === null || typeof errors !== 'object' || typeof errors.write !== 'function') {
    throw new ValidationError('ENV-1', 'server', `environ["nsgi.errors"] must be an object with a write(message) method, got ${show(errors)}`);
  }
  if (!(environ['nsgi.signal'] instanceof AbortSignal)) {
    throw new ValidationError('ENV-1', 'server', `environ["nsgi.signal"] must be an AbortSignal, got ${show(environ['nsgi.signal'])}`);
  }
  if (!Array.isArray(environ['nsgi.headers'])) {
    throw new ValidationError('ENV-1', 'server', `environ["nsgi.headers"] must be an array of [name, value] pairs, got ${show(environ['nsgi.headers'])}`);
  }
  if (!Array.isArray(environ['nsgi.version'])) {
    throw new ValidationError('ENV-1', 'server', `environ["nsgi.version"] must be the array [1, 0], got ${show(environ['nsgi.version'])}`);
  }

  for (const key of Object.keys(environ)) {
    if (environ[key] === undefined) {
      throw new ValidationError('ENV-2', 'server', `environ[${JSON.stringify(key)}] is present with the value undefined; leave out an optional key that does not apply`);
    }
    if (key.startsWith('nsgi.') && !NSGI_KEYS.has(key)) {
      throw new ValidationError('ENV-26', 'server', `environ[${JSON.stringify(key)}] uses the reserved nsgi. prefix but the spec defines no such key; name it after your server or middleware, such as "myserver.${key.slice(5)}"`);
    }
  }
  for (const key of EXTENSIONS) {
    if (key in environ && typeof environ[key] !== 'function') {
      throw new ValidationError('EXT-2', 'server', `environ[${JSON.stringify(key)}] is present but is ${show(environ[key])}, not a function; leave it out when the extension is not offered`);
    }
  }

  const headers = environ['nsgi.headers'];
  for (const field of headers) {
    if (!Array.isArray(field) || field.length !== 2 || typeof field[0] !== 'string' || typeof field[1] !== 'string') {
      throw new ValidationError('ENV-23', 'server', `nsgi.headers holds ${show(field)}; each entry must be a [name, value] pair of strings`);
    }
    if (!isToken(field[0])) throw new ValidationError('ENV-23', 'server', `nsgi.headers holds the field name ${JSON.stringify(field[0])}, which is not a token`);
    if (/^[ \t]|[ \t]$/.test(field[1]) || !isFieldValue(field[1])) {
      throw new ValidationError('ENV-23', 'server', `nsgi.headers holds the value ${JSON.stringify(field[1])} for ${JSON.stringify(field[0])}; values are the received bytes as latin-1 with surrounding spaces and tabs removed`);
    }
  }

  const uri = environ.REQUEST_URI;
  if (!/^[\x21-\x7e]+$/.test(uri)) {
    throw new ValidationError('ENV-5', 'server', `REQUEST_URI ${JSON.stringify(uri)} is not a request-target as received (visible ASCII, not empty)`);
  }
  const q = uri.indexOf('?');
  const query = q === -1 ? '' : uri.slice(q + 1);
  if (environ.QUERY_STRING !== query) {
    throw new ValidationError('ENV-4', 'server', `QUERY_STRING is ${JSON.stringify(environ.QUERY_STRING)} but REQUEST_URI ${JSON.stringify(uri)} gives ${JSON.stringify(query)}; it is the text after the first "?", not decoded`);
  }
  const protocol = environ.SERVER_PROTOCOL;
  if (protocol !== 'HTTP/1.0' && protocol !== 'HTTP/1.1' && protocol !== 'HTTP/2') {
    throw new ValidationError('ENV-8', 'server', `SERVER_PROTOCOL is ${JSON.stringify(protocol)}; it must be "HTTP/1.0", "HTTP/1.1" or "HTTP/2"`);
  }
  const version = environ['nsgi.version'];
  if (version.length !== 2 || version[0] !== 1 || version[1] !== 0) {
    throw new ValidationError('ENV-21', 'server', `nsgi.version is ${JSON.stringify(version)}; a server implementing nsgi 1.0 gives [1, 0]`);
  }
  const scheme = environ['nsgi.url_scheme'];
  if (scheme !== 'http' && scheme !== 'https') {
    throw new ValidationError('ENV-22', 'server', `nsgi.url_scheme is ${JSON.stringify(scheme)}; it must be "http" or "https"`);
  }

  // Header keys (ENV-6, ENV-9 to ENV-12).
  const joined = new Map<string, string[]>();
  let contentType: string[] | undefined;
  let contentLength: string[] | undefined;
  const underscored = new Map<string, string>();
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === 'content-type') (contentType ??= []).push(value);
    else if (lower === 'content-length') (contentLength ??= []).push(value);
    else if (name.includes('_')) underscored.set('HTTP_' + name.toUpperCase().replace(/-/g, '_'), name);
    else {
      const key = 'HTTP_' + name.toUpperCase().replace(/-/g, '_');
      const list = joined.get(key);
      if (list === undefined) joined.set(key, [value]);
      else list.push(value);
    }
  }
  for (const [key, field, values] of [['CONTENT_TYPE', 'Content-Type', contentType], ['CONTENT_LENGTH', 'Content-Length', contentLength]] as const) {
    const present = environ[key] !== undefined;
    if (present !== (values !== undefined)) {
      throw new ValidationError('ENV-6', 'server', present
        ? `${key} is ${show(environ[key])} but the request has no ${field} field; leave the key out`
        : `the request has a ${field} field (${JSON.stringify(values![0])}) but ${key} is missing`);
    }
  }
  for (const key of ['HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH']) {
    if (key in environ) {
      throw new ValidationError('ENV-10', 'server', `the environ has ${key}; Content-Type and Content-Length go in CONTENT_TYPE and CONTENT_LENGTH only`);
    }
  }
  for (const [key, values] of joined) {
    const value = environ[key];
    if (value === undefined) {
      throw new ValidationError('ENV-9', 'server', `the request has the field ${JSON.stringify(key.slice(5).replace(/_/g, '-'))} but the environ has no ${key}`);
    }
    const expected = values.join(key === 'HTTP_COOKIE' ? '; ' : ', ');
    if (value !== expected) {
      throw new ValidationError('ENV-11', 'server', `${key} is ${show(value)} but the request's fields give ${JSON.stringify(expected)}; repeated fields are joined in order with ", " ("; " for Cookie)`);
    }
  }
  for (const [key, name] of underscored) {
    if (key in environ && !joined.has(key)) {
      throw new ValidationError('ENV-12', 'server', `the field ${JSON.stringify(name)} has a "_" in its name but produced ${key}; such fields appear only in nsgi.headers, or a client could spoof a header a proxy controls`);
    }
  }

  // SERVER_NAME and SERVER_PORT (ENV-7), for an origin-form target with a Host field.
  const host = environ.HTTP_HOST;
  if (!/^[0-9]+$/.test(environ.SERVER_PORT)) {
    throw new ValidationError('ENV-7', 'server', `SERVER_PORT is ${JSON.stringify(environ.SERVER_PORT)}; it must be the port in decimal`);
  }
  if (typeof host === 'string' && host !== '' && uri.startsWith('/')) {
    const colon = host.lastIndexOf(':');
    const hasPort = colon !== -1 && colon > host.lastIndexOf(']');
    const name = hasPort ? host.slice(0, colon) : host;
    const port = hasPort && colon + 1 < host.length ? host.slice(colon + 1) : scheme === 'https' ? '443' : '80';
    // A Host of only a port (":80") names no host: the server's own address stands in (ENV-7).
    if (name !== '' && (environ.SERVER_NAME !== name || environ.SERVER_PORT !== port)) {
      throw new ValidationError('ENV-7', 'server', `Host is ${JSON.stringify(host)} but SERVER_NAME/SERVER_PORT are ${JSON.stringify(environ.SERVER_NAME)}/${JSON.stringify(environ.SERVER_PORT)}; they must be ${JSON.stringify(name)}/${JSON.stringify(port)}`);
    }
  }

  // SCRIPT_NAME and PATH_INFO (ENV-13 to ENV-20).
  const scriptName = environ.SCRIPT_NAME;
  const pathInfo = environ.PATH_INFO;
  if (scriptName.endsWith('/')) {
    throw new ValidationError('ENV-19', 'server', `SCRIPT_NAME ${JSON.stringify(scriptName)} ends with "/"; the slash belongs to PATH_INFO`);
  }
  if (scriptName !== '' && !scriptName.startsWith('/')) {
    throw new ValidationError('ENV-18', 'server', `SCRIPT_NAME ${JSON.stringify(scriptName)} must be "" or start with "/"`);
  }
  if (uri === '*') {
    if (scriptName + pathInfo !== '*') {
      throw new ValidationError('ENV-16', 'server', `the target is "*" but SCRIPT_NAME + PATH_INFO is ${JSON.stringify(scriptName + pathInfo)}; an asterisk-form target gives PATH_INFO "*"`);
    }
    return;
  }
  if (environ.REQUEST_METHOD === 'CONNECT') return;
  if (pathInfo !== '' && !pathInfo.startsWith('/')) {
    throw new ValidationError('ENV-18', 'server', `PATH_INFO ${JSON.stringify(pathInfo)} must be "" or start with "/"`);
  }
  let rawPath: string;
  const end = q === -1 ? uri.length : q;
  if (uri.startsWith('/')) {
    rawPath = uri.slice(0, end);
  } else {
    const authorityStart = uri.indexOf('//') + 2;
    let pathStart = uri.indexOf('/', authorityStart);
    if (pathStart === -1 || pathStart > end) pathStart = end;
    rawPath = uri.slice(pathStart, end);
    if (rawPath === '') {
      if (scriptName + pathInfo !== '/') {
        throw new ValidationError('ENV-16', 'server', `the absolute-form target ${JSON.stringify(uri)} has an empty path, so SCRIPT_NAME + PATH_INFO must be "/", not ${JSON.stringify(scriptName + pathInfo)}`);
      }
      return;
    }
  }
  const decoded = rawPath.includes('%') ? decodePath(rawPath) : rawPath;
  const full = scriptName + pathInfo;
  if (full === decoded) return;
  if (full === rawPath) {
    throw new ValidationError('ENV-13', 'server', `PATH_INFO ${JSON.stringify(pathInfo)} was not percent-decoded; the target's path decodes to ${JSON.stringify(decoded)}`);
  }
  if (full === latin1Decode(rawPath)) {
    throw new ValidationError('ENV-15', 'server', `PATH_INFO ${JSON.stringify(pathInfo)} was decoded as latin-1; decode the bytes as UTF-8, giving ${JSON.stringify(decoded)}`);
  }
  throw new ValidationError('ENV-20', 'server', `SCRIPT_NAME + PATH_INFO is ${JSON.stringify(full)} but the decoded path of ${JSON.stringify(uri)} is ${JSON.stringify(decoded)}; they must be equal (no dot-segment removal, no slash merging)`);
}

function latin1Decode(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

// ---- status and header checks --------------------------------------------------------------

function checkStatus(status: unknown): void {
  if (typeof status !== 'string' || !STATUS_FORMAT.test(status)) {
    throw new ValidationError('SR-1', 'app', `status ${show(status)} is not three digits, optionally a space and a reason phrase; write it like "200 OK"`);
  }
  const code = Number(status.slice(0, 3));
  if (code < 200 || code > 599) {
    throw new ValidationError('SR-2', 'app', `status ${JSON.stringify(status)} is outside 200-599; 1xx responses are the server's (early hints: nsgi.early_hints)`);
  }
}

/**
 * checkResponseHeaders checks an app's headers (SR-3 to SR-6, SR-14, and SR-11 through `warn`)
 * and returns its Content-Length or -1.
 */
function checkResponseHeaders(headers: unknown, is426: boolean, warn: (warning: ValidationError) => void): number {
  if (!Array.isArray(headers)) {
    throw new ValidationError('SR-3', 'app', `headers must be an array of [name, value] pairs, got ${show(headers)}; write [['Content-Type', 'text/plain']]`);
  }
  let length = -1;
  for (let i = 0; i < headers.length; i++) {
    const pair: unknown = headers[i];
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      throw new ValidationError('SR-3', 'app', `header #${i} is ${show(pair)}; each header must be a [name, value] pair of strings (String(n) for a number)`);
    }
    const [name, value] = pair as [string, string];
    if (!isToken(name)) {
      throw new ValidationError('SR-4', 'app', `header name ${JSON.stringify(name)} is not a token; names are letters, digits and !#$%&'*+-.^_\`|~, no spaces or colons`);
    }
    if (!isFieldValue(value)) {
      throw new ValidationError('SR-5', 'app', `value of header ${JSON.stringify(name)} contains CR, LF, NUL, another control character or a character above U+00FF: ${JSON.stringify(value)}; remove line breaks and encode non-latin-1 text (RFC 8187 for filenames)`);
    }
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      if (!/^[0-9]{1,15}$/.test(value)) {
        throw new ValidationError('SR-6', 'app', `Content-Length ${JSON.stringify(value)} is not one to fifteen decimal digits; give String(byteLength)`);
      }
      if (length !== -1 && length !== Number(value)) {
        throw new ValidationError('SR-6', 'app', `Content-Length is given twice with different values (${length} and ${value}); give it once`);
      }
      length = Number(value);
    } else if (lower === 'transfer-encoding') {
      throw new ValidationError('SR-14', 'app', `the app gave Transfer-Encoding: ${JSON.stringify(value)}; framing is the server's, yield the plain content and leave the header out`);
    } else if (HOP_BY_HOP.has(lower)) {
      const closeOnly = lower === 'connection' && /^[ \t]*close[ \t]*$/i.test(value);
      // A 426 must name its protocols in Upgrade (RFC 9110 §15.5.22); the server adds the option.
      const upgradeFor426 = is426 && lower === 'upgrade';
      if (!closeOnly && !upgradeFor426) {
        warn(new ValidationError('SR-11', 'app', `the app gave the hop-by-hop field ${name}: ${JSON.stringify(value)}; the connection is the server's, which drops it: leave it out (only "Connection: close" is honoured, and Upgrade in a 426)`));
      }
    }
  }
  return length;
}

/** fieldProblem describes why a field list breaks SR-3 to SR-5, or returns null if it does not. */
function fieldProblem(fields: unknown): string | null {
  if (!Array.isArray(fields)) return `not an array: ${show(fields)}`;
  for (const pair of fields as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return `entry ${show(pair)} is not a pair of strings`;
    if (!isToken(pair[0])) return `name ${JSON.stringify(pair[0])} is not a token`;
    if (!isFieldValue(pair[1])) return `value ${JSON.stringify(pair[1])} of ${JSON.stringify(pair[0])} has a control character`;
  }
  return null;
}

/** trailerProblem is {@link fieldProblem} for trailers: also no field RFC 9110 §6.5.1 keeps out of them. */
function trailerProblem(fields: unknown): string | null {
  const bad = fieldProblem(fields);
  if (bad !== null) return bad;
  const forbidden = (fields as Array<[string, string]>).find(([name]) => FORBIDDEN_TRAILER_FIELDS.has(name.toLowerCase()));
  return forbidden === undefined ? null : `${JSON.stringify(forbidden[0])} may not be a trailer field`;
}

// ---- small helpers ---------------------------------------------------------------------------

function isChunk(v: unknown): v is Chunk {
  return typeof v === 'string' || v instanceof Uint8Array;
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : show(err);
}

/** show renders a value for a message: strings quoted and cut, objects by their class. */
function show(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? value.slice(0, 64) + '...' : value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `a ${value.constructor.name} of ${value.length} bytes`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object (${(value as object).constructor?.name ?? 'Object'})`;
  return `${typeof value} ${String(value)}`;
}

/** checkIterator passes on what a body's iterator method returned if it is an iterator (BODY-1). */
function checkIterator(it: unknown, method: string): unknown {
  if (it === null || typeof it !== 'object' || typeof (it as { next?: unknown }).next !== 'function') {
    throw new ValidationError('BODY-1', 'app', `the body's ${method}() returned ${show(it)}, not an iterator with a next() method`);
  }
  return it;
}

/** fileArgumentProblem names what is wrong with file_wrapper's arguments (EXT-18), or gives null. */
function fileArgumentProblem(file: unknown, options: { offset?: unknown; length?: unknown } | undefined): string | null {
  if (typeof file !== 'string' && (typeof file !== 'object' || file === null || typeof (file as { read?: unknown }).read !== 'function')) {
    return `the file ${show(file)}`;
  }
  for (const key of ['offset', 'length'] as const) {
    const value = options?.[key];
    if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)) return `the ${key} ${show(value)}`;
  }
  return null;
}

/** isIterable tells whether a value can be iterated, sync or async. */
function isIterable(value: unknown): boolean {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
  const v = value as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown };
  return typeof v[Symbol.iterator] === 'function' || typeof v[Symbol.asyncIterator] === 'function';
}
