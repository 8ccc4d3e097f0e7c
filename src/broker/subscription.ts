/**
 * A subscription ({@link Broker.subscribe}): a topic followed entry after entry by one consumer,
 * an SSE stream or a WebSocket topic's follower. Unlike a wait, it stays in its topic's set from
 * its creation to its end, with one abort listener for its whole life, so the consumer's
 * loop costs no registration, timer, listener or read per entry: while the consumer is parked in
 * `next()`, a delivery that follows its cursor answers it directly, on every backend (no read back
 * to Redis or to the cluster primary per client).
 *
 * While the consumer is busy (writing what it got, or held back by a slow client), one delivery
 * that follows its cursor is kept for its next `next()`; anything more only marks it behind, and
 * that `next()` reads from its cursor, so a slow consumer holds no growing queue and hears
 * `missed` if the history moved on without it.
 */
import type { Broker, BrokerEntry, BrokerSubscribeOptions, BrokerSubscription, ReadResult } from './types.ts';
import type { Member, Waiters } from './waiters.ts';

interface Parked {
  resolve(result: IteratorResult<ReadResult, undefined>): void;
  reject(reason: unknown): void;
}

/** Subscription is one {@link BrokerSubscription}, a member of its topic's set in {@link Waiters}. */
export class Subscription implements Member, BrokerSubscription {
  missed = false;
  reading = false;
  dirty = false;
  ended = false;
  /** The consumer's pending `next()`, while it waits. */
  private parked: Parked | null = null;
  /** A delivery that came while the consumer was busy, for its next `next()`. */
  private held: ReadResult | null = null;
  /** Entries after the cursor may exist that were not handed over: the next `next()` reads. */
  private behind = true;
  /** Why the subscription ended, for the `next()` that must reject with it. */
  private failure: { reason: unknown } | null = null;

  constructor(
    private readonly waiters: Waiters,
    readonly topic: string,
    public cursor: string,
    private readonly signal: AbortSignal | undefined,
  ) {
    if (signal?.aborted) {
      this.ended = true;
      this.failure = { reason: signal.reason };
    } else {
      signal?.addEventListener('abort', this, { once: true });
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ReadResult, undefined>> {
    if (this.failure !== null) {
      const { reason } = this.failure;
      this.failure = null;
      return Promise.reject(reason);
    }
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    if (this.parked !== null) return Promise.reject(new TypeError('a broker subscription was asked for its next result while the previous one was pending'));
    const held = this.held;
    if (held !== null) {
      this.held = null;
      return Promise.resolve({ done: false, value: held });
    }
    return new Promise((resolve, reject) => {
      this.parked = { resolve, reject };
      if (this.behind) {
        this.behind = false;
        // Every read of a subscription is its consumer's first since its last answer.
        this.waiters.reread(this, true);
      } else {
        // An answer read from the log left the topic unwatched on a backend that listens only
        // for topics with a caught-up member (Redis).
        this.waiters.arm(this);
      }
    });
  }

  return(): Promise<IteratorResult<ReadResult, undefined>> {
    this.end(null);
    return Promise.resolve({ done: true, value: undefined });
  }

  /** handleEvent is the signal's abort. */
  handleEvent(): void {
    this.end({ reason: (this.signal as AbortSignal).reason });
  }

  answer(result: ReadResult): void {
    // A delivery that came while the read was in flight may hold entries the read did not see:
    // the next next() reads again rather than wait for a delivery that has come and gone.
    if (this.dirty) {
      this.dirty = false;
      this.behind = true;
    }
    this.missed = false;
    this.cursor = result.lastId;
    const parked = this.parked;
    if (parked === null) {
      this.held = result;
      return;
    }
    this.parked = null;
    parked.resolve({ done: false, value: result });
  }

  fail(reason: unknown): void {
    this.end({ reason });
  }

  news(prev: string, entries: readonly BrokerEntry[], lastId: string): void {
    if (this.parked !== null) {
      if (this.cursor === prev) this.answer({ entries, lastId, missed: this.missed });
      else if (this.cursor < lastId) this.waiters.reread(this, true);
    } else if (this.cursor === prev && this.held === null && !this.behind) {
      this.answer({ entries, lastId, missed: this.missed });
    } else if (this.cursor < lastId) {
      this.behind = true;
    }
  }

  /** end leaves the topic's set and drops the abort listener; a parked `next()` gets `failure`, or the end. */
  private end(failure: { reason: unknown } | null): void {
    if (this.ended) return;
    this.ended = true;
    this.held = null;
    this.signal?.removeEventListener('abort', this);
    this.waiters.leave(this);
    const parked = this.parked;
    this.parked = null;
    if (parked === null) this.failure = failure;
    else if (failure === null) parked.resolve({ done: true, value: undefined });
    else parked.reject(failure.reason);
  }
}

/**
 * subscribeTo follows `topic` on any broker: through its own {@link Broker.subscribe} where it
 * has one, else with a wait without timeout after each answer.
 */
export function subscribeTo(broker: Broker, topic: string, after: string | undefined, options: BrokerSubscribeOptions = {}): BrokerSubscription {
  if (typeof broker.subscribe === 'function') return broker.subscribe(topic, after, options);
  return waitLoop(broker, topic, after, options.signal);
}

async function* waitLoop(broker: Broker, topic: string, after: string | undefined, signal: AbortSignal | undefined): AsyncGenerator<ReadResult, undefined> {
  let cursor = after;
  for (;;) {
    const result = await broker.wait(topic, cursor, { timeoutMs: Infinity, ...(signal !== undefined && { signal }) });
    if (result === 'timeout') continue;
    yield result;
    cursor = result.lastId;
  }
}
