/**
 * The broker contract: named topics, each an ordered, bounded log of string entries that any
 * process of an application can publish to, read from and wait on (`protocol/BROKER.md`).
 *
 * Three backends implement it: memory (one process), cluster (the workers of one `nsgi --workers
 * N`, through the primary) and Redis Streams (many machines, and restarts). The long-poll `Topic`,
 * the SSE topic stream and the WebSocket topics sit on top of it and work the same on all three.
 */

/** BrokerEntry is one published entry of a topic. */
export interface BrokerEntry {
  /** The entry's id: unique in its topic, and ids compare as strings in publishing order. */
  readonly id: string;
  /** What was published. */
  readonly data: string;
}

/** ReadResult is what a read or a wait answers. */
export interface ReadResult {
  /** The kept entries after the reader's id, oldest first. */
  readonly entries: readonly BrokerEntry[];
  /** The id of the topic's latest entry ({@link BEGINNING} before the first): the reader's next cursor. */
  readonly lastId: string;
  /**
   * True when entries after the reader's id are gone (trimmed for capacity or age, or published
   * by a previous run of a backend that does not keep them), so `entries` does not start right
   * after it. A reader that must not lose anything reloads its state when it sees this.
   */
  readonly missed: boolean;
}

/** BrokerWaitOptions bounds a {@link Broker.wait}. */
export interface BrokerWaitOptions {
  /**
   * Milliseconds to wait for an entry before resolving `'timeout'`; `Infinity` (or anything above
   * the 24.8 days a timer can hold) waits until an entry comes or the signal aborts.
   */
  timeoutMs: number;
  /** Stops the wait at once when aborted (rejecting with its reason); pass `environ['nsgi.signal']`. */
  signal?: AbortSignal;
}

/** BrokerSubscribeOptions configures a {@link Broker.subscribe}. */
export interface BrokerSubscribeOptions {
  /** Ends the subscription at once when aborted: a pending `next()` rejects with its reason. Pass `environ['nsgi.signal']`. */
  signal?: AbortSignal;
}

/**
 * BrokerSubscription follows a topic for one consumer: each `next()` answers like a
 * {@link Broker.wait} without a timeout, from where the previous answer left off (the first from
 * the subscription's id), with at least one entry. `return()` (a `for await` that stops) ends
 * it; a lost backend or an aborted signal rejects the pending `next()`, and it is over.
 */
export interface BrokerSubscription extends AsyncIterable<ReadResult> {
  next(): Promise<IteratorResult<ReadResult, undefined>>;
  return(value?: undefined): Promise<IteratorResult<ReadResult, undefined>>;
}

/** PublishOptions bounds the history of the topic published to; each overrides the broker's default. */
export interface PublishOptions {
  /** How many of the latest entries the topic keeps at least. */
  capacity?: number;
  /** How long, in milliseconds, an entry is kept at most (0 or absent: no age limit). */
  maxAgeMs?: number;
}

/** BrokerKind names a backend. */
export type BrokerKind = 'memory' | 'cluster' | 'redis';

/**
 * Broker is the interface every backend implements. Ids are opaque: compare them as strings, send
 * them to clients (SSE `id:`, a poll's cursor) and give them back to `read` and `wait`; the
 * string {@link BEGINNING} (or an absent id) means "from the oldest kept entry". An id the broker
 * never made that sorts after the latest entry counts as the latest, so a client from a run that
 * numbered further is not left waiting for ids that will not come.
 */
export interface Broker {
  /** Which backend this is. */
  readonly kind: BrokerKind;
  /** ready resolves once the backend can serve, and rejects with a {@link BrokerError} saying why it cannot. */
  ready(): Promise<void>;
  /** publish appends `data` to `topic`, wakes every waiter of it in every process, and resolves with the entry's id. */
  publish(topic: string, data: string, options?: PublishOptions): Promise<string>;
  /** read answers the kept entries of `topic` after `after`, at once (possibly none). */
  read(topic: string, after?: string): Promise<ReadResult>;
  /**
   * wait answers like {@link read} as soon as there is at least one entry after `after` (at once if
   * there already is), or `'timeout'` after `timeoutMs`. An aborted signal rejects it with the
   * signal's reason; a backend that loses its connection rejects it with a {@link BrokerError}.
   */
  wait(topic: string, after: string | undefined, options: BrokerWaitOptions): Promise<ReadResult | 'timeout'>;
  /**
   * subscribe follows `topic` after `after` for one consumer that takes entries one answer at a
   * time: cheaper than a {@link wait} per answer (one registration for the whole life, and no
   * read per answer while the consumer keeps up). Optional, for brokers written before it: the
   * helpers fall back to waits ({@link subscribeTo}).
   */
  subscribe?(topic: string, after: string | undefined, options?: BrokerSubscribeOptions): BrokerSubscription;
  /** waiting is how many waits and subscriptions of this process are pending, on `topic` or on all topics. */
  waiting(topic?: string): number;
  /** close rejects the pending waits with a {@link BrokerError} and releases connections and listeners. */
  close(): Promise<void>;
}

/** BEGINNING is the cursor before every entry: reading after it answers all kept entries. */
export const BEGINNING = '0';

/**
 * BrokerError is a broker that cannot do what was asked: unreachable or lost (`code`
 * `'unavailable'`), closed (`'closed'`), or misconfigured (`'config'`). Its message names the
 * backend and the cause, for a log line or a 503.
 */
export class BrokerError extends Error {
  /** What went wrong, stable for programs: `'unavailable'`, `'closed'` or `'config'`. */
  readonly code: 'unavailable' | 'closed' | 'config';

  constructor(code: 'unavailable' | 'closed' | 'config', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BrokerError';
    this.code = code;
  }
}

/** checkTopicName throws a TypeError unless `topic` is a non-empty string of at most {@link MAX_TOPIC_NAME_LENGTH} characters. */
export function checkTopicName(topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic === '' || topic.length > MAX_TOPIC_NAME_LENGTH) {
    throw new TypeError(`a topic name must be a string of 1 to ${MAX_TOPIC_NAME_LENGTH} characters, got ${JSON.stringify(topic)}`);
  }
}

/** MAX_TOPIC_NAME_LENGTH bounds a topic name, which becomes part of a Redis key and of every IPC message. */
export const MAX_TOPIC_NAME_LENGTH = 256;

/** checkData throws a TypeError unless `data` is a string: entries cross processes, so objects are serialised by the caller. */
export function checkData(data: unknown): asserts data is string {
  if (typeof data !== 'string') throw new TypeError(`broker data must be a string (JSON.stringify objects first), got ${typeof data}`);
}

/** checkWaitOptions throws a RangeError for a `timeoutMs` that is not a number. */
export function checkWaitOptions(options: BrokerWaitOptions): void {
  const timeoutMs = options?.timeoutMs;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
    throw new RangeError(`timeoutMs must be a number of milliseconds (Infinity: no timeout), got ${String(timeoutMs)}`);
  }
}

/** checkPublishOptions throws a RangeError for a capacity or age that is not a whole number of the right sign. */
export function checkPublishOptions(options: PublishOptions): void {
  const { capacity, maxAgeMs } = options;
  if (capacity !== undefined && (!Number.isSafeInteger(capacity) || capacity < 1)) {
    throw new RangeError(`capacity must be a whole number above 0, got ${String(capacity)}`);
  }
  if (maxAgeMs !== undefined && (!Number.isSafeInteger(maxAgeMs) || maxAgeMs < 0)) {
    throw new RangeError(`maxAgeMs must be a whole number of milliseconds, 0 or more, got ${String(maxAgeMs)}`);
  }
}
