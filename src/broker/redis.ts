/**
 * The Redis Streams broker: every topic a stream, shared by every process and machine that uses
 * the same Redis, and kept across restarts as far as Redis keeps it (AOF or RDB).
 *
 * - publish: a short script that runs `XADD key MAXLEN ~ capacity * d data p prev` (plus `XTRIM
 *   key MINID ~ oldest` with an age limit) where `prev` is the id of the entry before it; the
 *   entry's Redis id, zero-padded, is the broker id.
 * - read: `XRANGE key (after +` and `XINFO STREAM key` in one MULTI, so the answer's `lastId` and
 *   `missed` describe the same moment. `missed` is exact although `MAXLEN ~` trims
 *   approximately: the oldest entry after the reader names its predecessor, and a reader whose id
 *   is not that predecessor never saw it (or brings an id from a history Redis lost). (Trimming does not move Redis's own
 *   `max-deleted-entry-id`, only XDEL does, so that field cannot tell.)
 * - wait: one blocking `XREAD BLOCK ... STREAMS k1 k2 ... id1 id2 ...` per process, on a second
 *   connection, for every topic that has a waiting client in this process; what it brings wakes
 *   the local waits ({@link Waiters}). A topic that gains its first waiter interrupts the
 *   blocking read with `CLIENT UNBLOCK`, so the next one includes it. However many clients wait,
 *   a process holds two connections.
 *
 * The client library, `ioredis`, is an optional peer dependency, imported only when this broker
 * is used. When Redis is unreachable at start, `ready()` rejects with a {@link BrokerError} that
 * names the address and the cause. When the connection is lost while running: publishes and reads
 * fail at once with a BrokerError (nothing queues), every pending wait is rejected with one, new
 * waits are rejected as they read, and commands time out after {@link REDIS_COMMAND_TIMEOUT_MS}
 * on a connection that stops answering. ioredis reconnects in the background (every
 * {@link REDIS_RECONNECT_MS} at most), and once it has, everything works again: readers resume
 * from their ids, so nothing kept is lost.
 */
import { fromRedisId, makeId, normaliseCursor, toRedisId } from './ids.ts';
import { PUBLISH_SCRIPT, fields, fromStreamId, predecessor, toEntries, type RawEntry } from './redis-stream.ts';
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
import { DEFAULT_BROKER_CAPACITY } from './memory.ts';
import { loadClient, type Connection } from './redis-client.ts';
import { Waiters } from './waiters.ts';

/** REDIS_COMMAND_TIMEOUT_MS bounds one command on a connection that stopped answering: 5 s. */
export const REDIS_COMMAND_TIMEOUT_MS = 5000;

/** REDIS_CONNECT_TIMEOUT_MS bounds the first connection: 5 s, then `ready()` fails. */
export const REDIS_CONNECT_TIMEOUT_MS = 5000;

/** REDIS_RECONNECT_MS is the longest pause between reconnection attempts after a lost connection: 1 s. */
export const REDIS_RECONNECT_MS = 1000;

/**
 * REDIS_BLOCK_MS bounds one blocking XREAD: 5 s. `CLIENT UNBLOCK` ends it early when a topic is
 * added; the bound only matters if that message lost the race with the read it meant to end.
 */
export const REDIS_BLOCK_MS = 5000;

/** DEFAULT_REDIS_PREFIX starts every key nsgi writes: `nsgi:topic:<name>`. */
export const DEFAULT_REDIS_PREFIX = 'nsgi:';

/** RedisBrokerOptions configures a {@link RedisBroker}. */
export interface RedisBrokerOptions {
  /** `redis://[user:password@]host:port/db` or `rediss://...` for TLS. */
  url: string;
  /** How many of the latest entries each topic keeps at least; default 1000. */
  capacity?: number;
  /** How long an entry is kept at most, in milliseconds; 0 or absent: no age limit. */
  maxAgeMs?: number;
  /** The start of every key; default {@link DEFAULT_REDIS_PREFIX}. */
  prefix?: string;
}

/** RedisBroker keeps every topic in a Redis stream; see the file comment. */
export class RedisBroker implements Broker {
  readonly kind = 'redis' as const;
  private readonly url: string;
  private readonly shownUrl: string;
  private readonly capacity: number;
  private readonly maxAgeMs: number;
  private readonly prefix: string;
  private readonly waiters: Waiters;
  private command: Connection | undefined;
  private reader: Connection | undefined;
  private connecting: Promise<void> | undefined;
  private closed = false;
  /** Topics that have a waiting client here, and the id after which the blocking read looks. */
  private readonly watching = new Map<string, string>();
  private readerId: number | undefined;
  /** The topics the blocking read now in flight covers; undefined when none is in flight. */
  private inFlight: ReadonlySet<string> | undefined;
  private wakeLoop: (() => void) | undefined;
  private loopRunning = false;
  private lastError = '';

  constructor(options: RedisBrokerOptions) {
    checkPublishOptions(options);
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
      throw new BrokerError('config', `not a Redis URL: ${JSON.stringify(options.url)} (use redis://host:port/db)`);
    }
    if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
      throw new BrokerError('config', `not a Redis URL: ${JSON.stringify(options.url)} (use redis://host:port/db)`);
    }
    if (parsed.pathname !== '' && parsed.pathname !== '/' && !/^\/\d+$/.test(parsed.pathname)) {
      throw new BrokerError('config', `the Redis database must be a number, got ${JSON.stringify(parsed.pathname.slice(1))} in ${JSON.stringify(options.url)}`);
    }
    this.url = options.url;
    // Never print a password.
    if (parsed.password !== '') parsed.password = '***';
    this.shownUrl = parsed.toString();
    this.capacity = options.capacity ?? DEFAULT_BROKER_CAPACITY;
    this.maxAgeMs = options.maxAgeMs ?? 0;
    this.prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
    this.waiters = new Waiters((topic, after) => this.readCursor(topic, after), {
      armed: (topic, cursor) => this.watch(topic, cursor),
      idle: (topic) => this.watching.delete(topic),
    });
  }

  ready(): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    this.connecting ??= this.connect();
    return this.connecting;
  }

  async publish(topic: string, data: string, options: PublishOptions = {}): Promise<string> {
    checkTopicName(topic);
    checkData(data);
    checkPublishOptions(options);
    const command = await this.connection();
    const key = this.key(topic);
    const capacity = options.capacity ?? this.capacity;
    const maxAgeMs = options.maxAgeMs ?? this.maxAgeMs;
    const id = await this.run(() => command.call('eval', PUBLISH_SCRIPT, 1, key, data, capacity, maxAgeMs));
    return fromRedisId(String(id));
  }

  async read(topic: string, after?: string): Promise<ReadResult> {
    checkTopicName(topic);
    return this.readCursor(topic, normaliseCursor(after));
  }

  async wait(topic: string, after: string | undefined, options: BrokerWaitOptions): Promise<ReadResult | 'timeout'> {
    checkTopicName(topic);
    checkWaitOptions(options);
    const cursor = normaliseCursor(after);
    if (this.closed) throw closedError();
    await this.ready();
    return this.waiters.wait(topic, cursor, options);
  }

  subscribe(topic: string, after: string | undefined, options: BrokerSubscribeOptions = {}): BrokerSubscription {
    checkTopicName(topic);
    if (this.closed) throw closedError();
    // Its first next() reads, which connects first, as wait() does.
    return this.waiters.subscribe(topic, normaliseCursor(after), options.signal);
  }

  waiting(topic?: string): number {
    return this.waiters.count(topic);
  }

  /** watched is how many topics the blocking read covers; for leak checks. */
  get watched(): number {
    return this.watching.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiters.fail(closedError());
    this.watching.clear();
    this.wakeLoop?.();
    this.reader?.disconnect();
    this.command?.disconnect();
  }

  // ---- connections ------------------------------------------------------------------------------

  private async connect(): Promise<void> {
    const Client = await loadClient();
    const options = {
      lazyConnect: true,
      // Nothing queues while disconnected: a command fails at once, so no request hangs on Redis.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(times * 100, REDIS_RECONNECT_MS),
    };
    const command = new Client(this.url, { ...options, commandTimeout: REDIS_COMMAND_TIMEOUT_MS });
    const reader = new Client(this.url, options);
    for (const connection of [command, reader]) {
      // ioredis reports each failed attempt; the broker's callers get BrokerErrors instead.
      connection.on('error', (err) => (this.lastError = err instanceof Error ? err.message : String(err)));
    }
    reader.on('close', () => (this.readerId = undefined));
    this.command = command;
    this.reader = reader;
    try {
      await command.connect();
      await reader.connect();
    } catch (err) {
      command.disconnect();
      reader.disconnect();
      this.connecting = undefined;
      throw new BrokerError('unavailable', `cannot reach Redis at ${this.shownUrl}: ${this.lastError || (err instanceof Error ? err.message : String(err))}`, { cause: err });
    }
    if (this.closed) {
      command.disconnect();
      reader.disconnect();
      throw closedError();
    }
  }

  private async connection(): Promise<Connection> {
    await this.ready();
    return this.command as Connection;
  }

  /** run turns a failed command into a BrokerError that names Redis and the cause. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    if (this.closed) throw closedError();
    try {
      return await command();
    } catch (err) {
      if (this.closed) throw closedError();
      if (err instanceof BrokerError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      // A reply error (a wrong type at the key, say) is Redis answering; anything else is the connection.
      if (err instanceof Error && err.name === 'ReplyError') throw new BrokerError('config', `Redis at ${this.shownUrl} refused a command: ${message}`, { cause: err });
      throw new BrokerError('unavailable', `Redis at ${this.shownUrl} is unavailable: ${message}${this.lastError !== '' && !message.includes(this.lastError) ? ` (${this.lastError})` : ''}`, { cause: err });
    }
  }

  private reply(replies: Array<[Error | null, unknown]> | null, index: number): unknown {
    const entry = replies?.[index];
    if (entry === undefined) throw new BrokerError('unavailable', `Redis at ${this.shownUrl} aborted a transaction`);
    if (entry[0] !== null) throw entry[0];
    return entry[1];
  }

  private key(topic: string): string {
    return `${this.prefix}topic:${topic}`;
  }

  // ---- reading ----------------------------------------------------------------------------------

  private async readCursor(topic: string, after: string): Promise<ReadResult> {
    const command = await this.connection();
    const key = this.key(topic);
    const start = after === BEGINNING ? '-' : `(${toRedisId(after)}`;
    const replies = await this.run(() =>
      command
        .multi([
          ['xrange', key, start, '+'],
          ['xinfo', 'stream', key],
          ['time'],
        ])
        .exec(),
    );
    const entries = toEntries(this.reply(replies, 0) as RawEntry[]);
    const infoError = replies?.[1]?.[0];
    if (infoError instanceof Error && /no such key/i.test(infoError.message)) {
      // No stream: nobody published yet, or Redis lost it (restarted without persistence). A
      // reader with an id from before now had a history that is gone; one from beyond now is
      // from the future, which counts as the latest (BR-3).
      const [seconds, micros] = (this.reply(replies, 2) as [string, string]).map(Number) as [number, number];
      const now = makeId(seconds * 1000 + Math.floor(micros / 1000), 0);
      return { entries: [], lastId: BEGINNING, missed: after !== BEGINNING && after < now };
    }
    const info = fields(this.reply(replies, 1) as unknown[]);
    // In one MULTI the last generated id is the last entry's, or, for a reader with nothing new,
    // where it stands (a reader from beyond it is moved back to it).
    const lastId = fromStreamId(String(info.get('last-generated-id') ?? '0-0'));
    const first = (this.reply(replies, 0) as RawEntry[])[0];
    // The oldest entry after the reader names the entry before it: a reader anywhere else missed
    // that one (trimmed), or holds an id this stream never had (Redis lost its history). With
    // nothing after the reader although the stream went further, what came after was trimmed.
    const missed = first === undefined ? after < lastId && lastId !== BEGINNING : after !== predecessor(first);
    return { entries, lastId, missed };
  }

  // ---- the blocking read ------------------------------------------------------------------------

  private watch(topic: string, cursor: string): void {
    const current = this.watching.get(topic);
    if (current !== undefined) return;
    this.watching.set(topic, cursor);
    if (!this.loopRunning) {
      // A reply the loop cannot read is a broken connection as far as the waiting clients go.
      this.loop().catch((err: unknown) => this.waiters.fail(new BrokerError('unavailable', `reading from Redis at ${this.shownUrl} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })));
    }
    else if (this.inFlight === undefined) this.wakeLoop?.();
    else if (!this.inFlight.has(topic)) void this.unblock();
  }

  /** unblock ends the blocking read in flight, so the next one covers the topics added since. */
  private async unblock(): Promise<void> {
    const stale = this.inFlight;
    for (let attempt = 0; attempt < UNBLOCK_ATTEMPTS && this.inFlight === stale && stale !== undefined; attempt++) {
      if (this.readerId !== undefined && this.command !== undefined) {
        const done = await this.command.call('client', 'unblock', this.readerId).catch(() => 0);
        if (Number(done) === 1) return;
      }
      // The read may not have reached Redis yet; try again shortly.
      await new Promise((resolve) => setTimeout(resolve, UNBLOCK_RETRY_MS));
    }
  }

  private async loop(): Promise<void> {
    this.loopRunning = true;
    try {
      while (!this.closed) {
        if (this.watching.size === 0) {
          await new Promise<void>((resolve) => (this.wakeLoop = resolve));
          this.wakeLoop = undefined;
          continue;
        }
        const reader = this.reader as Connection;
        let reply: unknown;
        let topics: string[] = [];
        let cursors: string[] = [];
        try {
          if (this.readerId === undefined) this.readerId = Number(await reader.call('client', 'id'));
          // The topic set is taken here, with no await before the read goes out, so a topic
          // added meanwhile is either in this read or sees it in flight and interrupts it.
          topics = [...this.watching.keys()];
          cursors = topics.map((t) => this.watching.get(t) as string);
          if (topics.length === 0) continue;
          this.inFlight = new Set(topics);
          reply = await reader.call('xread', 'BLOCK', REDIS_BLOCK_MS, 'STREAMS', ...topics.map((t) => this.key(t)), ...cursors.map(toRedisId));
        } catch (err) {
          this.inFlight = undefined;
          if (this.closed) break;
          // The connection is gone: waiting clients hear it now rather than at their timeout.
          this.waiters.fail(new BrokerError('unavailable', `lost the connection to Redis at ${this.shownUrl}${this.lastError !== '' ? `: ${this.lastError}` : ''}`, { cause: err }));
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, REDIS_RECONNECT_MS);
            this.wakeLoop = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wakeLoop = undefined;
          continue;
        }
        this.inFlight = undefined;
        for (const [key, raw] of (reply ?? []) as Array<[string, RawEntry[]]>) {
          const topic = key.slice(this.key('').length);
          const entries = toEntries(raw);
          if (entries.length === 0) continue;
          const prev = cursors[topics.indexOf(topic)] as string;
          const last = (entries[entries.length - 1] as BrokerEntry).id;
          const watched = this.watching.get(topic);
          if (watched !== undefined && watched < last) this.watching.set(topic, last);
          this.waiters.deliver(topic, prev, entries);
        }
      }
    } finally {
      this.loopRunning = false;
    }
  }
}

/** UNBLOCK_ATTEMPTS and UNBLOCK_RETRY_MS bound the retries of CLIENT UNBLOCK: 5 tries, 20 ms apart. */
const UNBLOCK_ATTEMPTS = 5;
const UNBLOCK_RETRY_MS = 20;

function closedError(): BrokerError {
  return new BrokerError('closed', 'the Redis broker is closed');
}
