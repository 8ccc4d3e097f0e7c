/**
 * The ways of serving an app that the contract suite runs against, and one client interface over
 * all of them. A wire target is a real server on 127.0.0.1, port 0, spoken to with raw sockets (so
 * the test sees the exact framing); the in-memory target is `testing.ts`, spoken to through its
 * streaming API. Everything started here is closed by {@link closeAll}, which the suite calls in
 * `afterEach`; every wait has a deadline.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { App } from '../../protocol/nsgi.ts';
import { createNodeServer, fromFetch, serve, testing, toFetch, validate } from '../../src/index.ts';
import type { TestStream } from '../../src/testing.ts';
import { H2_EXCLUDED, H2_TARGET, startH2 } from './h2-target.ts';
import { RawClient, cleanup, finalResponses, header as headerOf, reqBytes, type ParsedResponse } from '../helpers/server.ts';

/** WAIT_MS bounds every wait in the suite. */
export const WAIT_MS = 5_000;

/** Req is a request as a case describes it. */
export interface Req {
  method?: string;
  path?: string;
  /** Extra header fields; Host is added. */
  headers?: Array<[string, string]>;
  /** A whole body, sent with a Content-Length. */
  body?: string | Buffer;
  /** True: the body is sent with chunked coding through `Exchange.write()` and `Exchange.endBody()`. */
  streamBody?: boolean;
  /** Send the request as HTTP/1.0 (wire targets only). */
  http10?: boolean;
}

/** Head is a response's status line and fields. */
export interface Head {
  readonly status: number;
  /** Fields in order; names as the server sent them. */
  readonly headers: Array<[string, string]>;
  /** The value of the last field called `name`, any case. */
  header(name: string): string | undefined;
}

/** Reply is a whole response. */
export interface Reply extends Head {
  readonly body: Buffer;
  /** True when the body's framing says it is all there (false: truncated). */
  readonly complete: boolean;
  /** How the body was delimited on the wire; `unknown` in memory. */
  readonly framing: 'length' | 'chunked' | 'close' | 'none' | 'unknown';
}

/** Exchange is one request in progress. */
export interface Exchange {
  /** head resolves with the head once it has arrived, or null if it has not within `ms`. */
  headWithin(ms: number): Promise<Head | null>;
  /** body resolves once the body received so far satisfies `check`. */
  bodyUntil(check: (body: Buffer) => boolean, what: string): Promise<Buffer>;
  /** end waits for the response to complete (or be cut) and returns it. */
  end(): Promise<Reply>;
  /** write sends a piece of a streamed request body. */
  write(data: string | Buffer): void;
  /** endBody ends a streamed request body. */
  endBody(): void;
  /** pause stops reading the response; resume reads again. */
  pause(): void;
  resume(): void;
  /** leave is the client going away: the connection is destroyed or the stream cancelled. */
  leave(): void;
  /** halfClose ends the client's side of the connection (FIN) and keeps reading (wire only). */
  halfClose(): void;
  /** raw is every byte received so far as latin1 text, interim responses included (wire only). */
  raw(): string;
  /** closed tells whether the server has closed the connection (wire only). */
  readonly closed: boolean;
}

/** Target is a running server for one app. */
export interface Target {
  readonly name: string;
  /** True when requests go over a real connection. */
  readonly wire: boolean;
  /** Everything written to `nsgi.errors`. */
  readonly errors: string[];
  /** The port, for wire targets. */
  readonly port: number;
  start(req: Req): Promise<Exchange>;
  send(req: Req): Promise<Reply>;
}

/** Kind is one way of serving an app. */
export interface Kind {
  readonly name: TargetName;
  readonly wire: boolean;
  /** True when the app runs under validate() and the suite checks that it reports nothing. */
  readonly validated: boolean;
  /**
   * Cases (by name) that cannot apply to this way of serving, each with the reason. The suite
   * checks each names a case, and that every `wireOnly` case is among them on a target that has
   * a connection of another kind.
   */
  readonly excluded?: Readonly<Record<string, string>>;
  start(app: App): Promise<Target>;
}

export type TargetName = typeof H2_TARGET | 'nsgi' | 'nsgi + validate()' | 'node:http (toNodeListener)' | 'fetch round trip (fromFetch(toFetch(app)) on nsgi)' | 'testing.ts (toFetch, in memory)';

const closers: Array<() => Promise<void>> = [];

/** closeAll closes every server and socket the suite started. */
export async function closeAll(): Promise<void> {
  const all = closers.splice(0);
  await Promise.all(all.map((close) => close()));
  await cleanup();
}

function wireTarget(name: string, port: number, errors: string[]): Target {
  const target: Target = {
    name,
    wire: true,
    errors,
    port,
    start: (req) => WireExchange.open(port, req),
    send: async (req) => (await target.start(req)).end(),
  };
  return target;
}

/** KINDS lists every way of serving an app the suite knows. */
export const KINDS: Kind[] = [
  {
    name: 'nsgi',
    wire: true,
    validated: false,
    async start(app) {
      const errors: string[] = [];
      const server = await serve(app, { host: '127.0.0.1', port: 0, errors: { write: (m) => void errors.push(m) } });
      closers.push(() => server.close({ timeout: 500 }));
      return wireTarget('nsgi', server.port, errors);
    },
  },
  {
    name: 'nsgi + validate()',
    wire: true,
    validated: true,
    async start(app) {
      const errors: string[] = [];
      const server = await serve(validate(app, { closeTimeout: 1000 }), { host: '127.0.0.1', port: 0, errors: { write: (m) => void errors.push(m) } });
      closers.push(() => server.close({ timeout: 500 }));
      return wireTarget('nsgi + validate()', server.port, errors);
    },
  },
  {
    name: 'node:http (toNodeListener)',
    wire: true,
    validated: false,
    async start(app) {
      const errors: string[] = [];
      const server = createNodeServer(app, { errors: { write: (m) => void errors.push(m) } });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      closers.push(() => closeNode(server));
      return wireTarget('node:http', (server.address() as AddressInfo).port, errors);
    },
  },
  {
    name: 'fetch round trip (fromFetch(toFetch(app)) on nsgi)',
    wire: true,
    validated: false,
    async start(app) {
      const errors: string[] = [];
      const stream = { write: (m: string) => void errors.push(m) };
      const server = await serve(fromFetch(toFetch(app, { errors: stream })), { host: '127.0.0.1', port: 0, errors: stream });
      closers.push(() => server.close({ timeout: 500 }));
      return wireTarget('fetch round trip', server.port, errors);
    },
  },
  {
    name: H2_TARGET,
    wire: false,
    validated: false,
    excluded: H2_EXCLUDED,
    async start(app) {
      const { target, close } = await startH2(app);
      closers.push(close);
      return target;
    },
  },
  {
    name: 'testing.ts (toFetch, in memory)',
    wire: false,
    validated: false,
    async start(app) {
      const errors: string[] = [];
      const target: Target = {
        name: 'testing.ts',
        wire: false,
        errors,
        port: 0,
        start: async (req) => MemoryExchange.open(app, req, errors),
        send: async (req) => (await target.start(req)).end(),
      };
      return target;
    },
  },
];

function closeNode(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function makeHead(status: number, headers: Array<[string, string]>): Head {
  return {
    status,
    headers,
    header(name) {
      const lower = name.toLowerCase();
      let value: string | undefined;
      for (const [n, v] of headers) if (n.toLowerCase() === lower) value = v;
      return value;
    },
  };
}

/** requestBytes writes a case's request as HTTP/1.1 (or 1.0) bytes. */
function requestBytes(req: Req): Buffer {
  const method = req.method ?? 'GET';
  let text = `${method} ${req.path ?? '/'} ${req.http10 === true ? 'HTTP/1.0' : 'HTTP/1.1'}\r\nHost: 127.0.0.1\r\n`;
  for (const [n, v] of req.headers ?? []) text += `${n}: ${v}\r\n`;
  let body = Buffer.alloc(0);
  if (req.streamBody === true) text += 'Transfer-Encoding: chunked\r\n';
  else if (req.body !== undefined) {
    body = Buffer.from(req.body);
    text += `Content-Length: ${body.length}\r\n`;
  }
  return Buffer.concat([Buffer.from(text + '\r\n', 'latin1'), body]);
}

/** WireExchange is a request over a raw TCP connection. */
class WireExchange implements Exchange {
  private constructor(
    private readonly client: RawClient,
    private readonly isHead: boolean,
  ) {}

  static async open(port: number, req: Req): Promise<WireExchange> {
    const client = await RawClient.connect(port);
    client.write(requestBytes(req));
    return new WireExchange(client, req.method === 'HEAD');
  }

  private parsed(): ParsedResponse | undefined {
    return finalResponses(this.client.data, { noBody: () => this.isHead, closed: this.client.closed })[0];
  }

  async headWithin(ms: number): Promise<Head | null> {
    await this.client.settle(() => this.parsed() !== undefined, ms);
    const r = this.parsed();
    return r === undefined ? null : makeHead(r.status, r.headers);
  }

  async bodyUntil(check: (body: Buffer) => boolean, what: string): Promise<Buffer> {
    await this.client.waitFor(() => {
      const r = this.parsed();
      return r !== undefined && check(r.body);
    }, what, WAIT_MS);
    return this.parsed()!.body;
  }

  async end(): Promise<Reply> {
    await this.client.settle(() => this.parsed()?.complete === true, WAIT_MS);
    // A close-delimited body is complete only once the connection closes; give it the time.
    let r = this.parsed();
    if (r !== undefined && !r.complete) {
      await this.client.settle(() => false, 200);
      r = this.parsed();
    }
    if (r === undefined) throw new Error(`no complete head arrived; received ${JSON.stringify(this.client.text.slice(0, 500))}`);
    const te = headerOf(r, 'transfer-encoding');
    const framing = this.isHead || r.status === 204 || r.status === 304 ? 'none' : te !== undefined ? 'chunked' : headerOf(r, 'content-length') !== undefined ? 'length' : 'close';
    return { ...makeHead(r.status, r.headers), body: r.body, complete: r.complete, framing };
  }

  /** closed tells whether the server has closed the connection. */
  get closed(): boolean {
    return this.client.closed;
  }

  write(data: string | Buffer): void {
    const bytes = Buffer.from(data);
    if (bytes.length > 0) this.client.write(Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]));
  }

  endBody(): void {
    this.client.write(Buffer.from('0\r\n\r\n'));
  }

  pause(): void {
    this.client.socket.pause();
  }

  resume(): void {
    this.client.socket.resume();
  }

  leave(): void {
    this.client.destroy();
  }

  halfClose(): void {
    this.client.socket.end();
  }

  raw(): string {
    return this.client.text;
  }
}

/** MemoryExchange is a request run by testing.ts. */
class MemoryExchange implements Exchange {
  private stream: TestStream | null = null;
  private failed: unknown = null;
  private readonly opened: Promise<TestStream | null>;
  private received: Buffer[] = [];
  private ended = false;
  private truncated = false;
  private reading: Promise<void> | null = null;
  private readonly pieces: Buffer[] = [];
  private bodyDone = false;
  private wake: (() => void) | null = null;
  private paused = false;
  private readonly abort = new AbortController();

  private constructor(app: App, req: Req, errors: string[]) {
    const self = this;
    const streamed: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const piece = self.pieces.shift();
          if (piece !== undefined) {
            yield piece;
            continue;
          }
          if (self.bodyDone) return;
          await new Promise<void>((resolve) => (self.wake = resolve));
        }
      },
    };
    const headers: Array<[string, string]> = [...(req.headers ?? [])];
    const body = req.streamBody === true ? streamed : req.body;
    this.opened = testing
      .open(app, {
        method: req.method ?? 'GET',
        path: req.path ?? '/',
        headers,
        ...(body !== undefined ? { body } : {}),
        errors: { write: (m) => void errors.push(m) },
        signal: this.abort.signal,
      })
      .then(
        (s) => (this.stream = s),
        (err) => {
          this.failed = err;
          return null;
        },
      );
  }

  static async open(app: App, req: Req, errors: string[]): Promise<MemoryExchange> {
    return new MemoryExchange(app, req, errors);
  }

  async headWithin(ms: number): Promise<Head | null> {
    let timer: NodeJS.Timeout | undefined;
    const s = await Promise.race([this.opened, new Promise<null>((resolve) => (timer = setTimeout(resolve, ms, null)))]);
    clearTimeout(timer);
    if (s === null) {
      if (this.failed !== null) throw this.failed;
      return null;
    }
    return makeHead(s.status, s.headerList);
  }

  private async waitOpen(): Promise<TestStream> {
    const head = await this.headWithin(WAIT_MS);
    if (head === null) throw new Error(`no head within ${WAIT_MS} ms`);
    return this.stream!;
  }

  /** pump reads the body in the background until it ends (or the exchange is paused or left). */
  private startReading(stream: TestStream): Promise<void> {
    this.reading ??= (async () => {
      try {
        for (;;) {
          while (this.paused && !this.ended) await new Promise((resolve) => setTimeout(resolve, 5));
          if (this.ended) return;
          const chunk = await stream.read();
          if (chunk === null) break;
          this.received.push(chunk);
        }
      } catch {
        this.truncated = true;
      }
      this.ended = true;
    })();
    return this.reading;
  }

  async bodyUntil(check: (body: Buffer) => boolean, what: string): Promise<Buffer> {
    const stream = await this.waitOpen();
    void this.startReading(stream);
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const body = Buffer.concat(this.received);
      if (check(body)) return body;
      if (this.ended || Date.now() > deadline) throw new Error(`${this.ended ? 'the body ended' : 'timed out'} before ${what}; received ${JSON.stringify(body.toString('latin1').slice(0, 500))}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async end(): Promise<Reply> {
    const stream = await this.waitOpen();
    this.paused = false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.startReading(stream), new Promise((resolve) => (timer = setTimeout(resolve, WAIT_MS)))]);
    clearTimeout(timer);
    const head = makeHead(stream.status, stream.headerList);
    return { ...head, body: Buffer.concat(this.received), complete: this.ended && !this.truncated, framing: 'unknown' };
  }

  write(data: string | Buffer): void {
    this.pieces.push(Buffer.from(data));
    this.wake?.();
  }

  endBody(): void {
    this.bodyDone = true;
    this.wake?.();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  get closed(): boolean {
    return this.ended;
  }

  halfClose(): void {
    throw new Error('testing.ts has no connection to half-close');
  }

  raw(): string {
    return '';
  }

  leave(): void {
    this.ended = true;
    this.abort.abort(new Error('the test client left'));
    void this.opened.then((s) => s?.cancel().catch(() => {}));
  }
}

/** reqText is reqBytes for raw requests written in cases. */
export { reqBytes };
