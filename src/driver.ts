/**
 * The per-socket driver of the reference server: it feeds a socket's bytes to an
 * {@link Http1Connection}, runs an {@link Exchange} per request, writes what the connection
 * produces, pauses and resumes reading, and closes the socket. Its deadlines are in
 * `deadlines.ts`, its log line in `access-log.ts`; what happens after a response is the
 * connection's decision (`Http1Connection.afterResponse`).
 *
 * Theory of operation. A driver is in one state at a time:
 *
 *     reading --close()--> closing --(client may still be sending)--> lingering
 *        \--upgrade()--> upgraded          (any) --socket closed--> gone
 *
 * While reading, each read is parsed into events until the parser needs more bytes or must wait
 * for a response; what the read's requests produced leaves in one write at the end of the read.
 * Reading pauses for three reasons, kept as one set: the app is behind on the request body
 * (input), too many pipelined bytes wait unparsed (pipeline), and the client is not reading its
 * responses (output). It resumes when the last reason is gone.
 */
import type net from 'node:net';
import type { App, ErrorStream, HeaderList, Upgraded } from '../protocol/nsgi.ts';
import { accessLogLine } from './access-log.ts';
import { RequestInput, inputAfterResponse, type InputHooks } from './body.ts';
import { Deadlines, Phase, type DeadlineOwner, type DeadlineTimes } from './deadlines.ts';
import type { ConnectionInfo, EnvironBuilder } from './environ.ts';
import { AppError, ClientGoneError, ProtocolError, ServerClosingError } from './errors.ts';
import { Exchange, OUTPUT_HIGH_WATER_MARK, type ExchangeHost } from './exchange.ts';
import { applyForwarded, type TrustedProxies } from './forwarded.ts';
import { AfterResponse, Http1Connection } from './http1/connection.ts';
import type { RequestHead } from './http1/parser.ts';
import type { Http1Shared } from './http1/shared.ts';
import { prepareHeaders, type HeadCache } from './http1/writer.ts';

/** Unparsed pipelined bytes above which the server stops reading until it catches up. */
const PIPELINE_HIGH_WATER_MARK = 64 * 1024;

/** ServerContext is what every driver of one server shares: the app, the settings and the caches. */
export interface ServerContext extends DeadlineTimes {
  readonly app: App;
  readonly errors: ErrorStream;
  readonly accessLog: ((line: string) => void) | undefined;
  readonly scriptName: string;
  readonly multiprocess: boolean;
  readonly trustedProxies: TrustedProxies | null;
  readonly http1: Http1Shared;
  readonly environs: EnvironBuilder;
  /** Every open driver; a driver removes itself when its socket closes. */
  readonly drivers: Set<Driver>;
  /** True once the server's close() has begun. */
  closing: boolean;
}

/** DriverState is where a driver stands; see the theory of operation above. */
const enum DriverState {
  Reading,
  Closing,
  Lingering,
  Upgraded,
  Gone,
}

/** Pause is a reason to stop reading the socket; a driver keeps a set of them as bits. */
const enum Pause {
  Input = 1,
  Pipeline = 2,
  Output = 4,
}

/** Driver drives one socket: bytes in, exchanges run, bytes out, deadlines, closing. */
export class Driver implements ExchangeHost, InputHooks, ConnectionInfo, DeadlineOwner {
  readonly http: Http1Connection;
  readonly errors: ErrorStream;

  // What the environ needs to know of the connection (ConnectionInfo), kept on the driver itself
  // rather than in an object of its own: idle connections are what a streaming server holds most of.
  readonly remoteAddress: string;
  readonly remotePort: string;
  readonly localAddress: string;
  readonly localPort: string;
  readonly urlScheme = 'http';
  readonly scriptName: string;
  readonly multiprocess: boolean;

  private state = DriverState.Reading;
  private paused = 0;
  /** The client has sent its FIN: nothing more will come from it. */
  private peerEnded = false;
  /** process() is running (responses made meanwhile are flushed at its end). */
  private processing = false;
  /** A flush of the output is owed, at the end of process() or of the tick. */
  private flushScheduled = false;
  private exchange: Exchange | null = null;
  private input: RequestInput | null = null;
  private drainWaiter: Promise<void> | null = null;
  private drainResolve: (() => void) | null = null;
  private drainReject: ((err: Error) => void) | null = null;
  private readonly deadlines: Deadlines;
  private readonly trusted: boolean;
  private requestStart = 0;

  constructor(
    readonly socket: net.Socket,
    private readonly server: ServerContext,
  ) {
    this.http = new Http1Connection(server.http1);
    this.errors = server.errors;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = String(socket.remotePort ?? '');
    this.localAddress = socket.localAddress ?? '';
    this.localPort = String(socket.localPort ?? '');
    this.scriptName = server.scriptName;
    this.multiprocess = server.multiprocess;
    this.trusted = server.trustedProxies?.trusts(this.remoteAddress) ?? false;
    this.deadlines = new Deadlines(this, server);
    // Shared listeners that find the driver on the socket, rather than five closures per
    // connection: idle connections are what a streaming server holds most of.
    (socket as OwnedSocket)[DRIVER] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
    this.deadlines.arm(Phase.Head);
  }

  /** heads checks statuses and headers for the server. */
  get heads(): HeadCache {
    return this.server.http1.heads;
  }

  /** gone is true once the socket is closed. */
  get gone(): boolean {
    return this.state === DriverState.Gone;
  }

  // ---- input ------------------------------------------------------------------------------

  /** onData takes bytes from the socket. */
  onData(data: Buffer): void {
    if (this.state !== DriverState.Reading) return;
    if (this.deadlines.phase === Phase.Idle) this.deadlines.arm(Phase.None);
    this.http.receive(data);
    this.process();
  }

  /** process turns buffered bytes into events until it needs more or must wait for a response. */
  private process(): void {
    if (this.processing) return;
    this.processing = true;
    const http = this.http;
    try {
      while (this.state === DriverState.Reading) {
        let event;
        try {
          event = http.nextEvent();
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          this.onProtocolError(err);
          break;
        }
        if (event.kind === 'head') {
          this.startExchange(event.head);
        } else if (event.kind === 'data') {
          const input = this.input;
          const exchange = this.exchange;
          this.deadlines.bodyProgress();
          if (input !== null && !input.abandoned && exchange !== null && !exchange.finished) {
            if (!input.push(event.data)) this.pause(Pause.Input);
          } else if (!http.discardBody(event.data.length) && (exchange === null || exchange.finished)) {
            this.close();
            break;
          }
        } else if (event.kind === 'end') {
          this.deadlines.stopBody();
          this.input?.end();
          if (!this.afterResponse()) break;
        } else if (event.kind === 'need-data') {
          // Between requests, the head deadline runs from the first byte of a head, including one
          // that stopped at a line end (every whole line is already parsed, so nothing counts as
          // buffered).
          const phase = this.deadlines.phase;
          if (http.request === null && phase !== Phase.Head) {
            if (!http.idle) this.deadlines.arm(Phase.Head);
            // Only empty lines, which a client may send before a request line (RFC 9112 §2.2):
            // the parser is idle again, and so is the connection, but its bytes stopped the idle
            // deadline. One that more empty lines cannot push back takes its place.
            else if (phase === Phase.None) this.deadlines.arm(Phase.EmptyLines);
          }
          break;
        } else {
          if (http.buffered > PIPELINE_HIGH_WATER_MARK) this.pause(Pause.Pipeline);
          break;
        }
      }
    } finally {
      this.processing = false;
      // What the requests of this read produced leaves now, in one write (see scheduleFlush).
      if (this.flushScheduled) this.flushNow();
    }
    // A client that has closed its side sends nothing more: once no response is under way, close.
    if (this.peerEnded && this.state === DriverState.Reading && (this.exchange === null || this.exchange.finished)) this.close();
  }

  private startExchange(head: RequestHead): void {
    const deadlines = this.deadlines;
    if (deadlines.phase === Phase.Head || deadlines.phase === Phase.EmptyLines) deadlines.arm(Phase.None);
    const server = this.server;
    this.requestStart = server.accessLog === undefined ? 0 : Date.now();
    const http = this.http;
    if (server.closing) http.mustClose();
    if (head.method === 'CONNECT') {
      http.sendErrorResponse(501, 'CONNECT is not supported', true);
      this.scheduleFlush();
      return;
    }
    const input = new RequestInput(this, head.contentLength <= 0 && !head.chunked);
    const exchange = new Exchange(this, input);
    const environ = server.environs.build(head, this, input, exchange);
    if (head.version === 'HTTP/1.1') {
      environ['nsgi.early_hints'] = exchange.earlyHints.bind(exchange);
      environ['nsgi.set_trailers'] = exchange.setTrailers.bind(exchange);
      if (head.upgrade) environ['nsgi.upgrade'] = exchange.upgrade.bind(exchange);
    }
    if (this.trusted) applyForwarded(environ, server.trustedProxies!);
    this.exchange = exchange;
    this.input = input;
    // A head that finished arriving after close() began: the app learns at once that the server
    // is closing (SRV-28), as the exchanges under way at close() did.
    if (server.closing) exchange.abortSignal(new ServerClosingError());
    if (this.peerEnded) exchange.clientClosed(new ClientGoneError('the client closed its side of the connection'));
    exchange.run(server.app, environ);
  }

  /** exchangeDone is called by the exchange when its response is complete, cut, or abandoned. */
  exchangeDone(): void {
    if (this.server.accessLog !== undefined && this.http.request !== null) this.logAccess(0);
    if (this.state !== DriverState.Reading) return;
    // While process() runs, the request's end event is still to come and decides then.
    if (this.processing && this.http.requestBodyDone) return;
    if (this.afterResponse()) this.process();
  }

  /**
   * afterResponse acts on the connection's decision once a response is over: on to the next
   * request, read and discard the rest of the body, close, or wait. It returns true when
   * processing may go on.
   */
  private afterResponse(): boolean {
    const ex = this.exchange;
    if (ex !== null && !ex.finished) return false;
    const http = this.http;
    switch (http.afterResponse(this.peerEnded)) {
      case AfterResponse.Wait:
        return false;
      case AfterResponse.Close:
        this.close();
        return false;
      case AfterResponse.Drain:
        // The rest is read and thrown away: an app still reading learns so, rather than seeing
        // the body end early.
        this.input?.discard(inputAfterResponse());
        this.resume(Pause.Input);
        this.deadlines.startBody();
        return false;
    }
    http.nextCycle();
    this.exchange = null;
    this.input = null;
    // Pipelined requests answered in one go must not outrun a client that is not reading: once
    // the output is past its mark and the socket is full, read no further request until drain.
    if (http.out.size >= OUTPUT_HIGH_WATER_MARK) this.flushNow();
    if (this.socket.writableNeedDrain) {
      this.pause(Pause.Output);
      this.deadlines.startSend(this.socket.writableLength);
      return false;
    }
    this.resume(Pause.Pipeline);
    if (http.buffered === 0) this.deadlines.arm(Phase.Idle);
    return true;
  }

  private onProtocolError(err: ProtocolError): void {
    const ex = this.exchange;
    this.http.mustClose();
    if (ex !== null && !ex.finished) {
      // The body went bad while the app runs: its reads fail with the error, and if it does not
      // answer, the error's status is sent (Exchange.fail).
      this.input?.fail(err);
      this.socket.pause();
      return;
    }
    this.http.rejectRequest(err);
    if (this.server.accessLog !== undefined) this.logAccess(err.status);
    // A refused request's body may still be on its way, though none of it has arrived yet.
    this.close(true);
  }

  /**
   * onEnd is the client's FIN. While a response is in progress it counts as the client leaving
   * (SPEC §2.4), as on node:http: the signal fires, the body's `return()` is called, what was
   * produced so far is sent, and the connection closes. Responses complete before the FIN (a
   * client that half-closes after sending its requests) are not affected.
   */
  onEnd(): void {
    this.peerEnded = true;
    const ex = this.exchange;
    if (ex !== null && !ex.finished) {
      ex.abort(new ClientGoneError('the client closed its side of the connection'));
      this.cut();
      return;
    }
    if (!this.processing && this.state === DriverState.Reading) this.close();
  }

  /** onClose is the socket gone, for whatever reason. */
  onClose(): void {
    this.state = DriverState.Gone;
    this.deadlines.stopAll();
    this.server.drivers.delete(this);
    const err = new ClientGoneError();
    this.exchange?.abort(err);
    if (this.drainReject !== null) {
      const reject = this.drainReject;
      this.drainWaiter = this.drainResolve = this.drainReject = null;
      reject(err);
    }
  }

  private pause(why: Pause): void {
    this.paused |= why;
    this.socket.pause();
  }

  private resume(why: Pause): void {
    this.paused &= ~why;
    if (this.paused === 0 && this.state === DriverState.Reading) this.socket.resume();
  }

  /** firstRead is the input's first read: time for `100 Continue` (SPEC IN-6). */
  firstRead(input: RequestInput): void {
    // An input kept by an app past its own exchange must not speak for the next request.
    if (input !== this.input || this.exchange === null || this.exchange.finished) return;
    this.http.sendContinue();
    this.scheduleFlush();
    // From now on the client owes the body, so its silence counts (SRV-29: never before).
    this.deadlines.startBody();
  }

  /** resumeInput is the app catching up with the request body: read the socket again. */
  resumeInput(input: RequestInput): void {
    if (input === this.input) this.resume(Pause.Input);
  }

  // ---- output -----------------------------------------------------------------------------

  /**
   * scheduleFlush arranges for the output to be written once the current work is done: at the end
   * of process() when called while it runs (so every response to one read leaves together), else
   * at the end of this tick.
   */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    if (!this.processing) process.nextTick(flushTick, this);
  }

  /** flushScheduledOutput is the end-of-tick flush, if one is still owed. */
  flushScheduledOutput(): void {
    if (this.flushScheduled) this.flushNow();
  }

  flushNow(): boolean {
    this.flushScheduled = false;
    const socket = this.socket;
    if (this.state === DriverState.Gone || socket.writableEnded) {
      this.http.takeOutput();
      return false;
    }
    const parts = this.http.takeOutput();
    if (parts.length === 1) return socket.write(parts[0]!);
    if (parts.length === 0) return !socket.writableNeedDrain;
    socket.cork();
    for (let i = 0; i < parts.length; i++) socket.write(parts[i]!);
    socket.uncork();
    return !socket.writableNeedDrain;
  }

  waitForDrain(): Promise<void> {
    if (this.state === DriverState.Gone) return Promise.reject(new ClientGoneError());
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    if (this.drainWaiter === null) {
      this.drainWaiter = new Promise<void>((resolve, reject) => {
        this.drainResolve = resolve;
        this.drainReject = reject;
      });
      this.deadlines.startSend(this.socket.writableLength);
    }
    return this.drainWaiter;
  }

  /** onDrain is the socket able to take more. */
  onDrain(): void {
    const resolve = this.drainResolve;
    this.deadlines.stopSend();
    if (resolve !== null) {
      this.drainWaiter = this.drainResolve = this.drainReject = null;
      resolve();
    }
    if ((this.paused & Pause.Output) !== 0) {
      this.resume(Pause.Output);
      if (!this.processing && this.state === DriverState.Reading) {
        if (this.http.buffered === 0) this.deadlines.arm(Phase.Idle);
        this.process();
      }
    }
  }

  cut(): void {
    if (this.http.responseState !== 'closed') this.http.cut();
    this.close();
  }

  // ---- closing ----------------------------------------------------------------------------

  /**
   * close flushes what is pending, ends the socket, and reads on briefly before destroying it
   * when the client may still be sending: bytes are buffered, a request body is unread, or
   * `mayBeSending` says so (a request refused at its head).
   */
  private close(mayBeSending = false): void {
    if (this.state !== DriverState.Reading) return;
    this.state = DriverState.Closing;
    this.flushNow();
    const socket = this.socket;
    const http = this.http;
    const unread = mayBeSending || http.buffered > 0 || (http.request !== null && !http.requestBodyDone);
    if (!unread || this.peerEnded) {
      socket.destroySoon();
      if (socket.writableLength > 0) this.deadlines.startSend(socket.writableLength);
      return;
    }
    // Lingering close (RFC 9112 §9.6): the client may still be sending; keep reading, and
    // discarding, for a while, so that its unread bytes do not make our kernel reset the
    // connection before the client has read the response.
    this.state = DriverState.Lingering;
    socket.end();
    socket.resume();
    this.deadlines.arm(Phase.Linger);
  }

  /**
   * shutdown is a server close(): idle connections close now, busy ones after their response.
   * `nsgi.signal` fires so that long-lived responses (event streams, long polls, upgraded
   * connections) can end cleanly.
   */
  shutdown(): void {
    this.http.mustClose();
    const ex = this.exchange;
    ex?.abortSignal(new ServerClosingError());
    if (this.state === DriverState.Reading && ex === null && this.http.idle) this.close();
  }

  /**
   * upgrade hands the socket to the app (SPEC §6.2): the server's listeners and deadlines come
   * off, the bytes read past the request head go with it, and the socket is left paused.
   */
  upgrade(headers: HeaderList | undefined): Upgraded {
    const http = this.http;
    const req = http.request!;
    if (this.state !== DriverState.Reading) throw new ClientGoneError();
    if (!http.requestComplete && (req.contentLength > 0 || req.chunked)) {
      throw new AppError('NSGI_UPGRADE_WITH_BODY', 'nsgi.upgrade() called before the request body was read (SPEC §6.2)');
    }
    let head101 = '';
    if (headers !== undefined) {
      // Upgrade is hop-by-hop, so prepareHeaders drops it; a 101 needs it (RFC 9110 §7.8).
      const upgrade = headers.find(([name]) => name.toLowerCase() === 'upgrade')?.[1] ?? (req.headers.find(([n]) => n.toLowerCase() === 'upgrade')?.[1] ?? '');
      const prepared = prepareHeaders(headers);
      head101 = `HTTP/1.1 101 Switching Protocols\r\n${prepared.block}Connection: Upgrade\r\nUpgrade: ${upgrade}\r\n\r\n`;
    }
    this.state = DriverState.Upgraded;
    http.statusCode = 101;
    this.flushNow();
    const socket = this.socket;
    socket.pause();
    socket.off('data', onSocketData);
    socket.off('end', onSocketEnd);
    socket.off('drain', onSocketDrain);
    this.deadlines.stopPhase();
    const rest = http.takeBuffered();
    if (head101 !== '') socket.write(head101, 'latin1');
    return { socket, head: rest };
  }

  /** destroy closes the socket at once. */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- deadlines ----------------------------------------------------------------------------

  /** onPhaseTimeout acts on the head, idle or linger deadline that passed. */
  onPhaseTimeout(phase: Phase): void {
    if (phase === Phase.Head) {
      if (this.exchange !== null) return;
      if (this.http.idle) {
        this.socket.destroy();
        return;
      }
      this.http.rejectRequest(new ProtocolError('NSGI_HEADERS_TIMEOUT', 408, 'request head not received in time'));
      this.close();
      return;
    }
    // Output still on its way is not idleness: wait for it, and let the send deadline judge a
    // client that stopped reading.
    if (this.socket.writableLength > 0) {
      if (!this.deadlines.sendRunning) this.deadlines.startSend(this.socket.writableLength);
      this.deadlines.arm(phase);
      return;
    }
    this.socket.destroy();
  }

  /**
   * onBodyTimeout: no body byte for `bodyTimeout`. Not the client's fault while the server itself
   * stopped reading because the app is not keeping up; otherwise the app's read fails with 408.
   */
  onBodyTimeout(): void {
    const http = this.http;
    if (this.state !== DriverState.Reading || http.requestComplete || http.request === null) return;
    if ((this.paused & Pause.Input) !== 0) return this.deadlines.startBody();
    const err = new ProtocolError('NSGI_BODY_TIMEOUT', 408, `no request body data for ${this.server.bodyTimeout} ms`);
    http.mustClose();
    const ex = this.exchange;
    if (ex !== null && !ex.finished) this.input?.fail(err);
    else this.close();
  }

  /**
   * onSendTimeout: output has waited `sendTimeout` on a client that took none of it; a client that
   * takes a little is kept. Runs whenever output is pending: while the app waits for drain, while
   * pipelined requests wait, and after the last response of a closing or idle connection.
   */
  onSendTimeout(): void {
    const socket = this.socket;
    if (this.state === DriverState.Gone || socket.writableLength === 0) return;
    if (socket.writableLength < this.deadlines.sendBacklog) return this.deadlines.startSend(socket.writableLength);
    this.errors.write(`nsgi: dropping ${this.remoteAddress}:${this.remotePort}: it read nothing for ${this.server.sendTimeout} ms`);
    socket.destroy();
  }

  /** logAccess writes the access log line of this exchange; `refused` is the status of a request refused at its head. */
  private logAccess(refused: number): void {
    const http = this.http;
    this.server.accessLog!(
      accessLogLine({
        remoteAddress: this.remoteAddress,
        request: http.request,
        reachedApp: this.exchange !== null,
        status: refused || http.statusCode,
        bodyBytes: http.bodyBytes,
        start: this.requestStart,
      }),
    );
  }
}

const DRIVER = Symbol('nsgi.driver');
type OwnedSocket = net.Socket & { [DRIVER]: Driver };

function onSocketData(this: net.Socket, data: Buffer): void {
  (this as OwnedSocket)[DRIVER].onData(data);
}

function onSocketEnd(this: net.Socket): void {
  (this as OwnedSocket)[DRIVER].onEnd();
}

function onSocketError(): void {
  // 'close' follows; a reset client is an ordinary event, not a server error.
}

function onSocketClose(this: net.Socket): void {
  (this as OwnedSocket)[DRIVER].onClose();
}

function onSocketDrain(this: net.Socket): void {
  (this as OwnedSocket)[DRIVER].onDrain();
}

function flushTick(driver: Driver): void {
  driver.flushScheduledOutput();
}
