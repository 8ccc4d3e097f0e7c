/**
 * The waits of one process, for every backend: a wait is one entry in its topic's set, one timer
 * and one abort listener, all three removed the moment it is answered, times out, is aborted or
 * fails. Backends tell it what was published with {@link Waiters.deliver}; they differ only in
 * how that news arrives (a call in the same process, an IPC message, a blocking Redis read).
 *
 * A wait reads first and registers before the read, so an entry published while the read is in
 * flight is not lost: a delivery that lands during the read marks the wait to read once more.
 * A delivery answers a wait directly when the wait's cursor is the id the delivery follows (the
 * normal case: every client caught up); any other wait reads again from its own cursor.
 */
import { BrokerError, type BrokerEntry, type BrokerWaitOptions, type ReadResult } from './types.ts';

/** MAX_TIMER_MS is the longest delay a Node timer keeps (2^31 - 1 ms); above it a timer fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** WaitersHooks lets a backend follow which topics have waits, to listen for exactly those. */
export interface WaitersHooks {
  /** A wait on `topic` found nothing and now waits for entries after `cursor`. */
  armed?(topic: string, cursor: string): void;
  /** The last wait on `topic` ended. */
  idle?(topic: string): void;
}

interface Waiter {
  readonly topic: string;
  cursor: string;
  /** The first read said entries after the client's id were lost; the answer must say so too. */
  missed: boolean;
  reading: boolean;
  /** A delivery arrived while reading: read again before sleeping. */
  dirty: boolean;
  settled: boolean;
  timer: NodeJS.Timeout | null;
  readonly signal: AbortSignal | undefined;
  onAbort(): void;
  resolve(result: ReadResult | 'timeout'): void;
  reject(reason: unknown): void;
}

/** Waiters holds the pending waits of one process, by topic. */
export class Waiters {
  private readonly byTopic = new Map<string, Set<Waiter>>();

  constructor(
    private readonly read: (topic: string, after: string) => Promise<ReadResult> | ReadResult,
    private readonly hooks: WaitersHooks = {},
  ) {}

  /** count is how many waits are pending, on `topic` or on all topics. */
  count(topic?: string): number {
    if (topic !== undefined) return this.byTopic.get(topic)?.size ?? 0;
    let total = 0;
    for (const set of this.byTopic.values()) total += set.size;
    return total;
  }

  /** topics lists the topics that have a pending wait. */
  topics(): string[] {
    return [...this.byTopic.keys()];
  }

  /** wait registers a wait for entries of `topic` after `cursor` (already normalised) and reads. */
  wait(topic: string, cursor: string, options: BrokerWaitOptions): Promise<ReadResult | 'timeout'> {
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        topic,
        cursor,
        missed: false,
        reading: false,
        dirty: false,
        settled: false,
        signal,
        timer: null,
        onAbort: () => this.settle(waiter, () => reject(signal!.reason)),
        resolve: (result) => this.settle(waiter, () => resolve(result)),
        reject: (reason) => this.settle(waiter, () => reject(reason)),
      };
      if (timeoutMs <= MAX_TIMER_MS) waiter.timer = setTimeout(() => waiter.resolve('timeout'), Math.max(0, timeoutMs));
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      let set = this.byTopic.get(topic);
      if (set === undefined) this.byTopic.set(topic, (set = new Set()));
      set.add(waiter);
      this.reread(waiter, true);
    });
  }

  /**
   * deliver tells the waits of `topic` that `entries` (oldest first, non-empty) were published
   * right after the entry `prev`.
   */
  deliver(topic: string, prev: string, entries: readonly BrokerEntry[]): void {
    const set = this.byTopic.get(topic);
    if (set === undefined || entries.length === 0) return;
    const lastId = (entries[entries.length - 1] as BrokerEntry).id;
    for (const waiter of [...set]) {
      if (waiter.reading) {
        waiter.dirty = true;
      } else if (waiter.cursor === prev) {
        waiter.resolve({ entries, lastId, missed: waiter.missed });
      } else if (waiter.cursor < lastId) {
        this.reread(waiter, false);
      }
    }
  }

  /** fail rejects every pending wait (of `topic`, or all) with `error`: the backend lost its source of news. */
  fail(error: BrokerError, topic?: string): void {
    const sets = topic === undefined ? [...this.byTopic.values()] : [this.byTopic.get(topic) ?? new Set<Waiter>()];
    for (const set of sets) for (const waiter of [...set]) waiter.reject(error);
  }

  private reread(waiter: Waiter, first: boolean): void {
    waiter.reading = true;
    waiter.dirty = false;
    let pending: Promise<ReadResult> | ReadResult;
    try {
      pending = this.read(waiter.topic, waiter.cursor);
    } catch (err) {
      waiter.reject(err);
      return;
    }
    const onResult = (result: ReadResult): void => {
      if (waiter.settled) return;
      waiter.reading = false;
      if (first && result.missed) waiter.missed = true;
      if (result.entries.length > 0) return waiter.resolve({ ...result, missed: waiter.missed || result.missed });
      // Caught up: from now on the wait follows the topic's latest id (a cursor from the future,
      // or from a run that is gone, counts as the latest).
      waiter.cursor = result.lastId;
      if (waiter.dirty) return this.reread(waiter, false);
      this.hooks.armed?.(waiter.topic, waiter.cursor);
    };
    if (pending instanceof Promise) pending.then(onResult, (err: unknown) => waiter.reject(err));
    else onResult(pending);
  }

  private settle(waiter: Waiter, answer: () => void): void {
    if (waiter.settled) return;
    waiter.settled = true;
    if (waiter.timer !== null) clearTimeout(waiter.timer);
    waiter.signal?.removeEventListener('abort', waiter.onAbort);
    const set = this.byTopic.get(waiter.topic);
    if (set !== undefined) {
      set.delete(waiter);
      if (set.size === 0) {
        this.byTopic.delete(waiter.topic);
        this.hooks.idle?.(waiter.topic);
      }
    }
    answer();
  }
}
