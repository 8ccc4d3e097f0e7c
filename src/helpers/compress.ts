/**
 * compress: middleware that compresses response bodies as they stream, with the coding the
 * client prefers among gzip, brotli and (on a Node that has it) zstd.
 *
 * The body stays pull-based: the middleware asks the app's iterator for one chunk only when the
 * server asks it for output, so a slow client still slows the generator (SPEC §3.3), and the
 * app's iterator gets `return()` exactly once however the response ends (SPEC §3.4).
 *
 * A compressor holds bytes back until it has enough to compress well, which would hold back an
 * event stream's events. So the compressor is flushed (each output ends on a byte boundary the
 * client can decode up to) after every chunk of a `text/event-stream` response, after every
 * chunk sent through `write()`, and after a chunk the app marks by calling
 * `environ['compress.flush']()` before yielding it.
 *
 * A response is passed through untouched when compressing would break it or gain nothing: a
 * request with Range or a 206 (ranges count bytes of the representation as the app has it), a
 * response that already has a Content-Encoding, `Cache-Control: no-transform` (RFC 9110 §7.7), a
 * status without content, a media type that does not compress, or a body known to be smaller
 * than `minSize`. Every response of a compressible type gets `Vary: Accept-Encoding`, compressed
 * or not, so caches keep the two apart (RFC 9110 §12.5.5).
 */
import zlib from 'node:zlib';
import type { App, Body, Chunk, Environ, HeaderList, StartResponse, Write } from '../../protocol/nsgi.ts';
import { preferredCoding } from './negotiate.ts';

/** DEFAULT_MIN_SIZE is the smallest body compressed when its size is known: 1 KiB, as Express's compression middleware; below it the coding's header and trailer eat the gain. */
export const DEFAULT_MIN_SIZE = 1024;

/**
 * DEFAULT_BROTLI_QUALITY is brotli's quality for responses made on the fly: 4 of 11. Quality 11
 * (zlib's default) is for files compressed once ahead of time and is many times slower; 4
 * compresses about as well as gzip's level 6, faster.
 */
export const DEFAULT_BROTLI_QUALITY = 4;

/** COMPRESSIBLE matches the media types worth compressing: text, JSON, JavaScript, XML, SVG. */
const COMPRESSIBLE = /^\s*(?:text\/|application\/(?:json|javascript|ecmascript|xml|x-ndjson|wasm|manifest\+json|[\w.+-]*\+(?:json|xml))|image\/svg\+xml)/i;

/** CompressOptions configures {@link compress}. */
export interface CompressOptions {
  /** Bodies of known size below this many bytes are sent as they are; default 1 KiB. */
  minSize?: number;
  /** Codings offered, in order of preference for ties; default brotli, zstd (when present), gzip. */
  codings?: readonly string[];
  /** Tells whether a Content-Type is worth compressing; default text, JSON, JavaScript, XML and SVG. */
  compressible?: (contentType: string) => boolean;
}

/** Encoder is a compressor stream with the flush call every zlib stream has. */
type Encoder = zlib.Gzip | zlib.BrotliCompress;

/** zstd's stream constructor and flush constant, on the Node versions that have them (22.15+). */
const zstd = zlib as unknown as { createZstdCompress?: () => Encoder; constants: { ZSTD_e_flush?: number } };

/** ENCODERS makes a compressor for each coding, with the flush kind that ends output on a byte boundary. */
const ENCODERS: ReadonlyMap<string, { create: () => Encoder; flush: number }> = new Map([
  [
    'br',
    {
      create: () => zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: DEFAULT_BROTLI_QUALITY } }),
      flush: zlib.constants.BROTLI_OPERATION_FLUSH,
    },
  ],
  ...(typeof zstd.createZstdCompress === 'function' && zstd.constants.ZSTD_e_flush !== undefined
    ? [['zstd', { create: zstd.createZstdCompress.bind(zlib), flush: zstd.constants.ZSTD_e_flush }] as const]
    : []),
  ['gzip', { create: () => zlib.createGzip(), flush: zlib.constants.Z_SYNC_FLUSH }],
]);

/** AVAILABLE_CODINGS lists the codings this Node can produce, in the default order of preference. */
export const AVAILABLE_CODINGS: readonly string[] = [...ENCODERS.keys()];

/** CompressFlush is `environ['compress.flush']`: flush the compressor after the next chunk. */
export type CompressFlush = () => void;

/**
 * compress wraps `app` so that its responses are compressed as described at the top of this
 * file. The environ passed down has `compress.flush` and no `nsgi.set_trailers` (the new body is
 * framed by the server anew, EXT-3).
 */
export function compress(app: App, options: CompressOptions = {}): App {
  const minSize = options.minSize ?? DEFAULT_MIN_SIZE;
  const offered = (options.codings ?? AVAILABLE_CODINGS).filter((coding) => ENCODERS.has(coding));
  const compressible = options.compressible ?? ((type: string) => COMPRESSIBLE.test(type));
  return async (environ, startResponse) => {
    const response = new CompressedResponse(environ, startResponse, offered, minSize, compressible);
    const inner: Environ = { ...environ, 'compress.flush': () => void (response.flushNext = true) };
    delete inner['nsgi.set_trailers'];
    const body = await app(inner, response.startResponse);
    return response.wrap(body);
  };
}

/** CompressedResponse is one response through the middleware: the coding chosen, and the encoder. */
class CompressedResponse {
  /** The coding of the head last passed on, `identity` for none. */
  private coding = 'identity';
  private eventStream = false;
  private encoder: Encoder | null = null;
  private flushKind = 0;
  private output: Buffer[] = [];
  private failure: Error | null = null;
  private knownSize: number | undefined;
  /** True once the app has called startResponse. */
  private started = false;
  /** True when the app's body went to the server as it was. */
  private passedThrough = false;
  /** Set through `compress.flush`: flush after the next chunk. */
  flushNext = false;

  constructor(
    private readonly environ: Environ,
    private readonly next: StartResponse,
    private readonly offered: readonly string[],
    private readonly minSize: number,
    private readonly compressible: (type: string) => boolean,
  ) {}

  /** startResponse decides the coding from the status and headers, and passes the head on. */
  readonly startResponse: StartResponse = (status, headers, excInfo) => {
    // A head replaced through excInfo (SPEC §4.4) is decided anew; nothing was encoded yet.
    // A body handed on uncompressed stays so: a later head (excInfo) cannot switch coding.
    const { coding, out } = this.passedThrough ? { coding: 'identity', out: headers } : this.decide(status, headers);
    const write = this.next(status, out, excInfo);
    this.coding = coding;
    this.started = true;
    if (coding === 'identity') return write;
    const encoded = (async (chunk: Chunk) => {
      const bytes = await this.encode(chunk, true);
      if (bytes.length > 0) await write(bytes);
    }) as Write;
    encoded.flushHead = () => write.flushHead();
    return encoded;
  };

  /** decide picks the coding for a head and gives the headers to send with it. */
  private decide(status: string, headers: HeaderList): { coding: string; out: HeaderList } {
    const get = (name: string) => headers.find(([key]) => key.toLowerCase() === name)?.[1];
    const code = Number(status.slice(0, 3));
    const type = get('content-type');
    if (type === undefined || !this.compressible(type)) return { coding: 'identity', out: headers };
    // Whether or not this response is compressed, another Accept-Encoding could change it.
    const vary = get('vary');
    const out: HeaderList = vary === undefined ? [...headers, ['Vary', 'Accept-Encoding']] : headers.map(([k, v]): [string, string] => (
      k.toLowerCase() === 'vary' && v.trim() !== '*' && !/(?:^|,)\s*accept-encoding\s*(?:,|$)/i.test(v) ? [k, `${v}, Accept-Encoding`] : [k, v]
    ));
    const length = get('content-length');
    if (
      code < 200 || code === 204 || code === 206 || code === 304 ||
      this.environ.HTTP_RANGE !== undefined ||
      get('content-encoding') !== undefined ||
      /(?:^|,)\s*no-transform\s*(?:,|$)/i.test(get('cache-control') ?? '') ||
      (length !== undefined && Number(length) < this.minSize)
    ) {
      return { coding: 'identity', out };
    }
    const coding = preferredCoding(this.environ.HTTP_ACCEPT_ENCODING, this.offered);
    if (coding === undefined || coding === 'identity') return { coding: 'identity', out };
    this.eventStream = /^\s*text\/event-stream/i.test(type);
    this.knownSize = length === undefined ? undefined : Number(length);
    const compressed: HeaderList = [];
    for (const [key, value] of out) {
      const name = key.toLowerCase();
      if (name === 'content-length') continue; // the server frames the new body itself
      // The compressed bytes are another representation: a strong tag would claim byte equality
      // with the plain one (RFC 9110 §8.8.3).
      if (name === 'etag' && !value.startsWith('W/')) compressed.push([key, `W/${value}`]);
      else compressed.push([key, value]);
    }
    compressed.push(['Content-Encoding', coding]);
    return { coding, out: compressed };
  }

  /**
   * wrap returns the body to hand the server: the app's own when its head is already decided
   * against compressing (so the server keeps its sync fast path and can count a Content-Length,
   * SPEC §3.2), else a body compressed once the head says so.
   */
  wrap(body: Body): Body {
    if (!this.started || this.coding !== 'identity') return new CompressedBody(this, body);
    this.passedThrough = true;
    return body;
  }

  /** compressing tells whether the response (its head now decided) is compressed. */
  get compressing(): boolean {
    return this.coding !== 'identity';
  }

  /**
   * encode compresses one chunk and gives the output produced so far, flushing when the chunk
   * must reach the client now; with `chunk` null it ends the stream and gives the rest.
   */
  async encode(chunk: Chunk | null, forceFlush = false): Promise<Buffer> {
    if (this.encoder === null) {
      const spec = ENCODERS.get(this.coding)!;
      const encoder = spec.create();
      this.flushKind = spec.flush;
      encoder.on('data', (data: Buffer) => void this.output.push(data));
      encoder.on('error', (err: Error) => void (this.failure = err));
      this.encoder = encoder;
    }
    const encoder = this.encoder;
    if (chunk === null) {
      await new Promise<void>((resolve) => {
        encoder.once('end', resolve);
        encoder.once('error', () => resolve());
        encoder.end();
      });
    } else {
      const flush = forceFlush || this.eventStream || this.flushNext;
      this.flushNext = false;
      await new Promise<void>((resolve) => encoder.write(chunk, () => resolve()));
      if (flush) await new Promise<void>((resolve) => encoder.flush(this.flushKind, () => resolve()));
    }
    if (this.failure !== null) throw this.failure;
    const out = this.output.length === 1 ? this.output[0]! : Buffer.concat(this.output);
    this.output = [];
    return out;
  }

  /** close frees the encoder; it may be called more than once. */
  close(): void {
    this.encoder?.destroy();
    this.encoder = null;
  }
}

/**
 * CompressedBody pulls the app's body one chunk per pull and yields each chunk's compressed
 * output, skipping pulls that produce none. Built by hand rather than as a generator so that a
 * `return()` before the first pull still reaches the app's iterator.
 */
class CompressedBody implements AsyncIterableIterator<Chunk> {
  private readonly inner: Iterator<Chunk> | AsyncIterator<Chunk>;
  private done = false;

  constructor(
    private readonly response: CompressedResponse,
    body: Body,
  ) {
    const sync = (body as Iterable<Chunk>)[Symbol.iterator];
    this.inner = typeof sync === 'function' ? sync.call(body) : (body as AsyncIterable<Chunk>)[Symbol.asyncIterator]();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Chunk>> {
    while (!this.done) {
      let step: IteratorResult<Chunk>;
      try {
        step = await this.inner.next();
      } catch (err) {
        // The app's iterator threw, so it is finished: no return() is owed.
        this.done = true;
        this.response.close();
        throw err;
      }
      try {
        if (!this.response.compressing) {
          // Decided against compressing: the app's chunks pass as they are.
          if (step.done === true) this.done = true;
          else return step;
          break;
        }
        if (step.done === true) {
          this.done = true;
          const rest = await this.response.encode(null);
          this.response.close();
          if (rest.length > 0) return { done: false, value: rest };
          break;
        }
        const out = await this.response.encode(step.value);
        if (out.length > 0) return { done: false, value: out };
      } catch (err) {
        // The encoder failed: the app's iterator is still open and is closed here.
        await this.return();
        throw err;
      }
    }
    return { done: true, value: undefined };
  }

  async return(): Promise<IteratorResult<Chunk>> {
    this.response.close();
    if (!this.done) {
      this.done = true;
      await this.inner.return?.();
    }
    return { done: true, value: undefined };
  }
}
