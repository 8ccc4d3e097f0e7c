/**
 * Helpers for the end-to-end server tests: the real server on an ephemeral loopback port, raw TCP
 * clients that write hand-made bytes and collect what comes back, a small parser for the response
 * bytes, and curl.
 *
 * Everything started here is remembered until {@link cleanup} ends it, which the tests call in
 * `afterEach`, so a failing test leaves no server, socket or child process behind. Every wait has
 * a deadline and fails with a message that quotes what did arrive.
 */

import { execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { serve, type ServeOptions, type Server } from '../../src/index.ts';

/** DEFAULT_WAIT_MS bounds every wait that is not given its own deadline. */
export const DEFAULT_WAIT_MS = 5_000;

const servers = new Set<Server>();
const sockets = new Set<net.Socket>();
const children = new Set<ChildProcess>();

/** Started is a running server with the lines written to its `errors` stream. */
export interface Started {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  /** Everything the server and the app wrote to `nsgi.errors`, one entry per write. */
  readonly errors: string[];
}

/**
 * startServer serves `app` on 127.0.0.1, port 0, with its errors captured; {@link cleanup} closes
 * it.
 */
export async function startServer(app: App, options: ServeOptions = {}): Promise<Started> {
  const errors: string[] = [];
  const server = await serve(app, {
    errors: { write: (message) => void errors.push(message) },
    ...options,
    host: '127.0.0.1',
    port: 0,
  });
  servers.add(server);
  return { server, port: server.port, url: server.url, errors };
}

/** cleanup destroys every raw socket, kills every child and closes every server started here. */
export async function cleanup(): Promise<void> {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  const closing = [...servers].map((server) => server.close({ timeout: 1000 }));
  servers.clear();
  await Promise.all(closing);
}

/** reqBytes turns readable request text into bytes, every `\n` not after `\r` becoming CRLF. */
export function reqBytes(text: string): Buffer {
  return Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'latin1');
}

/** sleep resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * waitUntil polls `check` every 10 ms until it returns true, and rejects with `what` once
 * `timeoutMs` has passed.
 */
export async function waitUntil(check: () => boolean, what: string, timeoutMs: number = DEFAULT_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * waitUntilSteady resolves with `read()` once it has not changed for `quietMs` (a producer that
 * backpressure has stopped), and rejects with `what` if it is still changing after `timeoutMs`.
 * A loaded machine fills socket buffers slowly, so a fixed sleep would not tell "stopped" from
 * "slow".
 */
export async function waitUntilSteady(read: () => number, what: string, quietMs = 300, timeoutMs: number = DEFAULT_WAIT_MS): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let value = read();
  let since = Date.now();
  for (;;) {
    await sleep(20);
    const now = read();
    if (now !== value) {
      value = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return value;
    if (Date.now() > deadline) throw new Error(`${what} still changing after ${timeoutMs} ms (now ${now})`);
  }
}

// ---- raw TCP ----------------------------------------------------------------------------------

/** RawResult is what a raw client received. */
export interface RawResult {
  /** Every byte received. */
  readonly data: Buffer;
  /** The same bytes as latin1 text, one character per byte. */
  readonly text: string;
  /** True if the server ended or closed the connection. */
  readonly closed: boolean;
}

/** RawRequestOptions tells {@link rawRequest} when to stop collecting. */
export interface RawRequestOptions {
  /** Stop as soon as the bytes received so far satisfy this; default: wait for the server to close. */
  until?: (data: Buffer) => boolean;
  /** Milliseconds before giving up; the bytes so far are returned with `closed: false`. */
  timeout?: number;
}

/**
 * rawRequest opens a TCP connection, writes `bytes` (each element of an array in its own write,
 * strings converted with {@link reqBytes}), and collects the response until the server closes,
 * `until` is satisfied, or the timeout passes. The socket is always destroyed before it resolves.
 */
export async function rawRequest(
  port: number,
  bytes: string | Uint8Array | Array<string | Uint8Array>,
  options: RawRequestOptions = {},
): Promise<RawResult> {
  const client = await RawClient.connect(port);
  try {
    for (const part of Array.isArray(bytes) ? bytes : [bytes]) client.write(part);
    const until = options.until;
    const timeout = options.timeout ?? DEFAULT_WAIT_MS;
    await client.settle((data) => (until === undefined ? false : until(data)), timeout);
    return client.result();
  } finally {
    client.destroy();
  }
}

/**
 * RawClient is one raw TCP connection to the server, for conversations: write some bytes, wait
 * for a reply, write more. What it receives accumulates in {@link RawClient.data}.
 */
export class RawClient {
  /** Every byte received so far. */
  data: Buffer = Buffer.alloc(0);
  /** True once the server has ended or closed the connection. */
  closed = false;
  private readonly listeners = new Set<() => void>();

  private constructor(readonly socket: net.Socket, collect: boolean) {
    if (collect) {
      socket.on('data', (chunk: Buffer) => {
        this.data = Buffer.concat([this.data, chunk]);
        this.notify();
      });
    }
    socket.on('end', () => this.markClosed());
    socket.on('close', () => this.markClosed());
    socket.on('error', () => this.markClosed());
  }

  /**
   * connect opens a connection to 127.0.0.1:`port`. With `collect: false` nothing is read (the
   * socket stays paused) until the caller reads from `socket` itself.
   */
  static connect(port: number, options: { collect?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      sockets.add(socket);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`could not connect to port ${port} within ${DEFAULT_WAIT_MS} ms`));
      }, DEFAULT_WAIT_MS);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawClient(socket, options.collect ?? true));
      });
    });
  }

  /** text is everything received as latin1 text. */
  get text(): string {
    return this.data.toString('latin1');
  }

  /** write sends bytes; a string goes through {@link reqBytes}. */
  write(bytes: string | Uint8Array): void {
    this.socket.write(typeof bytes === 'string' ? reqBytes(bytes) : bytes);
  }

  /**
   * waitFor resolves with the bytes received once `check` accepts them, and rejects if the
   * connection closes first or `timeoutMs` passes, quoting what arrived.
   */
  async waitFor(check: (data: Buffer) => boolean, what: string, timeoutMs: number = DEFAULT_WAIT_MS): Promise<Buffer> {
    const met = await this.settle(check, timeoutMs);
    if (!met) {
      const why = this.closed ? 'the connection closed' : `${timeoutMs} ms passed`;
      throw new Error(`${why} before ${what}; received ${JSON.stringify(this.text.slice(0, 2000))}`);
    }
    return this.data;
  }

  /** waitForText waits until the received text contains `needle`. */
  waitForText(needle: string, timeoutMs: number = DEFAULT_WAIT_MS): Promise<Buffer> {
    return this.waitFor((data) => data.includes(needle, 0, 'latin1'), `the text ${JSON.stringify(needle)}`, timeoutMs);
  }

  /** waitForResponses waits until `n` complete final responses have arrived. */
  waitForResponses(n: number, timeoutMs: number = DEFAULT_WAIT_MS, options: ParseOptions = {}): Promise<Buffer> {
    return this.waitFor((data) => untilResponses(n, options)(data), `${n} complete responses`, timeoutMs);
  }

  /** waitForClose resolves once the server has closed the connection, or rejects after `timeoutMs`. */
  async waitForClose(timeoutMs: number = DEFAULT_WAIT_MS): Promise<void> {
    await this.settle(() => false, timeoutMs);
    if (!this.closed) throw new Error(`the connection was still open after ${timeoutMs} ms; received ${JSON.stringify(this.text.slice(0, 2000))}`);
  }

  /**
   * settle resolves true once `check` accepts the bytes, false once the connection has closed or
   * `timeoutMs` passed without that.
   */
  settle(check: (data: Buffer) => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const listener = (): void => {
        if (check(this.data)) finish(true);
        else if (this.closed) finish(false);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (met: boolean): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(met);
      };
      this.listeners.add(listener);
      listener();
    });
  }

  /** result is a snapshot of what was received. */
  result(): RawResult {
    return { data: this.data, text: this.text, closed: this.closed };
  }

  /** destroy closes the connection at once. */
  destroy(): void {
    this.socket.destroy();
    sockets.delete(this.socket);
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/**
 * stalledDownload asks for `GET /` twice on one connection (the second with `Connection: close`),
 * reads nothing for `stallMs`, then reads in sips, pausing a millisecond after each read, so that
 * the server's writes stop part way and go on at drain. It resolves with the final responses once
 * the server has closed the connection.
 */
export async function stalledDownload(port: number, stallMs = 300, timeoutMs = 20_000): Promise<ParsedResponse[]> {
  const client = await RawClient.connect(port, { collect: false });
  client.socket.pause();
  client.write(GET);
  client.write('GET / HTTP/1.1\nHost: t\nConnection: close\n\n');
  await sleep(stallMs);
  const received: Buffer[] = [];
  client.socket.on('data', (chunk: Buffer) => {
    received.push(chunk);
    client.socket.pause();
    setTimeout(() => client.socket.resume(), 1);
  });
  client.socket.resume();
  await client.waitForClose(timeoutMs);
  return finalResponses(Buffer.concat(received));
}

// ---- response bytes ---------------------------------------------------------------------------

/** ParsedResponse is one response found in the received bytes. */
export interface ParsedResponse {
  readonly status: number;
  /** The status line without its CRLF. */
  readonly statusLine: string;
  /** The header fields in order, names as sent. */
  readonly headers: Array<[string, string]>;
  /** The head exactly as received, final CRLF CRLF included. */
  readonly head: string;
  /** The body with any chunked coding removed. */
  readonly body: Buffer;
  /** The body bytes exactly as received (chunk framing included). */
  readonly rawBody: Buffer;
  /** True when the body's framing says it is all there (close-delimited: when the peer closed). */
  readonly complete: boolean;
}

/** ParseOptions tells the parser what the bytes cannot. */
export interface ParseOptions {
  /** True for the index (among final responses) of each response to HEAD, which has no body. */
  noBody?: (index: number) => boolean;
  /** The connection has closed, so a close-delimited body is complete. */
  closed?: boolean;
}

/** header returns the value of the last field named `name` (any case), or undefined. */
export function header(response: ParsedResponse, name: string): string | undefined {
  const lower = name.toLowerCase();
  let value: string | undefined;
  for (const [n, v] of response.headers) if (n.toLowerCase() === lower) value = v;
  return value;
}

/** headerCount counts the fields named `name` (any case). */
export function headerCount(response: ParsedResponse, name: string): number {
  const lower = name.toLowerCase();
  return response.headers.filter(([n]) => n.toLowerCase() === lower).length;
}

/**
 * parseResponses reads successive responses (interim 1xx ones included) from `data`. It stops at
 * the first incomplete one, which is returned with `complete: false`.
 */
export function parseResponses(data: Buffer, options: ParseOptions = {}): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let pos = 0;
  let finals = 0;
  while (pos < data.length) {
    const end = data.indexOf('\r\n\r\n', pos, 'latin1');
    if (end === -1) break;
    const head = data.toString('latin1', pos, end + 4);
    const lines = head.slice(0, -4).split('\r\n');
    const statusLine = lines[0] ?? '';
    const status = Number(statusLine.slice(9, 12));
    const headers: Array<[string, string]> = lines.slice(1).map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon), line.slice(colon + 1).trim()];
    });
    pos = end + 4;
    const partial = { status, statusLine, headers, head };
    const get = (name: string): string | undefined => header({ ...partial, body: Buffer.alloc(0), rawBody: Buffer.alloc(0), complete: true }, name);
    if (status >= 100 && status < 200) {
      out.push({ ...partial, body: Buffer.alloc(0), rawBody: Buffer.alloc(0), complete: true });
      continue;
    }
    const index = finals++;
    if (options.noBody?.(index) === true || status === 204 || status === 304) {
      out.push({ ...partial, body: Buffer.alloc(0), rawBody: Buffer.alloc(0), complete: true });
      continue;
    }
    const te = get('transfer-encoding');
    const cl = get('content-length');
    if (te !== undefined && /chunked/i.test(te)) {
      const parts: Buffer[] = [];
      let p = pos;
      let complete = false;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', p, 'latin1');
        if (lineEnd === -1) break;
        const size = parseInt(data.toString('latin1', p, lineEnd), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const trailerEnd = data.indexOf('\r\n\r\n', lineEnd, 'latin1');
          if (trailerEnd === -1) break;
          p = trailerEnd + 4;
          complete = true;
          break;
        }
        if (lineEnd + 2 + size + 2 > data.length) break;
        parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
        p = lineEnd + 2 + size + 2;
      }
      out.push({ ...partial, body: Buffer.concat(parts), rawBody: data.subarray(pos, complete ? p : data.length), complete });
      if (!complete) return out;
      pos = p;
    } else if (cl !== undefined) {
      const n = Number(cl);
      const body = data.subarray(pos, Math.min(data.length, pos + n));
      const complete = body.length === n;
      out.push({ ...partial, body, rawBody: body, complete });
      if (!complete) return out;
      pos += n;
    } else {
      const body = data.subarray(pos);
      out.push({ ...partial, body, rawBody: body, complete: options.closed === true });
      return out;
    }
  }
  return out;
}

/** finalResponses is {@link parseResponses} without the interim 1xx responses. */
export function finalResponses(data: Buffer, options: ParseOptions = {}): ParsedResponse[] {
  return parseResponses(data, options).filter((r) => r.status >= 200);
}

/** untilResponses is an `until` condition: `n` complete final responses have arrived. */
export function untilResponses(n: number, options: ParseOptions = {}): (data: Buffer) => boolean {
  return (data) => finalResponses(data, options).filter((r) => r.complete).length >= n;
}

// ---- curl -------------------------------------------------------------------------------------

/** CurlResult is how a curl run ended. */
export interface CurlResult {
  readonly code: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** curl runs /usr/bin/curl with `args`, killed after `timeoutMs`; cleanup kills it too. */
export function curl(args: readonly string[], timeoutMs: number = 15_000): Promise<CurlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      '/usr/bin/curl',
      ['--silent', '--show-error', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args],
      { encoding: 'buffer', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        children.delete(child);
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr: stderr.toString('utf8') });
      },
    );
    children.add(child);
  });
}

/** sha256 hashes bytes to hex. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** hashApp reads the whole request body and answers with its length and sha256. */
export const hashApp: App = async function* (environ: Environ, startResponse) {
  const hash = createHash('sha256');
  let n = 0;
  for await (const part of environ['nsgi.input']) {
    hash.update(part);
    n += part.length;
  }
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  yield `${n} ${hash.digest('hex')}`;
};

/** GET is the smallest valid HTTP/1.1 request, in the readable form {@link reqBytes} and the clients take. */
export const GET = 'GET / HTTP/1.1\nHost: t\n\n';

/** pathApp answers every request with its path as a plain-text body, and records the paths in `seen`. */
export function pathApp(seen: string[] = []): App {
  return (environ, startResponse) => {
    seen.push(environ.PATH_INFO);
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return [environ.PATH_INFO];
  };
}

/** echoEnviron answers with the named keys of its environ as JSON (`null` for an absent key). */
export function echoEnviron(keys: readonly string[]): App {
  return (environ, startResponse) => {
    const body = JSON.stringify(Object.fromEntries(keys.map((key) => [key, environ[key] ?? null])));
    startResponse('200 OK', [['Content-Type', 'application/json'], ['Content-Length', String(body.length)]]);
    return [body];
  };
}

/** environEcho answers with the host, port and path keys of its environ as JSON. */
export const environEcho: App = echoEnviron(['SERVER_NAME', 'SERVER_PORT', 'HTTP_HOST', 'PATH_INFO']);

/** recording is an app that keeps the environ of its last request and answers with a short text. */
export function recording(): { app: App; last: () => Environ } {
  let environ: Environ | null = null;
  return {
    app: (e, startResponse) => {
      environ = e;
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['ok'];
    },
    last: () => environ!,
  };
}
