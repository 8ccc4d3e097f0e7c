/**
 * Long polling: a {@link Topic} is a named, bounded log of items on the process's broker
 * (`src/broker/`), and lets a request wait for the items after an id it already has, until one is
 * published, a timeout passes, or `nsgi.signal` fires. On the memory broker that is one process;
 * under `nsgi --workers N` the cluster broker gives every worker one order and one id sequence;
 * on Redis, every instance sharing it, across restarts.
 *
 * ```ts
 * const topic = new Topic<string>({ name: 'news' });
 *
 * const poll: App = async (environ, startResponse) => {
 *   const since = new URLSearchParams(environ.QUERY_STRING).get('since') ?? undefined;
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
 * Ids are the broker's: opaque strings that sort in publishing order. Items cross processes as
 * JSON, so a value must survive `JSON.stringify`. Nothing grows with abandoned clients: a waiter
 * is one entry in a set, one timer and one abort listener, all removed the moment it is answered,
 * times out, or its signal fires; {@link Topic.waiterCount} shows it.
 */
import { defaultBroker } from '../broker/default.ts';
import { BEGINNING, type Broker, type BrokerWaitOptions, type ReadResult } from '../broker/types.ts';

/** DEFAULT_TOPIC_CAPACITY is how many of the latest items a topic keeps for late pollers. */
export const DEFAULT_TOPIC_CAPACITY = 1000;

/** Entry is one published item with its id. */
export interface Entry<T> {
  /** The item's id, from the broker: unique, and sorting as a string in publishing order. */
  readonly id: string;
  readonly value: T;
}

/** PollResult is what a poll returns when there is something new. */
export interface PollResult<T> {
  /** The kept items after the poll's `since`, oldest first; never empty from waitFor. */
  readonly items: Array<Entry<T>>;
  /** The id of the latest item (`'0'` before the first); the client's next `since`. */
  readonly lastId: string;
  /**
   * True when items the poller had not seen were dropped to keep the topic within its capacity
   * or age (the poller fell too far behind, or its id is from a run whose items are gone), so
   * `items` does not start right after `since`.
   */
  readonly missed: boolean;
}

/**
 * Since is where a poll starts: an id the topic answered, or `'0'`, `''`, `0` or undefined for
 * the oldest kept item.
 */
export type Since = string | number | undefined;

/** WaitOptions bounds a {@link Topic.waitFor}: `timeoutMs` (`Infinity` for none) and the `signal` that stops it. */
export type WaitOptions = BrokerWaitOptions;

/** TopicOptions configures a {@link Topic}. */
export interface TopicOptions {
  /**
   * The topic's name on the broker; topics of the same name share one log in every process. The
   * default, `topic-1`, `topic-2`, ... in order of construction, matches across workers that run
   * the same code, but an explicit name is safer.
   */
  name?: string;
  /** How many of the latest items to keep for pollers that are behind; default 1000. */
  capacity?: number;
  /** How long an item is kept at most, in milliseconds; default: no age limit. */
  maxAgeMs?: number;
  /** The broker; default: the process's ({@link defaultBroker}), chosen at first use. */
  broker?: Broker;
}

let unnamed = 0;

/** Topic is a named, bounded log of items that pollers can wait on. */
export class Topic<T> {
  /** The topic's name on the broker. */
  readonly name: string;
  private readonly capacity: number;
  private readonly maxAgeMs: number | undefined;
  private readonly given: Broker | undefined;

  constructor(options: TopicOptions = {}) {
    const capacity = options.capacity ?? DEFAULT_TOPIC_CAPACITY;
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a whole number above 0, got ${capacity}`);
    this.capacity = capacity;
    this.maxAgeMs = options.maxAgeMs;
    this.name = options.name ?? `topic-${++unnamed}`;
    this.given = options.broker;
  }

  /** broker is the broker this topic lives on. */
  get broker(): Broker {
    return this.given ?? defaultBroker();
  }

  /** waiterCount is how many polls of this process are waiting now. */
  get waiterCount(): number {
    return this.broker.waiting(this.name);
  }

  /** publish adds `value` as the next item, answers every waiting poll in every process, and resolves with its id. */
  async publish(value: T): Promise<string> {
    const data = JSON.stringify(value);
    if (data === undefined) throw new TypeError(`a topic item must be JSON-serialisable, got ${typeof value}`);
    return this.broker.publish(this.name, data, { capacity: this.capacity, ...(this.maxAgeMs !== undefined && { maxAgeMs: this.maxAgeMs }) });
  }

  /**
   * since answers the kept items after `since`, at once, possibly none. A `since` beyond the
   * latest id (a client of a run that numbered further) counts as the latest, so the client is
   * not stuck waiting for ids that will never come around.
   */
  async since(since?: Since): Promise<PollResult<T>> {
    return toPoll<T>(await this.broker.read(this.name, cursorOf(since)));
  }

  /**
   * waitFor resolves with the items after `since` as soon as there are any (at once if there
   * already are), or with `'timeout'` after `timeoutMs`. When `signal` aborts it rejects with
   * the signal's reason, and the waiter is gone before the rejection is seen; a broker that lost
   * its connection rejects with a `BrokerError`.
   */
  async waitFor(since: Since, options: WaitOptions): Promise<PollResult<T> | 'timeout'> {
    const result = await this.broker.wait(this.name, cursorOf(since), options);
    return result === 'timeout' ? result : toPoll<T>(result);
  }
}

function cursorOf(since: Since): string {
  if (since === undefined || since === 0) return BEGINNING;
  if (typeof since === 'number') throw new TypeError(`since must be an id the topic answered (a string), got the number ${since}`);
  return since;
}

function toPoll<T>(result: ReadResult): PollResult<T> {
  return { items: result.entries.map(({ id, data }) => ({ id, value: JSON.parse(data) as T })), lastId: result.lastId, missed: result.missed };
}
