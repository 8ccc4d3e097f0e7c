/**
 * The waits of one process, for every backend. A topic's waits are its set of members: one-shot
 * waits ({@link Broker.wait}: one timer and one abort listener each, all removed the moment it is
 * answered, times out, is aborted or fails) and subscriptions ({@link Broker.subscribe}, in
 * `subscription.ts`: one abort listener for their whole life). Backends tell it what was published
 * with {@link Waiters.deliver}; they differ only in how that news arrives (a call in the same
 * process, an IPC message, a blocking Redis read).
 *
 * A member reads first and registers before the read, so an entry published while the read is in
 * flight is not lost: a delivery that lands during the read marks the member to read once more.
 * A delivery answers a member directly when its cursor is the id the delivery follows (the normal
 * case: every client caught up); any other member reads again from its own cursor.
 *
 * A delivery wakes its members {@link WAKE_BATCH} at a time, one batch per turn of the event loop
 * (`setImmediate`). Each woken client's stream runs on microtasks and leaves its bytes for the end
 * of the tick, so waking every member of a large topic at once would hold every client's write
 * until the last one had run; in batches, the first clients hear the entry while later ones are
 * still being woken, and the I/O of other connections is served between batches.
 */
import { Subscription } from './subscription.ts';
import { BrokerError, type BrokerEntry, type BrokerSubscription, type BrokerWaitOptions, type ReadResult } from './types.ts';

/** MAX_TIMER_MS is the longest delay a Node timer keeps (2^31 - 1 ms); above it a timer fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * WAKE_BATCH is how many members one delivery wakes per turn of the event loop: 64. Waking one
 * SSE client costs some 30 to 60 µs of CPU (about half of it the socket write), so a batch is a
 * few milliseconds, the delay the first client of a large topic sees and the longest any other
 * connection waits for its turn.
 */
export const WAKE_BATCH = 64;

/** WaitersHooks lets a backend follow which topics have waits, to listen for exactly those. */
export interface WaitersHooks {
  /** A member of `topic` now waits for the entries after `cursor`: its read found nothing, or a subscription took an answer read from the log. */
  armed?(topic: string, cursor: string): void;
  /** The last wait on `topic` ended. */
  idle?(topic: string): void;
}

/** Member is one party in a topic's set: a one-shot wait or a subscription. */
export interface Member {
  readonly topic: string;
  /** The id of the last entry the member has (or is being handed). */
  cursor: string;
  /** A first read said entries after the client's id were lost; the next answer must say so too. */
  missed: boolean;
  /** A read for this member is in flight. */
  reading: boolean;
  /** A delivery arrived while reading: read again before sleeping. */
  dirty: boolean;
  /** Out of the set for good: deliveries leave it alone. */
  ended: boolean;
  /** answer hands over a result with at least one entry. */
  answer(result: ReadResult): void;
  /** fail ends the member with `reason`. */
  fail(reason: unknown): void;
  /** news tells the member that `entries` were published right after `prev`; `lastId` is the last of them. */
  news(prev: string, entries: readonly BrokerEntry[], lastId: string): void;
}

/** Waiters holds the pending waits of one process, by topic. */
export class Waiters {
  private readonly byTopic = new Map<string, Set<Member>>();

  constructor(
    private readonly read: (topic: string, after: string) => Promise<ReadResult> | ReadResult,
    private readonly hooks: WaitersHooks = {},
  ) {}

  /** count is how many waits and subscriptions are pending, on `topic` or on all topics. */
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
      const waiter = new Waiter(this, topic, cursor, signal, resolve, reject);
      if (timeoutMs <= MAX_TIMER_MS) waiter.timer = setTimeout(() => waiter.settle('timeout', false), Math.max(0, timeoutMs));
      signal?.addEventListener('abort', waiter, { once: true });
      this.join(waiter);
      this.reread(waiter, true);
    });
  }

  /** subscribe registers a subscription to the entries of `topic` after `cursor` (already normalised). */
  subscribe(topic: string, cursor: string, signal: AbortSignal | undefined): BrokerSubscription {
    const subscription = new Subscription(this, topic, cursor, signal);
    if (!subscription.ended) this.join(subscription);
    return subscription;
  }

  /**
   * deliver tells the members of `topic` that `entries` (oldest first, non-empty) were published
   * right after the entry `prev`, waking them in batches (see the file comment).
   */
  deliver(topic: string, prev: string, entries: readonly BrokerEntry[]): void {
    const set = this.byTopic.get(topic);
    if (set === undefined || entries.length === 0) return;
    const lastId = (entries[entries.length - 1] as BrokerEntry).id;
    const woken: Member[] = [];
    for (const member of set) {
      // A read in flight may have started before this entry existed: read once more after it.
      if (member.reading) member.dirty = true;
      else if (member.cursor < lastId) woken.push(member);
    }
    if (woken.length > 0) wake(woken, 0, prev, entries, lastId);
  }

  /** fail rejects every pending wait (of `topic`, or all) with `error`: the backend lost its source of news. */
  fail(error: BrokerError, topic?: string): void {
    const sets = topic === undefined ? [...this.byTopic.values()] : [this.byTopic.get(topic) ?? new Set<Member>()];
    for (const set of sets) for (const member of [...set]) member.fail(error);
  }

  /** join adds a member to its topic's set. */
  join(member: Member): void {
    let set = this.byTopic.get(member.topic);
    if (set === undefined) this.byTopic.set(member.topic, (set = new Set()));
    set.add(member);
  }

  /** leave removes a member from its topic's set, telling the backend when the topic has no member left. */
  leave(member: Member): void {
    const set = this.byTopic.get(member.topic);
    if (set === undefined || !set.delete(member) || set.size > 0) return;
    this.byTopic.delete(member.topic);
    this.hooks.idle?.(member.topic);
  }

  /** arm tells the backend that `member` waits for the entries after its cursor without reading first. */
  arm(member: Member): void {
    this.hooks.armed?.(member.topic, member.cursor);
  }

  /** reread reads the entries after the member's cursor; `first` for the read that starts it. */
  reread(member: Member, first: boolean): void {
    member.reading = true;
    member.dirty = false;
    let pending: Promise<ReadResult> | ReadResult;
    try {
      pending = this.read(member.topic, member.cursor);
    } catch (err) {
      member.reading = false;
      member.fail(err);
      return;
    }
    const onResult = (result: ReadResult): void => {
      if (member.ended) return;
      member.reading = false;
      if (first && result.missed) member.missed = true;
      if (result.entries.length > 0) return member.answer({ entries: result.entries, lastId: result.lastId, missed: member.missed || result.missed });
      // Caught up: from now on the member follows the topic's latest id (a cursor from the
      // future, or from a run that is gone, counts as the latest).
      member.cursor = result.lastId;
      if (member.dirty) return this.reread(member, false);
      this.hooks.armed?.(member.topic, member.cursor);
    };
    if (pending instanceof Promise) {
      pending.then(onResult, (err: unknown) => {
        member.reading = false;
        member.fail(err);
      });
    } else onResult(pending);
  }
}

/** wake tells `woken[from...]` of a delivery, one batch now and the rest on later turns of the event loop. */
function wake(woken: Member[], from: number, prev: string, entries: readonly BrokerEntry[], lastId: string): void {
  const end = Math.min(woken.length, from + WAKE_BATCH);
  for (let i = from; i < end; i++) {
    const member = woken[i] as Member;
    if (member.ended) continue;
    // A read started since the delivery (the member's own, or a later delivery's) may predate it.
    if (member.reading) member.dirty = true;
    else member.news(prev, entries, lastId);
  }
  if (end < woken.length) setImmediate(wake, woken, end, prev, entries, lastId);
}

/**
 * Waiter is one pending {@link Waiters.wait}. It is its own abort listener (`handleEvent`), so a
 * wait costs one object besides its promise.
 */
class Waiter implements Member {
  missed = false;
  reading = false;
  dirty = false;
  ended = false;
  timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly waiters: Waiters,
    readonly topic: string,
    public cursor: string,
    private readonly signal: AbortSignal | undefined,
    private readonly resolve: (result: ReadResult | 'timeout') => void,
    private readonly reject: (reason: unknown) => void,
  ) {}

  /** handleEvent is the signal's abort. */
  handleEvent(): void {
    this.settle((this.signal as AbortSignal).reason, true);
  }

  answer(result: ReadResult): void {
    this.settle(result, false);
  }

  fail(reason: unknown): void {
    this.settle(reason, true);
  }

  news(prev: string, entries: readonly BrokerEntry[], lastId: string): void {
    if (this.cursor === prev) this.settle({ entries, lastId, missed: this.missed }, false);
    else if (this.cursor < lastId) this.waiters.reread(this, false);
  }

  /** settle removes every trace of the wait, then resolves (or rejects) it with `value`. */
  settle(value: ReadResult | 'timeout' | unknown, rejected: boolean): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this);
    this.waiters.leave(this);
    if (rejected) this.reject(value);
    else this.resolve(value as ReadResult | 'timeout');
  }
}
