/**
 * The per-socket driver of the reference server: it feeds a socket's bytes to an
 * {@link Http1Connection}, starts each request's {@link Exchange} (`exchange.ts`), pauses and
 * resumes reading, and closes the socket. Responses are written by the connection's
 * {@link ServerSink} (`server-sink.ts`), deadlines kept by `deadlines.ts`; what happens after a
 * response is the connection's decision (`Http1Connection.afterResponse`). Once the driver has
 * decided to close, drop or hand over its socket, `socket-end.ts` does it.
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
 * responses (output). It resumes when the last reason is gone. For input, the socket itself is
 * paused only after reading INPUT_READ_AHEAD bytes more, kept unparsed, so that a client that
 * leaves meanwhile is still seen.
 */
import type net from 'node:net';
import type { HeaderList, Upgraded } from '../protocol/nsgi.ts';
import { Deadlines, Phase, type DeadlineOwner } from './deadlines.ts';
import { ClientGoneError, ProtocolError, ServerClosingError } from './errors.ts';
import { Exchange } from './exchange.ts';
import { AfterResponse, Http1Connection } from './http1/connection.ts';
import { INPUT_READ_AHEAD } from './body.ts';
import { inputAfterResponse } from './input.ts';
import type { ServerContext } from './server.ts';
import { OUTPUT_HIGH_WATER_MARK, ServerSink } from './server-sink.ts';
import { dropSilentPeer, endSocket, handOverSocket, lingerSocket } from './socket-end.ts';
import { listen, type SocketOwner } from './socket-events.ts';
import { upgradeHead } from './upgrade.ts';

/** Unparsed pipelined bytes above which the server stops reading until it catches up. */
const PIPELINE_HIGH_WATER_MARK = 64 * 1024;

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
export class Driver implements DeadlineOwner, SocketOwner {
  readonly http: Http1Connection;

  private state = DriverState.Reading;
  private paused = 0;
  /** No request has started on this connection yet. */
  private fresh = true;
  /** The client has sent its FIN: nothing more will come from it. */
  private peerEnded = false;
  /** processing is true while a read is being processed: responses made meanwhile are flushed at its end. */
  processing = false;
  private readonly exchange: Exchange;
  private readonly sink: ServerSink;
  private readonly deadlines: Deadlines;

  constructor(
    readonly socket: net.Socket,
    private readonly server: ServerContext,
  ) {
    this.http = new Http1Connection(server.http1);
    this.deadlines = new Deadlines(this, server, socket);
    this.sink = new ServerSink(this, this.http, socket, server.http1.heads);
    this.exchange = new Exchange(this, socket, server, this.sink);
    listen(socket, this);
    this.deadlines.arm(Phase.Head);
  }

  /** gone is true once the socket is closed. */
  get gone(): boolean {
    return this.state === DriverState.Gone;
  }

  // ---- input ------------------------------------------------------------------------------

  /** onData takes bytes from the socket; `transient` ones are a view of a buffer the next read reuses. */
  onData(data: Buffer, transient: boolean): void {
    if (this.state !== DriverState.Reading) return;
    this.http.receive(data, transient);
    if ((this.paused & Pause.Input) !== 0) {
      // Read ahead while the app catches up (see pause): kept unparsed, then reading stops.
      if (this.http.buffered > INPUT_READ_AHEAD) this.socket.pause();
    } else {
      this.deadlines.bytesArrived();
      this.process();
    }
    // What is left unparsed is copied before the next read overwrites it.
    if (transient) this.http.keepBuffered();
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
          this.fresh = false;
          this.deadlines.headArrived();
          this.exchange.start(event.head, this.peerEnded);
        } else if (event.kind === 'data') {
          const input = this.exchange.input;
          const running = this.exchange.running;
          this.deadlines.bodyProgress(event.data.length);
          if (input !== null && !input.abandoned && running) {
            if (!input.push(event.data)) {
              // The rest stays unparsed, as compact bytes, until the app catches up.
              this.pause(Pause.Input);
              break;
            }
          } else if (!http.discardBody(event.data.length) && !running) {
            this.close();
            break;
          }
        } else if (event.kind === 'end') {
          this.deadlines.stopBody();
          this.exchange.input?.end();
          if (!this.afterResponse()) break;
        } else if (event.kind === 'need-data') {
          if (http.request === null) this.deadlines.awaitHead(http.idle);
          break;
        } else {
          if (http.buffered > PIPELINE_HIGH_WATER_MARK) this.pause(Pause.Pipeline);
          break;
        }
      }
    } finally {
      this.processing = false;
      // What the requests of this read produced leaves now, in one write (see scheduleFlush).
      this.sink.flushIfScheduled();
    }
    // A client that has closed its side sends nothing more: once no response is under way, close.
    if (this.peerEnded && this.state === DriverState.Reading && !this.exchange.running) this.close();
  }

  /** exchangeDone is called (through the sink) when the exchange's its response is complete, cut, or abandoned. */
  exchangeDone(): void {
    if (this.server.accessLog !== undefined && this.http.request !== null) this.exchange.logAccess(0);
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
    if (this.exchange.running) return false;
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
        this.exchange.input?.discard(inputAfterResponse());
        this.resume(Pause.Input);
        this.deadlines.startBody();
        return false;
    }
    http.nextCycle();
    this.exchange.clear();
    // Pipelined requests answered in one go must not outrun a client that is not reading: once
    // the output is past its mark and the socket is full, read no further request until drain.
    if (http.out.size >= OUTPUT_HIGH_WATER_MARK) this.sink.flushNow();
    if (this.socket.writableNeedDrain) {
      this.pause(Pause.Output);
      this.deadlines.startSend();
      return false;
    }
    this.resume(Pause.Pipeline);
    if (http.buffered === 0) this.deadlines.arm(Phase.Idle);
    return true;
  }

  private onProtocolError(err: ProtocolError): void {
    this.http.mustClose();
    if (this.exchange.running) {
      // The body went bad while the app runs: its reads fail with the error, and if it does not
      // answer, the error's status is sent (ServerSink.failBeforeHead).
      this.exchange.input?.fail(err);
      this.socket.pause();
      return;
    }
    this.http.rejectRequest(err);
    if (this.server.accessLog !== undefined) this.exchange.logAccess(err.status);
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
    if (this.exchange.running) {
      this.exchange.abort(new ClientGoneError('the client closed its side of the connection'));
      this.cut();
      return;
    }
    if (!this.processing && this.state === DriverState.Reading) this.close();
  }

  /** onClose is the socket gone, for whatever reason. */
  onClose(): void {
    this.state = DriverState.Gone;
    this.deadlines.stopAll();
    const err = new ClientGoneError();
    const cycle = this.exchange.cycle;
    this.exchange.abort(err);
    this.sink.socketGone(err);
    this.server.driverGone(this, cycle?.iteratorReturned ?? null);
  }

  private pause(why: Pause): void {
    if (why === Pause.Input) {
      if ((this.paused & Pause.Input) === 0) this.deadlines.restartBodyWindow();
      this.paused |= Pause.Input;
      // A full input does not stop the reading at once: up to INPUT_READ_AHEAD more bytes are
      // taken, unparsed, so that a client leaving (its FIN or reset) is still seen while the app
      // has not caught up, and `nsgi.signal` fires (SPEC §2.4).
      if (this.http.buffered <= INPUT_READ_AHEAD) return;
    }
    this.paused |= why;
    this.socket.pause();
  }

  private resume(why: Pause): void {
    // Not paused for this reason, nothing changes: every request of a pipelined batch ends here.
    if ((this.paused & why) === 0) return;
    if (why === Pause.Input) {
      this.deadlines.restartBodyWindow();
      // Bytes read ahead wait in the parser; no new read may come to parse them.
      if (!this.processing && this.http.buffered > 0) queueMicrotask(() => this.processBuffered());
    }
    this.paused &= ~why;
    if (this.paused === 0 && this.state === DriverState.Reading) this.socket.resume();
  }

  /** processBuffered parses bytes left waiting when the input filled, once it has room again. */
  private processBuffered(): void {
    if ((this.paused & Pause.Input) === 0 && this.state === DriverState.Reading) this.process();
  }

  /** bodyOwed is the app's first read of a body: from now on the client's silence counts (SRV-29: never before). */
  bodyOwed(): void {
    this.deadlines.startBody();
  }

  /** inputWanted is the app catching up with the request body: read the socket again. */
  inputWanted(): void {
    this.resume(Pause.Input);
  }

  // ---- output -----------------------------------------------------------------------------

  /** sendStarted is output left waiting on a full socket: the send deadline starts. */
  sendStarted(): void {
    this.deadlines.startSend();
  }

  /** onDrain is the socket able to take more. */
  onDrain(): void {
    this.deadlines.stopSend();
    this.sink.drained();
    if ((this.paused & Pause.Output) !== 0) {
      this.resume(Pause.Output);
      if (!this.processing && this.state === DriverState.Reading) {
        if (this.http.buffered === 0) this.deadlines.arm(Phase.Idle);
        this.process();
      }
    }
  }

  /** cut sends what is buffered, then closes without finishing the response. */
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
  close(mayBeSending = false): void {
    if (this.state !== DriverState.Reading) return;
    this.state = DriverState.Closing;
    this.sink.flushNow();
    const http = this.http;
    const unread = mayBeSending || http.buffered > 0 || (http.request !== null && !http.requestBodyDone);
    if (!unread || this.peerEnded) return endSocket(this.socket, this.deadlines);
    // Lingering close (RFC 9112 §9.6): the client may still be sending.
    this.state = DriverState.Lingering;
    lingerSocket(this.socket, this.deadlines);
  }

  /**
   * shutdown is a server close(): idle connections close now, busy ones after their response,
   * and one that has not yet sent its first request after that request, if it comes within
   * FIRST_REQUEST_GRACE_MS.
   * `nsgi.signal` fires so that long-lived responses (event streams, long polls, upgraded
   * connections) can end cleanly.
   */
  shutdown(): void {
    this.http.mustClose();
    const cycle = this.exchange.cycle;
    cycle?.abortSignal(new ServerClosingError());
    if (this.state !== DriverState.Reading || cycle !== null || !this.http.idle) return;
    // Its first request gets a moment to arrive, and is then answered with Connection: close.
    if (this.fresh) this.deadlines.arm(Phase.FirstRequest);
    else this.close();
  }

  /**
   * upgrade hands the socket to the app (SPEC §6.2): the server's listeners and deadlines come
   * off, the bytes read past the request head go with it, and the socket is left paused.
   */
  upgrade(headers: HeaderList | undefined): Upgraded {
    if (this.state !== DriverState.Reading) throw new ClientGoneError();
    const head101 = upgradeHead(this.http.requestBodyDone, headers, this.http.request!.headers);
    this.state = DriverState.Upgraded;
    this.http.statusCode = 101;
    this.sink.flushNow();
    this.deadlines.stopPhase();
    return handOverSocket(this.socket, head101, this.http.takeBuffered(), this.server, this.exchange);
  }

  /** destroy closes the socket at once. */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- deadlines ----------------------------------------------------------------------------

  /** onHeadTimeout is the head deadline passing: a connection that sent nothing closes, a partial head gets 408. */
  onHeadTimeout(): void {
    if (this.exchange.cycle !== null) return;
    if (this.http.idle) {
      this.socket.destroy();
      return;
    }
    this.http.rejectRequest(new ProtocolError('NSGI_HEADERS_TIMEOUT', 408, 'request head not received in time'));
    this.close();
  }

  /**
   * onBodyTimeout: no body byte for `bodyTimeout`, or a body averaging under `minBodyRate`. Not the
   * client's fault while the server itself stopped reading because the app is not keeping up;
   * otherwise the app's read fails with `err`, a 408.
   */
  onBodyTimeout(err: ProtocolError): void {
    const http = this.http;
    if (this.state !== DriverState.Reading || http.requestComplete || http.request === null) return;
    if ((this.paused & Pause.Input) !== 0) return this.deadlines.startBody();
    http.mustClose();
    if (this.exchange.running) this.exchange.input?.fail(err);
    else this.close();
  }

  /** onSendTimeout drops a client that read nothing of what was sent for `sendTimeout`. */
  onSendTimeout(): void {
    dropSilentPeer(this.socket, this.server, this.exchange, '');
  }
}
