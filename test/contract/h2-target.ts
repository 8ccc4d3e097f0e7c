/**
 * The contract suite's HTTP/2 target: the reference server with TLS, its ALPN choosing `h2`,
 * spoken to by a node:http2 client trusting a certificate openssl makes for the run. Each request
 * is a stream of one session per target. Cases that show HTTP/1.1 framing cannot apply to h2 and
 * are listed in {@link H2_EXCLUDED} with the reason; the suite checks that list against the cases.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import type { App } from '../../protocol/nsgi.ts';
import { serve } from '../../src/index.ts';
import { makeCert, type Cert } from '../helpers/certs.ts';
import type { Exchange, Head, Reply, Req, Target } from './targets.ts';

/** H2_TARGET names the target in test titles. */
export const H2_TARGET = 'nsgi over h2 (node:http2 client)';

/**
 * H2_EXCLUDED are the cases the h2 target does not run, by name, each with the reason: what they
 * show is HTTP/1.1's framing or connection handling, which HTTP/2 replaces with frames and
 * streams (RFC 9113 §8.1, §8.2.2).
 */
export const H2_EXCLUDED: Readonly<Record<string, string>> = Object.freeze({
  'a FIN from the client while its response is in progress aborts nsgi.signal': 'a TCP FIN ends the whole h2 session, not one request; a client leaving one stream resets it (RST_STREAM), which the stream-cancel cases show',
  'a FIN while the response is in progress closes the body: return() once, even for an iterator parked in next()': 'a TCP FIN ends the whole h2 session, not one request; a client leaving one stream resets it (RST_STREAM), which the stream-cancel cases show',
  'Expect: 100-continue is answered at the first read of nsgi.input, not before': 'node:http2 answers Expect: 100-continue itself, before the app runs, and the client API shows no interim responses to check',
  'without a Content-Length an HTTP/1.0 body is delimited by closing': 'HTTP/1.0 cannot be spoken over h2',
  'hop-by-hop fields from the app are not sent; Connection: close is honoured': 'h2 forbids the Connection field (RFC 9113 §8.2.2): the app\'s Connection: close ends its stream, never the shared connection (test/server/http2.test.ts checks the fields are dropped)',
});

let cert: Cert | null = null;

/** certificate makes the run's certificate once; the files go at once, the PEM text stays in memory. */
function certificate(): Cert {
  if (cert === null) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-contract-h2-'));
    try {
      cert = makeCert(dir, 'server');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return cert;
}

/** startH2 serves `app` over TLS with h2 and returns a target speaking node:http2 to it, and its closer. */
export async function startH2(app: App): Promise<{ target: Target; close: () => Promise<void> }> {
  const errors: string[] = [];
  const { cert: pem, key } = certificate();
  const server = await serve(app, { host: '127.0.0.1', port: 0, tls: { cert: pem, key }, errors: { write: (m) => void errors.push(m) } });
  const session = http2.connect(`https://127.0.0.1:${server.port}`, { ca: pem });
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  const target: Target = {
    name: H2_TARGET,
    wire: false,
    errors,
    port: server.port,
    start: async (req) => H2Exchange.open(session, req),
    send: async (req) => (await target.start(req)).end(),
  };
  return {
    target,
    close: async () => {
      session.destroy();
      await server.close({ timeout: 500 });
    },
  };
}

/** WAIT_MS bounds every wait of an exchange, as the other targets' do. */
const WAIT_MS = 5_000;

/** H2Exchange is one request as a stream of the target's session. */
class H2Exchange implements Exchange {
  private head: Head | null = null;
  private readonly parts: Buffer[] = [];
  private ended = false;
  private failed = false;
  private done = false;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly stream: http2.ClientHttp2Stream) {
    stream.on('response', (headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      this.head = toHead(headers, rawHeaders);
      this.wake();
    });
    stream.on('data', (b: Buffer) => {
      this.parts.push(b);
      this.wake();
    });
    stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
    stream.on('error', () => {
      this.failed = true;
      this.wake();
    });
    stream.on('close', () => {
      // A stream reset by the server (a cut response) closes with a code other than NO_ERROR.
      if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) this.failed = true;
      this.done = true;
      this.wake();
    });
  }

  static open(session: http2.ClientHttp2Session, req: Req): H2Exchange {
    if (req.http10 === true) throw new Error('HTTP/1.0 cannot be sent over h2');
    const headers: http2.OutgoingHttpHeaders = { ':method': req.method ?? 'GET', ':path': req.path ?? '/' };
    for (const [name, value] of req.headers ?? []) {
      const lower = name.toLowerCase();
      const prev = headers[lower];
      headers[lower] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
    }
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    if (body !== undefined) headers['content-length'] = String(body.length);
    const stream = session.request(headers, { endStream: body === undefined && req.streamBody !== true });
    if (body !== undefined) stream.end(body);
    return new H2Exchange(stream);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** settle waits until `check` holds or `ms` pass, and says whether it held. */
  private async settle(check: () => boolean, ms: number): Promise<boolean> {
    if (check()) return true;
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    const held = await new Promise<boolean>((resolve) => {
      waiter = () => {
        if (check()) resolve(true);
      };
      this.waiters.add(waiter);
      timer = setTimeout(() => resolve(check()), ms);
    });
    clearTimeout(timer);
    this.waiters.delete(waiter!);
    return held;
  }

  async headWithin(ms: number): Promise<Head | null> {
    await this.settle(() => this.head !== null || this.done, ms);
    return this.head;
  }

  async bodyUntil(check: (body: Buffer) => boolean, what: string): Promise<Buffer> {
    const held = await this.settle(() => this.head !== null && check(Buffer.concat(this.parts)), WAIT_MS);
    const body = Buffer.concat(this.parts);
    if (!held) throw new Error(`${this.done ? 'the stream ended' : 'timed out'} before ${what}; received ${JSON.stringify(body.toString('latin1').slice(0, 500))}`);
    return body;
  }

  async end(): Promise<Reply> {
    this.stream.resume();
    await this.settle(() => this.done, WAIT_MS);
    if (this.head === null) throw new Error('no response head arrived on the stream');
    return { ...this.head, body: Buffer.concat(this.parts), complete: this.ended && !this.failed, framing: 'unknown' };
  }

  write(data: string | Buffer): void {
    this.stream.write(Buffer.from(data));
  }

  endBody(): void {
    this.stream.end();
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  leave(): void {
    this.stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  halfClose(): void {
    throw new Error('an h2 stream has no connection of its own to half-close');
  }

  raw(): string {
    return '';
  }

  get closed(): boolean {
    return this.done;
  }
}

/** toHead turns an h2 response head into a head: `:status`, and the field lines in order as received. */
function toHead(headers: http2.IncomingHttpHeaders, raw: readonly string[]): Head {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!raw[i]!.startsWith(':')) pairs.push([raw[i]!, raw[i + 1]!]);
  }
  return {
    status: Number(headers[':status']),
    headers: pairs,
    header(name) {
      const lower = name.toLowerCase();
      let found: string | undefined;
      for (const [n, v] of pairs) if (n === lower) found = v;
      return found;
    },
  };
}
