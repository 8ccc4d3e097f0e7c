/**
 * The body of an event stream: the framed events of the app's source, the heartbeat comments
 * while it is quiet, and the end when the client leaves; {@link frames} is what `sseResponse`
 * returns.
 */
import type { Environ } from '../../protocol/nsgi.ts';
import { formatEvent } from './sse-format.ts';
import type { SseMessage, SseSource } from './sse.ts';

const HEARTBEAT = ': ping\n\n';

type Settled = { ok: true; result: IteratorResult<SseMessage> } | { ok: false; error: unknown };

type Outcome = 'ready' | 'heartbeat' | 'stop';

const STOP: Promise<Outcome> = Promise.resolve('stop');
const READY: Promise<Outcome> = Promise.resolve('ready');

/**
 * SourceRace races a stream's source against its heartbeat and `nsgi.signal`, with what a stream
 * needs for its whole life made once: one abort listener (the race itself, `handleEvent`), one
 * timer restarted with `refresh()` each time the stream starts waiting, and the two settlement
 * handlers of the source's `next()`. A `next()` still pending when the heartbeat fires is kept
 * and raced again: the source is never asked twice at once. An event then costs no listener,
 * timer or closure of its own, and a source that stays quiet for days costs nothing that grows.
 */
class SourceRace {
  /** The outcome of the source's pending `next()`, once it settles. */
  settled: Settled | null = null;
  private pending = false;
  /** The waiting round's resolve, while the stream waits. */
  private wake: ((outcome: Outcome) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The signal aborted: kept here, since reading `signal.aborted` for every event costs a check of the receiver. */
  private stopped = false;
  private readonly onValue = (result: IteratorResult<SseMessage>): void => this.settle({ ok: true, result });
  private readonly onError = (error: unknown): void => this.settle({ ok: false, error });
  private readonly onTimer = (): void => this.resolve('heartbeat');

  constructor(
    private readonly signal: AbortSignal,
    private readonly heartbeatMs: number,
  ) {
    signal.addEventListener('abort', this, { once: true });
  }

  /** round asks the source for its next message unless a `next()` is pending, and answers what comes first. */
  round(it: Iterator<SseMessage> | AsyncIterator<SseMessage>): Promise<Outcome> {
    if (!this.pending) {
      this.pending = true;
      this.settled = null;
      Promise.resolve(it.next()).then(this.onValue, this.onError);
    }
    if (this.stopped) return STOP;
    if (this.settled !== null) return this.taken();
    if (this.heartbeatMs > 0) {
      if (this.timer === null) this.timer = setTimeout(this.onTimer, this.heartbeatMs);
      else this.timer.refresh();
    }
    return new Promise((resolve) => (this.wake = resolve));
  }

  /** handleEvent is the signal's abort. */
  handleEvent(): void {
    this.stopped = true;
    this.resolve('stop');
  }

  /** close drops the listener and the timer. */
  close(): void {
    this.wake = null;
    this.signal.removeEventListener('abort', this);
    if (this.timer !== null) clearTimeout(this.timer);
  }

  private settle(settled: Settled): void {
    this.settled = settled;
    this.resolve('ready');
  }

  private taken(): Promise<Outcome> {
    this.pending = false;
    return READY;
  }

  private resolve(outcome: Outcome): void {
    const wake = this.wake;
    if (wake === null) return;
    this.wake = null;
    if (outcome === 'ready') this.pending = false;
    wake(outcome);
  }
}

/**
 * frames yields the framed events of `source`, racing each of its `next()` calls against the
 * heartbeat timer and `nsgi.signal` ({@link SourceRace}).
 */
export async function* frames(source: SseSource, environ: Environ, heartbeatMs: number): AsyncGenerator<string> {
  const signal = environ['nsgi.signal'];
  if (signal.aborted) return;
  const it = iteratorOf(source);
  const race = new SourceRace(signal, heartbeatMs);
  let sourceDone = false;
  try {
    for (;;) {
      const outcome = await race.round(it);
      if (outcome === 'stop') return;
      if (outcome === 'heartbeat') {
        yield HEARTBEAT;
        continue;
      }
      const settled = race.settled as Settled;
      if (!settled.ok) {
        // A source whose next() failed is finished; the error cuts the stream (SPEC §8).
        sourceDone = true;
        throw settled.error;
      }
      if (settled.result.done === true) {
        sourceDone = true;
        return;
      }
      yield formatEvent(settled.result.value);
    }
  } finally {
    race.close();
    if (!sourceDone) closeSource(it, environ);
  }
}

/**
 * closeSource calls the source iterator's `return()` without awaiting it: an async generator
 * parked in an `await` settles its `return()` only after that await, which may be never.
 */
function closeSource(it: Iterator<SseMessage> | AsyncIterator<SseMessage>, environ: Environ): void {
  if (typeof it.return !== 'function') return;
  try {
    const r = it.return() as unknown;
    if (r !== null && typeof r === 'object' && typeof (r as PromiseLike<unknown>).then === 'function') {
      (r as PromiseLike<unknown>).then(undefined, (err: unknown) => {
        environ['nsgi.errors'].write(`sse: error while closing the event source: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      });
    }
  } catch (err) {
    environ['nsgi.errors'].write(`sse: error while closing the event source: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}

function iteratorOf(source: SseSource): Iterator<SseMessage> | AsyncIterator<SseMessage> {
  const asyncFn = (source as Partial<AsyncIterable<SseMessage>>)[Symbol.asyncIterator];
  if (typeof asyncFn === 'function') return asyncFn.call(source);
  const syncFn = (source as Partial<Iterable<SseMessage>>)[Symbol.iterator];
  if (typeof syncFn === 'function') return syncFn.call(source);
  throw new TypeError('an SSE source must be an iterable or an async iterable of events');
}
