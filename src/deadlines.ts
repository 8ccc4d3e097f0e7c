/**
 * Every deadline of a server connection, in one place: the request head arriving, the connection
 * idle between requests, a lingering close, the request body arriving while the app waits for it,
 * and the client reading what is sent. The driver says which apply and acts when one passes;
 * this module owns the timers.
 *
 * The head, idle and linger deadlines never run together, so they share one timer, and the usual
 * request-response-idle rhythm costs a `refresh()` per request rather than a new timer. The body
 * and send deadlines can run beside any of them and have a timer each, made on first use.
 */
import { ProtocolError } from './errors.ts';

/** How long a closing connection keeps reading, so the client is not reset before it has read. */
export const LINGER_MS = 2000;

/**
 * How long a connection accepted but not yet sent a byte may still bring its first request once
 * the server is closing. Its client connected to a listening server and is sending now; closing it
 * at once would lose that request (a worker retiring during a reload accepts up to the moment it
 * stops). One second covers the round trip of any client that meant to send.
 */
export const FIRST_REQUEST_GRACE_MS = 1000;

/** Phase is which of the connection's one-at-a-time deadlines is armed. */
export const enum Phase {
  None,
  /** Between requests, nothing received. */
  Idle,
  /** Only empty lines since the last response (RFC 9112 §2.2): idle, but not to be pushed back. */
  EmptyLines,
  /** A request head is arriving. */
  Head,
  /** The connection is closing and reads on for a while (RFC 9112 §9.6). */
  Linger,
  /** The server is closing and a connection that has sent nothing yet may still send its first request. */
  FirstRequest,
}

/** DeadlineTimes are a server's timeouts in milliseconds; 0 or Infinity turns the body and send ones off. */
export interface DeadlineTimes {
  readonly keepAliveTimeout: number;
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  /** Bytes per second a request body must average once `minBodyRateGrace` has passed; 0 for no minimum. */
  readonly minBodyRate: number;
  readonly minBodyRateGrace: number;
  readonly sendTimeout: number;
}

/**
 * DeadlineOutput is what the deadlines watch of the connection's output: a socket, or an HTTP/2
 * stream, whose `writableLength` is what it holds that the client has not taken yet.
 */
export interface DeadlineOutput {
  readonly writableLength: number;
  readonly destroyed: boolean;
  destroy(): void;
}

/** DeadlineOwner is told when a deadline passes that it must act on. */
export interface DeadlineOwner {
  /** The head deadline passed. */
  onHeadTimeout(): void;
  /** No request body byte arrived for `bodyTimeout`, or the body averaged under `minBodyRate`: `error` says which. */
  onBodyTimeout(error: ProtocolError): void;
  /** The output waited `sendTimeout` on a client that took none of it: it is to be dropped. */
  onSendTimeout(): void;
}

/** Deadlines holds the timers of one connection. */
export class Deadlines {
  /** phase is the phase deadline armed, Phase.None for none. */
  phase = Phase.None;
  /** How many bytes were waiting when the send deadline was last started. */
  private sendBacklog = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private bodyTimer: NodeJS.Timeout | null = null;
  // The body's progress while the app waits for it: when the current rate window began, the
  // bytes received in it, and when the last byte came.
  private bodyWindowStart = 0;
  private bodyWindowBytes = 0;
  private bodyLastByte = 0;
  private sendTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly owner: DeadlineOwner,
    private readonly times: DeadlineTimes,
    private readonly socket: DeadlineOutput,
  ) {}

  /** bytesArrived is a read: an idle connection is idle no more. */
  bytesArrived(): void {
    if (this.phase === Phase.Idle) this.phase = Phase.None;
  }

  /**
   * awaitHead is the parser needing more bytes between requests. The head deadline runs from the
   * first byte of a head, including one that stopped at a line end (every whole line is already
   * parsed, so nothing counts as buffered). Only empty lines, which a client may send before a
   * request line (RFC 9112 §2.2), leave the parser idle again, and so the connection, but their
   * bytes stopped the idle deadline: one that more empty lines cannot push back takes its place.
   */
  awaitHead(parserIdle: boolean): void {
    const phase = this.phase;
    if (phase === Phase.Head) return;
    if (!parserIdle) this.arm(Phase.Head);
    else if (phase === Phase.None) this.arm(Phase.EmptyLines);
  }

  /** headArrived is a whole request head: the head (or empty-line) deadline is done. */
  headArrived(): void {
    if (this.phase === Phase.Head || this.phase === Phase.EmptyLines) this.phase = Phase.None;
  }

  /**
   * arm sets the phase deadline. Disarming (Phase.None) only forgets the phase, so that arming
   * again with the same duration refreshes the timer instead of making one.
   */
  arm(phase: Phase): void {
    this.phase = phase;
    if (phase === Phase.None) return;
    const ms = this.phaseMs(phase);
    if (this.timer !== null && this.timerMs === ms) {
      this.timer.refresh();
      return;
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(onPhaseTimer, ms, this);
    this.timer.unref();
  }

  private phaseMs(phase: Phase): number {
    const { keepAliveTimeout, headersTimeout } = this.times;
    switch (phase) {
      case Phase.Idle:
        return keepAliveTimeout;
      case Phase.EmptyLines:
        return Math.min(keepAliveTimeout, headersTimeout);
      case Phase.Head:
        return headersTimeout;
      case Phase.FirstRequest:
        return Math.min(FIRST_REQUEST_GRACE_MS, headersTimeout);
      default:
        return LINGER_MS;
    }
  }

  /**
   * phasePassed is the phase timer firing. A passed head deadline is the owner's to act on; an
   * idle or lingering connection is destroyed, unless output is still on its way: that is not
   * idleness, so the deadline starts over and the send deadline judges a client that stopped
   * reading.
   */
  phasePassed(): void {
    const phase = this.phase;
    this.phase = Phase.None;
    if (phase === Phase.None) return;
    if (phase === Phase.Head || phase === Phase.FirstRequest) return this.owner.onHeadTimeout();
    if (this.socket.writableLength > 0) {
      if (this.sendTimer === null) this.startSend();
      this.arm(phase);
      return;
    }
    this.socket.destroy();
  }

  /**
   * startBody starts the body deadlines, if not running: no byte for `bodyTimeout`, and an average
   * under `minBodyRate` once `minBodyRateGrace` has passed. Bytes arriving only update counts (a
   * trickle must not push a deadline back); the one timer fires at the nearer deadline and is set
   * again from the counts then.
   */
  startBody(): void {
    if (this.bodyTimer !== null) return;
    const { bodyTimeout, minBodyRate } = this.times;
    if (!(bodyTimeout > 0 && Number.isFinite(bodyTimeout)) && !(minBodyRate > 0)) return;
    this.restartBodyWindow();
    this.bodyTimer = setTimeout(onBodyTimer, this.nextBodyCheck(this.bodyWindowStart), this).unref();
  }

  /** bodyProgress is `n` body bytes arriving. */
  bodyProgress(n: number): void {
    if (this.bodyTimer === null) return;
    this.bodyWindowBytes += n;
    this.bodyLastByte = Date.now();
  }

  /**
   * restartBodyWindow starts the rate window over when the server pauses or resumes reading for the
   * app: time the server spent not reading was not the client's to use.
   */
  restartBodyWindow(): void {
    this.bodyWindowStart = this.bodyLastByte = Date.now();
    this.bodyWindowBytes = 0;
  }

  /** nextBodyCheck is how many ms from `now` the nearer body deadline falls, given the counts. */
  private nextBodyCheck(now: number): number {
    const { bodyTimeout, minBodyRate, minBodyRateGrace } = this.times;
    let at = bodyTimeout > 0 && Number.isFinite(bodyTimeout) ? this.bodyLastByte + bodyTimeout : Infinity;
    if (minBodyRate > 0) {
      // The moment the bytes so far fall under the rate, never before the grace period ends.
      const rateAt = this.bodyWindowStart + Math.max(minBodyRateGrace, (this.bodyWindowBytes * 1000) / minBodyRate);
      if (rateAt < at) at = rateAt;
    }
    return Math.max(1, Math.min(at - now, 2 ** 31 - 1));
  }

  /** stopBody stops the request body deadlines. */
  stopBody(): void {
    if (this.bodyTimer !== null) {
      clearTimeout(this.bodyTimer);
      this.bodyTimer = null;
    }
  }

  /** bodyPassed is the body timer firing: the owner hears of a deadline passed, else the timer is set again. */
  bodyPassed(): void {
    this.bodyTimer = null;
    const { bodyTimeout, minBodyRate, minBodyRateGrace } = this.times;
    const now = Date.now();
    const elapsed = now - this.bodyWindowStart;
    if (bodyTimeout > 0 && now - this.bodyLastByte >= bodyTimeout) {
      this.owner.onBodyTimeout(new ProtocolError('NSGI_BODY_TIMEOUT', 408, `no request body data for ${bodyTimeout} ms`));
    } else if (minBodyRate > 0 && elapsed >= minBodyRateGrace && this.bodyWindowBytes < (minBodyRate * elapsed) / 1000) {
      const rate = Math.floor((this.bodyWindowBytes * 1000) / elapsed);
      this.owner.onBodyTimeout(new ProtocolError('NSGI_BODY_TOO_SLOW', 408, `request body arrived at ${rate} bytes/s, under the minimum of ${minBodyRate}`));
    } else {
      this.bodyTimer = setTimeout(onBodyTimer, this.nextBodyCheck(now), this).unref();
    }
  }

  /** startSend starts (or pushes back) the send deadline, with what the socket holds now. */
  startSend(): void {
    const ms = this.times.sendTimeout;
    if (ms <= 0 || !Number.isFinite(ms)) return;
    this.sendBacklog = this.socket.writableLength;
    if (this.sendTimer !== null) this.sendTimer.refresh();
    else this.sendTimer = setTimeout(onSendTimer, ms, this).unref();
  }

  /** stopSend stops the send deadline: the client took what was waiting. */
  stopSend(): void {
    if (this.sendTimer !== null) {
      clearTimeout(this.sendTimer);
      this.sendTimer = null;
    }
  }

  /**
   * sendPassed is the send timer firing. It runs whenever output is pending: while the app waits
   * for drain, while pipelined requests wait, and after the last response of a closing or idle
   * connection. A client that took some of the output is given another round; one that took none
   * is the owner's to drop.
   */
  sendPassed(): void {
    this.sendTimer = null;
    const socket = this.socket;
    if (socket.destroyed || socket.writableLength === 0) return;
    if (socket.writableLength < this.sendBacklog) return this.startSend();
    this.owner.onSendTimeout();
  }

  /** stopAll stops every deadline: the connection is gone or handed over. */
  stopAll(): void {
    this.phase = Phase.None;
    if (this.timer !== null) clearTimeout(this.timer);
    this.stopBody();
    this.stopSend();
  }

  /** stopPhase stops the phase timer alone (an upgrade: the body and send deadlines are already done). */
  stopPhase(): void {
    this.phase = Phase.None;
    if (this.timer !== null) clearTimeout(this.timer);
  }
}

// Shared timer callbacks, rather than closures per connection.
function onPhaseTimer(d: Deadlines): void {
  d.phasePassed();
}

function onBodyTimer(d: Deadlines): void {
  d.bodyPassed();
}

function onSendTimer(d: Deadlines): void {
  d.sendPassed();
}
