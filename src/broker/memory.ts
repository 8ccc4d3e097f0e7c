/**
 * The memory broker: every topic a bounded array in this process. It is the default for a single
 * process, and the log the cluster primary keeps for its workers (`src/broker/cluster.ts`).
 *
 * Ids are `<creation time>-<sequence>`, so the ids of a later run sort after every id of an
 * earlier one, and an id from a run that is gone is recognised: a reader that brings one gets the
 * kept entries with `missed: true`, since what that run published after it is lost.
 */
import { makeId, normaliseCursor, parseId } from './ids.ts';
import {
  BEGINNING,
  BrokerError,
  checkData,
  checkPublishOptions,
  checkTopicName,
  checkWaitOptions,
  type Broker,
  type BrokerEntry,
  type BrokerSubscribeOptions,
  type BrokerSubscription,
  type BrokerWaitOptions,
  type PublishOptions,
  type ReadResult,
} from './types.ts';
import { Waiters } from './waiters.ts';

/** DEFAULT_BROKER_CAPACITY is how many of the latest entries a topic keeps unless told otherwise: 1000. */
export const DEFAULT_BROKER_CAPACITY = 1000;

/** MemoryBrokerOptions configures a {@link MemoryBroker}. */
export interface MemoryBrokerOptions {
  /** How many of the latest entries each topic keeps; default {@link DEFAULT_BROKER_CAPACITY}. */
  capacity?: number;
  /** How long an entry is kept at most, in milliseconds; 0 or absent: no age limit. */
  maxAgeMs?: number;
  /** The clock, for tests of the age limit; default `Date.now`. */
  now?: () => number;
}

interface Kept extends BrokerEntry {
  readonly at: number;
}

interface Log {
  readonly entries: Kept[];
  sequence: number;
  /** The id of the newest entry trimmed away, {@link BEGINNING} while none was. */
  trimmedThrough: string;
  maxAgeMs: number;
}

/** PublishedNow is what {@link MemoryBroker.publishNow} reports: the new entry and the id it follows. */
export interface PublishedNow {
  readonly entry: BrokerEntry;
  readonly prev: string;
}

/** MemoryBroker keeps every topic in this process's memory; see the file comment. */
export class MemoryBroker implements Broker {
  readonly kind = 'memory' as const;
  private readonly logs = new Map<string, Log>();
  private readonly capacity: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  /** The first id this run can make; every id below it (other than the beginning) is from an earlier run. */
  private readonly firstId: string;
  private readonly run: number;
  private readonly waiters: Waiters;
  private closed = false;
  private readonly listeners = new Set<(topic: string, published: PublishedNow) => void>();

  constructor(options: MemoryBrokerOptions = {}) {
    checkPublishOptions(options);
    this.capacity = options.capacity ?? DEFAULT_BROKER_CAPACITY;
    this.maxAgeMs = options.maxAgeMs ?? 0;
    this.now = options.now ?? Date.now;
    this.run = this.now();
    this.firstId = makeId(this.run, 1);
    this.waiters = new Waiters((topic, after) => this.readNow(topic, after));
  }

  ready(): Promise<void> {
    return this.closed ? Promise.reject(this.closedError()) : Promise.resolve();
  }

  publish(topic: string, data: string, options: PublishOptions = {}): Promise<string> {
    try {
      return Promise.resolve(this.publishNow(topic, data, options).entry.id);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * publishNow appends at once and returns the entry with the id it follows; the cluster primary
   * relays both to its workers.
   */
  publishNow(topic: string, data: string, options: PublishOptions = {}): PublishedNow {
    checkTopicName(topic);
    checkData(data);
    checkPublishOptions(options);
    if (this.closed) throw this.closedError();
    let log = this.logs.get(topic);
    if (log === undefined) this.logs.set(topic, (log = { entries: [], sequence: 0, trimmedThrough: BEGINNING, maxAgeMs: this.maxAgeMs }));
    const prev = log.sequence === 0 ? BEGINNING : makeId(this.run, log.sequence);
    const at = this.now();
    const entry: Kept = { id: makeId(this.run, ++log.sequence), data, at };
    log.entries.push(entry);
    if (options.maxAgeMs !== undefined) log.maxAgeMs = options.maxAgeMs;
    const capacity = options.capacity ?? this.capacity;
    if (log.entries.length > capacity) this.trim(log, log.entries.length - capacity);
    this.trimByAge(log);
    const published = { entry: { id: entry.id, data }, prev };
    this.waiters.deliver(topic, prev, [published.entry]);
    for (const listener of this.listeners) listener(topic, published);
    return published;
  }

  read(topic: string, after?: string): Promise<ReadResult> {
    try {
      checkTopicName(topic);
      return Promise.resolve(this.readNow(topic, normaliseCursor(after)));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** readNow answers a read at once; `after` is a normalised cursor. */
  readNow(topic: string, after: string): ReadResult {
    if (this.closed) throw this.closedError();
    const log = this.logs.get(topic);
    const fromEarlierRun = after !== BEGINNING && after < this.firstId;
    if (log === undefined) return { entries: [], lastId: BEGINNING, missed: fromEarlierRun };
    this.trimByAge(log);
    const lastId = log.sequence === 0 ? BEGINNING : makeId(this.run, log.sequence);
    const entries = log.entries;
    // Within this run ids are consecutive, so the first wanted entry is a subtraction away.
    let first = 0;
    if (!fromEarlierRun && after !== BEGINNING) {
      const sequence = after > lastId ? log.sequence : Number((parseId(after) as { sequence: string }).sequence);
      const oldest = entries.length === 0 ? log.sequence + 1 : Number((parseId((entries[0] as Kept).id) as { sequence: string }).sequence);
      first = Math.max(0, sequence + 1 - oldest);
    }
    const kept = entries.slice(first).map(({ id, data }) => ({ id, data }));
    return { entries: kept, lastId, missed: fromEarlierRun || after < log.trimmedThrough };
  }

  wait(topic: string, after: string | undefined, options: BrokerWaitOptions): Promise<ReadResult | 'timeout'> {
    try {
      checkTopicName(topic);
      checkWaitOptions(options);
      if (this.closed) throw this.closedError();
      return this.waiters.wait(topic, normaliseCursor(after), options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  subscribe(topic: string, after: string | undefined, options: BrokerSubscribeOptions = {}): BrokerSubscription {
    checkTopicName(topic);
    const cursor = normaliseCursor(after);
    if (this.closed) throw this.closedError();
    return this.waiters.subscribe(topic, cursor, options.signal);
  }

  waiting(topic?: string): number {
    return this.waiters.count(topic);
  }

  /** onPublish calls `listener` after every publish, with the entry and the id it follows; returns the way to stop. */
  onPublish(listener: (topic: string, published: PublishedNow) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.waiters.fail(this.closedError());
      this.listeners.clear();
    }
    return Promise.resolve();
  }

  private closedError(): BrokerError {
    return new BrokerError('closed', 'the memory broker is closed');
  }

  private trim(log: Log, count: number): void {
    const removed = log.entries.splice(0, count);
    if (removed.length > 0) log.trimmedThrough = (removed[removed.length - 1] as Kept).id;
  }

  private trimByAge(log: Log): void {
    if (log.maxAgeMs <= 0) return;
    const oldest = this.now() - log.maxAgeMs;
    let count = 0;
    while (count < log.entries.length && (log.entries[count] as Kept).at < oldest) count++;
    if (count > 0) this.trim(log, count);
  }
}
