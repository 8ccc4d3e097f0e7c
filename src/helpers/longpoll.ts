/**
 * Long polling: a {@link Topic} keeps the latest items published to it, numbered 1, 2, 3, ...,
 * and lets a request wait for the ones after a number it already has, until one is published,
 * a timeout passes, or `nsgi.signal` fires.
 *
 * ```ts
 * const topic = new Topic<string>();
 *
 * const poll: App = async (environ, startResponse) => {
 *   const since = Number(new URLSearchParams(environ.QUERY_STRING).get('since') ?? 0);
 *   const result = await topic.waitFor(since, { timeoutMs: 25_000, signal: environ['nsgi.signal'] });
 *   if (result === 'timeout') {
 *     startResponse('204 No Content', []);
 *     return [];
 *   }
 *   startResponse('200 OK', [['Content-Type', 'application/json']]);
 *   return [JSON.stringify(result)];
 * };
 * ```
 *
 * Nothing grows with abandoned clients: a waiter is one entry in a set, one timer and one abort
 * listener, and all three are removed the moment it is answered, times out, or its signal fires
 * (the client left, the server is closing). {@link Topic.waiterCount} shows it.
 */

/** DEFAULT_TOPIC_CAPACITY is how many of the latest items a topic keeps for late pollers. */
export const DEFAULT_TOPIC_CAPACITY = 1000;

/** Entry is one published item with its number. */
export interface Entry<T> {
  /** The item's number: 1 for the first one published, then one more each time. */
  readonly id: number;
  readonly value: T;
}

/** PollResult is what a poll returns when there is something new. */
export interface PollResult<T> {
  /** The kept items numbered above the poll's `since`, oldest first; never empty from waitFor. */
  readonly items: Array<Entry<T>>;
  /** The number of the latest item; the client's next `since`. */
  readonly lastId: number;
  /**
   * True when items the poller had not seen were dropped to keep the topic within its capacity
   * (the poller fell too far behind), so `items` does not start right after `since`.
   */
  readonly missed: boolean;
}

/** MAX_TIMER_MS is the longest delay a Node timer keeps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** WaitOptions bounds a {@link Topic.waitFor}. */
export interface WaitOptions {
  /**
   * Milliseconds to wait for a new item before resolving `'timeout'`; `Infinity` (or anything
   * above the 24.8 days a timer can hold) waits until an item comes or the signal aborts.
   */
  timeoutMs: number;
  /** Stops the wait at once when aborted; pass `environ['nsgi.signal']`. */
  signal?: AbortSignal;
}

/** TopicOptions configures a {@link Topic}. */
export interface TopicOptions {
  /** How many of the latest items to keep for pollers that are behind; default 1000. */
  capacity?: number;
}

interface Waiter<T> {
  since: number;
  resolve(result: PollResult<T> | 'timeout'): void;
  reject(reason: unknown): void;
  timer: NodeJS.Timeout | null;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/** Topic is a numbered, bounded log of items that pollers can wait on. */
export class Topic<T> {
  private readonly capacity: number;
  private readonly entries: Array<Entry<T>> = [];
  private last = 0;
  private readonly waiters = new Set<Waiter<T>>();

  constructor(options: TopicOptions = {}) {
    const capacity = options.capacity ?? DEFAULT_TOPIC_CAPACITY;
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a whole number above 0, got ${capacity}`);
    this.capacity = capacity;
  }

  /** lastId is the number of the latest item, 0 before the first. */
  get lastId(): number {
    return this.last;
  }

  /** waiterCount is how many polls are waiting now. */
  get waiterCount(): number {
    return this.waiters.size;
  }

  /** publish adds `value` as the next item, answers every waiting poll, and returns the item's number. */
  publish(value: T): number {
    const id = ++this.last;
    this.entries.push({ id, value });
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) {
      this.release(waiter);
      waiter.resolve(this.since(waiter.since));
    }
    return id;
  }

  /**
   * since returns the kept items numbered above `since`, at once, possibly none. A `since` above
   * the latest number (a client that polled a previous run of the server) counts as the latest,
   * so the client is not stuck waiting for numbers that will never come back around.
   */
  since(since: number): PollResult<T> {
    const after = this.clamp(since);
    const entries = this.entries;
    // Numbers are consecutive, so the first wanted item's index is a subtraction away.
    const first = entries.length === 0 ? 0 : Math.max(0, after + 1 - entries[0]!.id);
    const missed = entries.length > 0 && entries[0]!.id > after + 1;
    return { items: entries.slice(first), lastId: this.last, missed };
  }

  /**
   * waitFor resolves with the items numbered above `since` as soon as there are any (at once if
   * there already are), or with `'timeout'` after `timeoutMs`. When `signal` aborts it rejects
   * with the signal's reason, and the waiter is gone before the rejection is seen.
   */
  waitFor(since: number, options: WaitOptions): Promise<PollResult<T> | 'timeout'> {
    const { signal, timeoutMs } = options;
    // A negative time left (a deadline already past) times out at once, as setTimeout would.
    if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
      return Promise.reject(new RangeError(`timeoutMs must be a number of milliseconds (Infinity: no timeout), got ${String(timeoutMs)}`));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    const now = this.since(since);
    if (now.items.length > 0) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const waiter: Waiter<T> = {
        since: this.clamp(since),
        resolve,
        reject,
        signal,
        // Node's timers hold at most 2^31 - 1 ms and fire at once beyond it; a longer wait has none.
        timer:
          timeoutMs > MAX_TIMER_MS
            ? null
            : setTimeout(() => {
                this.waiters.delete(waiter);
                this.release(waiter);
                resolve('timeout');
              }, timeoutMs),
        onAbort: () => {
          this.waiters.delete(waiter);
          this.release(waiter);
          reject(signal!.reason);
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  private clamp(since: number): number {
    if (!Number.isFinite(since) || since < 0) return 0;
    return Math.min(Math.floor(since), this.last);
  }

  private release(waiter: Waiter<T>): void {
    if (waiter.timer !== null) clearTimeout(waiter.timer);
    waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }
}
