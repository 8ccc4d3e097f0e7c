/**
 * WebSocket topics: subscribe sockets to broker topics and publish to every subscriber, in this
 * process and every other on the same broker (Bun's `publish` is the model).
 *
 * ```ts
 * const rooms = new WebSocketTopics();
 *
 * export const app = websocketApp((ws, environ) => {
 *   rooms.subscribe(ws, 'lobby');
 *   ws.on('message', (data) => void rooms.publish('lobby', String(data)));
 * });
 * ```
 *
 * How a message travels: `publish` appends it to the topic on the broker; in each process, one
 * follower per topic (a broker subscription, started with the first local subscriber and
 * stopped with the last) receives it once, frames it once as a text frame (RFC 6455 §5.2, unmasked
 * from a server) and writes the same bytes to every local subscriber. A socket that negotiated
 * permessage-deflate, or whose sender is busy compressing, gets it through `ws.send` instead,
 * which frames it for that socket alone.
 *
 * Slow sockets: a subscriber whose unsent bytes (`bufferedAmount`) exceed `maxBufferedBytes`
 * (default {@link DEFAULT_TOPIC_SOCKET_BUFFER}, 1 MiB) when a message is due is, by the default
 * policy `'close'`, closed with 1013 (Try Again Later, RFC 6455 §7.4.1 / IANA registry): it
 * cannot keep up, and a client that reconnects starts fresh instead of reading stale messages.
 * With `'drop'` the message is skipped for that socket only, and it stays subscribed. Either way
 * no socket buffers more than the bound plus one message, and a slow socket never delays the
 * others.
 *
 * When the broker fails (Redis lost), a follower waits {@link TOPIC_FOLLOW_RETRY_MS} and resumes
 * from the last id it delivered, so the messages still kept reach the sockets once it is back.
 */
import * as wsModule from 'ws';
import type { WebSocket } from 'ws';
import { defaultBroker } from './broker/default.ts';
import { LATEST } from './broker/ids.ts';
import { subscribeTo } from './broker/subscription.ts';
import { BrokerError, checkTopicName, type Broker } from './broker/types.ts';

/** DEFAULT_TOPIC_SOCKET_BUFFER is how many unsent bytes a subscriber may hold before it counts as slow: 1 MiB. */
export const DEFAULT_TOPIC_SOCKET_BUFFER = 1024 * 1024;

/** CLOSE_TRY_AGAIN_LATER is the close code for a subscriber that could not keep up (RFC 6455 §7.4.1, IANA). */
export const CLOSE_TRY_AGAIN_LATER = 1013;

/** TOPIC_FOLLOW_RETRY_MS is how long a follower waits after a broker failure before it asks again: 1 s. */
export const TOPIC_FOLLOW_RETRY_MS = 1000;

/** SlowSocketPolicy is what happens to a subscriber above its buffer bound: closed with 1013, or skipped. */
export type SlowSocketPolicy = 'close' | 'drop';

/** WebSocketTopicsOptions configures {@link WebSocketTopics}. */
export interface WebSocketTopicsOptions {
  /** The broker; default: the process's. */
  broker?: Broker;
  /** Unsent bytes above which a subscriber is slow; default {@link DEFAULT_TOPIC_SOCKET_BUFFER}. */
  maxBufferedBytes?: number;
  /** What to do with a slow subscriber; default `'close'`. */
  slowSocket?: SlowSocketPolicy;
  /** Told of broker failures (the follower retries); default: nothing. */
  onError?: (error: BrokerError, topic: string) => void;
}

/** WebSocketTopicsStats counts what the topics did, for tests and metrics. */
export interface WebSocketTopicsStats {
  /** Messages framed once for all subscribers of this process. */
  framed: number;
  /** Deliveries of a shared frame to one socket. */
  sent: number;
  /** Deliveries through `ws.send` (compression, or a busy sender). */
  sentAlone: number;
  /** Messages skipped for a slow socket under `'drop'`. */
  dropped: number;
  /** Slow sockets closed with 1013 under `'close'`. */
  closedSlow: number;
}

interface Follower {
  readonly sockets: Set<WebSocket>;
  readonly controller: AbortController;
}

/** The part of ws's internal sender used to write a frame built once; checked before use. */
interface FrameSender {
  _state?: number;
  sendFrame?(list: readonly Buffer[], cb?: (err?: Error) => void): void;
}

/** Sender is `ws`'s frame writer, exported by its ES module though not in its type declarations. */
const Sender = (wsModule as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } }).Sender;

const OPEN = 1;
/** ws's Sender state when nothing is queued or compressing (lib/sender.js `DEFAULT`). */
const SENDER_IDLE = 0;

/** WebSocketTopics holds the subscriptions of this process's sockets; see the file comment. */
export class WebSocketTopics {
  /** What has been delivered so far. */
  readonly stats: WebSocketTopicsStats = { framed: 0, sent: 0, sentAlone: 0, dropped: 0, closedSlow: 0 };
  private readonly given: Broker | undefined;
  private readonly maxBuffered: number;
  private readonly policy: SlowSocketPolicy;
  private readonly onError: ((error: BrokerError, topic: string) => void) | undefined;
  private readonly followers = new Map<string, Follower>();
  private readonly topicsOf = new Map<WebSocket, Set<string>>();
  private readonly onClose = new Map<WebSocket, () => void>();

  constructor(options: WebSocketTopicsOptions = {}) {
    const max = options.maxBufferedBytes ?? DEFAULT_TOPIC_SOCKET_BUFFER;
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`maxBufferedBytes must be a whole number of bytes, got ${String(max)}`);
    const policy = options.slowSocket ?? 'close';
    if (policy !== 'close' && policy !== 'drop') throw new RangeError(`slowSocket must be 'close' or 'drop', got ${JSON.stringify(policy)}`);
    this.given = options.broker;
    this.maxBuffered = max;
    this.policy = policy;
    this.onError = options.onError;
  }

  private get broker(): Broker {
    return this.given ?? defaultBroker();
  }

  /** subscribe adds `ws` to `topic`'s subscribers until it closes or is unsubscribed. */
  subscribe(ws: WebSocket, topic: string): void {
    checkTopicName(topic);
    if (ws.readyState !== OPEN) return;
    let topics = this.topicsOf.get(ws);
    if (topics === undefined) {
      this.topicsOf.set(ws, (topics = new Set()));
      const onClose = (): void => this.unsubscribeAll(ws);
      this.onClose.set(ws, onClose);
      ws.once('close', onClose);
    }
    topics.add(topic);
    let follower = this.followers.get(topic);
    if (follower === undefined) {
      follower = { sockets: new Set(), controller: new AbortController() };
      this.followers.set(topic, follower);
      void this.follow(topic, follower);
    }
    follower.sockets.add(ws);
  }

  /** unsubscribe removes `ws` from `topic`'s subscribers. */
  unsubscribe(ws: WebSocket, topic: string): void {
    const topics = this.topicsOf.get(ws);
    if (topics === undefined || !topics.delete(topic)) return;
    this.leave(ws, topic);
    if (topics.size === 0) this.forget(ws);
  }

  /** publish sends `message` as a text message to every subscriber of `topic`, in every process; resolves with its broker id. */
  publish(topic: string, message: string): Promise<string> {
    return this.broker.publish(topic, message);
  }

  /** subscribers is how many sockets of this process are subscribed, to `topic` or to any. */
  subscribers(topic?: string): number {
    if (topic !== undefined) return this.followers.get(topic)?.sockets.size ?? 0;
    return this.topicsOf.size;
  }

  /** following is how many topics have a follower running in this process. */
  get following(): number {
    return this.followers.size;
  }

  /** close unsubscribes every socket (without closing it) and stops every follower. */
  close(): void {
    for (const ws of [...this.topicsOf.keys()]) this.unsubscribeAll(ws);
  }

  private unsubscribeAll(ws: WebSocket): void {
    const topics = this.topicsOf.get(ws);
    if (topics === undefined) return;
    for (const topic of topics) this.leave(ws, topic);
    this.forget(ws);
  }

  private forget(ws: WebSocket): void {
    this.topicsOf.delete(ws);
    const onClose = this.onClose.get(ws);
    if (onClose !== undefined) ws.off('close', onClose);
    this.onClose.delete(ws);
  }

  private leave(ws: WebSocket, topic: string): void {
    const follower = this.followers.get(topic);
    if (follower === undefined) return;
    follower.sockets.delete(ws);
    if (follower.sockets.size === 0) {
      this.followers.delete(topic);
      follower.controller.abort();
    }
  }

  /** follow subscribes to the topic and hands each entry to the local subscribers, until aborted. */
  private async follow(topic: string, follower: Follower): Promise<void> {
    const signal = follower.controller.signal;
    let cursor: string | undefined;
    while (!signal.aborted) {
      try {
        // Subscribers get what is published after they joined.
        cursor ??= (await this.broker.read(topic, LATEST)).lastId;
        if (signal.aborted) return;
        for await (const result of subscribeTo(this.broker, topic, cursor, { signal })) {
          for (const entry of result.entries) this.deliver(follower, entry.data);
          cursor = result.lastId;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (!(err instanceof BrokerError)) throw err;
        this.onError?.(err, topic);
        if (err.code === 'closed') return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, TOPIC_FOLLOW_RETRY_MS);
          signal.addEventListener('abort', done, { once: true });
          function done(): void {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            resolve();
          }
        });
      }
    }
  }

  private deliver(follower: Follower, message: string): void {
    const payload = Buffer.from(message);
    let frame: Buffer[] | undefined;
    for (const ws of [...follower.sockets]) {
      if (ws.readyState !== OPEN) continue;
      if (ws.bufferedAmount > this.maxBuffered) {
        if (this.policy === 'drop') {
          this.stats.dropped++;
          continue;
        }
        this.stats.closedSlow++;
        this.unsubscribeAll(ws);
        ws.close(CLOSE_TRY_AGAIN_LATER, 'too slow for its topic');
        continue;
      }
      const sender = (ws as unknown as { _sender?: FrameSender })._sender;
      const shared =
        typeof Sender?.frame === 'function' &&
        sender !== undefined &&
        typeof sender.sendFrame === 'function' &&
        sender._state === SENDER_IDLE &&
        !('permessage-deflate' in parseExtensions(ws.extensions));
      if (!shared) {
        this.stats.sentAlone++;
        ws.send(payload);
        continue;
      }
      if (frame === undefined) {
        frame = Sender.frame(payload, { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false });
        this.stats.framed++;
      }
      this.stats.sent++;
      (sender.sendFrame as NonNullable<FrameSender['sendFrame']>)(frame);
    }
  }
}

function parseExtensions(header: string): Record<string, unknown> {
  const names: Record<string, unknown> = {};
  for (const part of header.split(',')) {
    const name = part.split(';')[0]?.trim();
    if (name !== undefined && name !== '') names[name] = true;
  }
  return names;
}
