/**
 * The WebSocket echo load generator, over raw node:net sockets: the `ws` client would spend more
 * CPU than the servers it measures, and it shares a core with the rest of the suite. Each
 * connection does the handshake (checking the 101 and the accept value), then writes a batch of
 * masked binary frames in one write and waits until every echo has come back, checking each
 * one's opcode, length and bytes, before it writes the next batch. It understands only what the
 * echoes need: unmasked, unfragmented server frames with a payload under 126 bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEAD_END = Buffer.from('\r\n\r\n');
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
/** CLOSE_FRAME is a masked close frame with code 1000 (normal closure), mask 0. */
const CLOSE_FRAME = Buffer.from([0x80 | OP_CLOSE, 0x80 | 2, 0, 0, 0, 0, 0x03, 0xe8]);
/** SLACK_SECONDS is how long past the planned run the guard waits for handshakes, echoes and closes. */
const SLACK_SECONDS = 15;

/** EchoOptions describes one echo run. */
export interface EchoOptions {
  port: number;
  path: string;
  connections: number;
  /** Messages written per batch, in one write, per connection. */
  batch: number;
  /** Payload bytes per message, under 126. */
  size: number;
  /** Seconds of echoes before the measured window, not counted. */
  warmupSeconds: number;
  /** Seconds of the measured window; connections then finish their batch in flight. */
  seconds: number;
  /** Called when the measured window opens (to read the server's CPU time). */
  onStart?(): void;
  /** Called when the last echo of the window has arrived, before the connections close. */
  onEnd?(): void;
}

/** EchoResult is what one echo run measured. */
export interface EchoResult {
  /** Echoes that arrived in the measured window. */
  messages: number;
  /** The window's length, from its start to the last echo of the last batch in flight. */
  seconds: number;
  messagesPerSecond: number;
}

/** HandshakeRefused is a handshake answered with something other than `101 Switching Protocols`. */
class HandshakeRefused extends Error {
  constructor(readonly statusLine: string) {
    super(`the WebSocket handshake was answered ${JSON.stringify(statusLine)}, not 101 Switching Protocols`);
  }
}

/**
 * runEcho opens `connections` WebSocket connections to `path`, echoes batches on all of them for
 * `warmupSeconds` and then `seconds`, closes them (close frame, then end) and resolves with the
 * echoes per second of the measured window. A guard destroys every socket and rejects if the
 * whole run takes more than SLACK_SECONDS longer than planned.
 */
export function runEcho(options: EchoOptions): Promise<EchoResult> {
  if (options.size >= 126) throw new RangeError(`runEcho sends payloads under 126 bytes, not ${options.size}`);
  return new Promise((resolve, reject) => new EchoRun(options, resolve, reject).start());
}

type Phase = 'handshake' | 'warmup' | 'measure' | 'drain' | 'close' | 'done';

/** EchoRun is one run: its connections, its phase, and its count. */
class EchoRun {
  phase: Phase = 'handshake';
  /** payloads[k] is the payload of the k-th message of every batch. */
  readonly payloads: Buffer[];
  private readonly connections: Connection[] = [];
  private readonly guard: NodeJS.Timeout;
  private ready = 0;
  private idle = 0;
  private closed = 0;
  private messages = 0;
  private t0 = 0;
  private seconds = 0;

  constructor(
    readonly options: EchoOptions,
    private readonly resolve: (result: EchoResult) => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.payloads = Array.from({ length: options.batch }, () => randomBytes(options.size));
    const limit = options.warmupSeconds + options.seconds + SLACK_SECONDS;
    this.guard = setTimeout(() => {
      const waiting = this.connections.filter((c) => c.waiting()).length;
      this.fail(new Error(`websocket echo still in phase ${this.phase} after ${limit} s: ${waiting} of ${options.connections} connections waiting on the server`));
    }, limit * 1000);
  }

  start(): void {
    for (let i = 0; i < this.options.connections; i++) this.connections.push(new Connection(this, i));
  }

  /** opened is called by each connection once its handshake is accepted. */
  opened(): void {
    if (this.phase !== 'handshake') return;
    if (++this.ready < this.connections.length) return;
    this.phase = 'warmup';
    for (const c of this.connections) c.sendBatch();
    if (this.options.warmupSeconds > 0) setTimeout(() => this.measure(), this.options.warmupSeconds * 1000);
    else this.measure();
  }

  private measure(): void {
    if (this.phase !== 'warmup') return;
    this.phase = 'measure';
    this.options.onStart?.();
    this.t0 = performance.now();
    setTimeout(() => {
      if (this.phase === 'measure') this.phase = 'drain';
    }, this.options.seconds * 1000);
  }

  /** echoed counts one echo. */
  echoed(): void {
    if (this.phase === 'measure' || this.phase === 'drain') this.messages++;
  }

  /** batchDone is called by a connection whose whole batch has come back; it says whether to send the next. */
  batchDone(): boolean {
    if (this.phase === 'warmup' || this.phase === 'measure') return true;
    if (this.phase === 'drain' && ++this.idle === this.connections.length) {
      this.seconds = (performance.now() - this.t0) / 1000;
      this.options.onEnd?.();
      this.phase = 'close';
      for (const c of this.connections) c.close();
    }
    return false;
  }

  /** socketClosed is called by each connection when its socket has closed. */
  socketClosed(c: Connection, owed: number): void {
    if (this.phase !== 'close') {
      this.fail(new Error(`connection ${c.index} was closed by the server in phase ${this.phase}${owed > 0 ? ` with ${owed} echoes owed` : ''}`));
      return;
    }
    if (++this.closed < this.connections.length) return;
    this.phase = 'done';
    clearTimeout(this.guard);
    this.resolve({ messages: this.messages, seconds: this.seconds, messagesPerSecond: this.messages / this.seconds });
  }

  fail(err: Error): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    clearTimeout(this.guard);
    for (const c of this.connections) c.socket.destroy();
    this.reject(err);
  }
}

/** Connection is one client socket, from its handshake to its close. */
class Connection {
  readonly socket: net.Socket;
  private readonly key = randomBytes(16).toString('base64');
  private readonly batch: Buffer;
  private head: Buffer | null = Buffer.alloc(0);
  private carry: Buffer | null = null;
  /** How many echoes of the batch in flight have not come back yet. */
  private owed = 0;
  private closing = false;

  constructor(
    private readonly run: EchoRun,
    readonly index: number,
  ) {
    const { port, path } = run.options;
    this.batch = maskedBatch(run.payloads);
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    this.socket.on('connect', () => {
      this.socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on('data', (data: Buffer) => {
      try {
        this.onData(data);
      } catch (err) {
        run.fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    this.socket.on('error', (err) => {
      if (!this.closing) run.fail(new Error(`connection ${index}: ${err.message}`));
    });
    this.socket.on('close', () => run.socketClosed(this, this.owed));
  }

  /** waiting tells whether this connection is waiting for its handshake, for echoes, or for its close. */
  waiting(): boolean {
    return this.head !== null || this.owed > 0 || (this.closing && !this.socket.destroyed);
  }

  sendBatch(): void {
    this.owed = this.run.payloads.length;
    this.socket.write(this.batch);
  }

  /** close sends a close frame and ends the socket; the server answers with its own and ends too. */
  close(): void {
    this.closing = true;
    this.socket.end(CLOSE_FRAME);
  }

  private onData(data: Buffer): void {
    if (this.head !== null) {
      const rest = this.handshake(data);
      if (rest === null || rest.length === 0) return;
      data = rest;
    }
    const buf = this.carry === null ? data : Buffer.concat([this.carry, data]);
    this.carry = null;
    const size = this.run.options.size;
    let i = 0;
    while (buf.length - i >= 2) {
      const b0 = buf[i]!;
      const b1 = buf[i + 1]!;
      if ((b1 & 0x80) !== 0) throw new Error(`connection ${this.index}: the server sent a masked frame`);
      const length = b1 & 0x7f;
      if (this.closing && (b0 & 0x0f) === OP_CLOSE) {
        // The server's answer to our close frame; its end follows.
        if (buf.length - i < 2 + length) break;
        i += 2 + length;
        continue;
      }
      if (b0 !== (0x80 | OP_BINARY)) {
        const what = (b0 & 0x0f) === OP_CLOSE ? 'a close frame' : `a frame with first byte 0x${b0.toString(16)}`;
        throw new Error(`connection ${this.index}: expected an unfragmented binary echo, got ${what}`);
      }
      if (length !== size) throw new Error(`connection ${this.index}: an echo of ${length === 126 || length === 127 ? 'more than 125' : length} bytes, expected ${size}`);
      if (buf.length - i < 2 + size) break;
      if (this.owed === 0) throw new Error(`connection ${this.index}: an echo arrived with no message in flight`);
      const expected = this.run.payloads[this.run.payloads.length - this.owed]!;
      if (expected.compare(buf, i + 2, i + 2 + size) !== 0) throw new Error(`connection ${this.index}: an echo's bytes differ from the message sent`);
      i += 2 + size;
      this.run.echoed();
      if (--this.owed === 0 && this.run.batchDone()) this.sendBatch();
    }
    if (i < buf.length) this.carry = buf.subarray(i);
  }

  /** handshake reads the response head; it returns the bytes after it, or null while it is incomplete. */
  private handshake(data: Buffer): Buffer | null {
    const buf = Buffer.concat([this.head!, data]);
    const end = buf.indexOf(HEAD_END);
    if (end < 0) {
      if (buf.length > 16 * 1024) throw new Error(`connection ${this.index}: handshake response head too large`);
      this.head = buf;
      return null;
    }
    this.head = null;
    const head = buf.toString('latin1', 0, end);
    const eol = head.indexOf('\r\n');
    const statusLine = eol < 0 ? head : head.slice(0, eol);
    if (!/^HTTP\/1\.1 101 /.test(statusLine)) throw new HandshakeRefused(statusLine);
    const accept = /\r\nsec-websocket-accept:[ \t]*([^\r]*?)[ \t]*(?:\r\n|$)/i.exec(head)?.[1];
    const want = createHash('sha1').update(this.key + GUID).digest('base64');
    if (accept !== want) throw new Error(`connection ${this.index}: Sec-WebSocket-Accept is ${JSON.stringify(accept ?? null)}, expected ${want}`);
    this.run.opened();
    return buf.subarray(end + HEAD_END.length);
  }
}

/** maskedBatch is one client frame per payload (FIN, binary, masked with a random key), back to back. */
function maskedBatch(payloads: Buffer[]): Buffer {
  const size = payloads[0]!.length;
  const frame = 6 + size;
  const out = Buffer.allocUnsafe(payloads.length * frame);
  for (const [k, payload] of payloads.entries()) {
    const o = k * frame;
    out[o] = 0x80 | OP_BINARY;
    out[o + 1] = 0x80 | size;
    const mask = randomBytes(4);
    mask.copy(out, o + 2);
    for (let j = 0; j < size; j++) out[o + 6 + j] = payload[j]! ^ mask[j & 3]!;
  }
  return out;
}
