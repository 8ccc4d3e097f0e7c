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

/** How long a closing connection keeps reading, so the client is not reset before it has read. */
export const LINGER_MS = 2000;

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
}

/** DeadlineTimes are a server's timeouts in milliseconds; 0 or Infinity turns the body and send ones off. */
export interface DeadlineTimes {
  readonly keepAliveTimeout: number;
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  readonly sendTimeout: number;
}

/** DeadlineOwner is told when a deadline passes. */
export interface DeadlineOwner {
  /** The phase deadline `phase` has passed. */
  onPhaseTimeout(phase: Phase): void;
  /** No request body byte arrived for `bodyTimeout`. */
  onBodyTimeout(): void;
  /** The output waited `sendTimeout`. */
  onSendTimeout(): void;
}

/** Deadlines holds the timers of one connection. */
export class Deadlines {
  /** phase is the phase deadline armed, Phase.None for none. */
  phase = Phase.None;
  /** sendBacklog is how many bytes were waiting when the send deadline was last started. */
  sendBacklog = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private bodyTimer: NodeJS.Timeout | null = null;
  private sendTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly owner: DeadlineOwner,
    private readonly times: DeadlineTimes,
  ) {}

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
      default:
        return LINGER_MS;
    }
  }

  /** phasePassed is the phase timer firing: the owner hears of it if a phase is still armed. */
  phasePassed(): void {
    const phase = this.phase;
    this.phase = Phase.None;
    if (phase !== Phase.None) this.owner.onPhaseTimeout(phase);
  }

  /** startBody starts (or pushes back) the request body deadline. */
  startBody(): void {
    const ms = this.times.bodyTimeout;
    if (ms <= 0 || !Number.isFinite(ms)) return;
    if (this.bodyTimer !== null) this.bodyTimer.refresh();
    else this.bodyTimer = setTimeout(onBodyTimer, ms, this).unref();
  }

  /** bodyProgress is a body byte arriving: a running body deadline starts over. */
  bodyProgress(): void {
    this.bodyTimer?.refresh();
  }

  /** stopBody stops the request body deadline. */
  stopBody(): void {
    if (this.bodyTimer !== null) {
      clearTimeout(this.bodyTimer);
      this.bodyTimer = null;
    }
  }

  /** bodyPassed is the body timer firing. */
  bodyPassed(): void {
    this.bodyTimer = null;
    this.owner.onBodyTimeout();
  }

  /** startSend starts (or pushes back) the send deadline, with `backlog` bytes waiting. */
  startSend(backlog: number): void {
    const ms = this.times.sendTimeout;
    if (ms <= 0 || !Number.isFinite(ms)) return;
    this.sendBacklog = backlog;
    if (this.sendTimer !== null) this.sendTimer.refresh();
    else this.sendTimer = setTimeout(onSendTimer, ms, this).unref();
  }

  /** sendRunning is true while the send deadline runs. */
  get sendRunning(): boolean {
    return this.sendTimer !== null;
  }

  /** stopSend stops the send deadline: the client took what was waiting. */
  stopSend(): void {
    if (this.sendTimer !== null) {
      clearTimeout(this.sendTimer);
      this.sendTimer = null;
    }
  }

  /** sendPassed is the send timer firing. */
  sendPassed(): void {
    this.sendTimer = null;
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
