/**
 * The cluster broker: the workers of one `nsgi --workers N` share one log, kept by the primary.
 *
 * The primary runs {@link startBrokerRelay}: a {@link MemoryBroker} and a handler for its workers'
 * requests over node:cluster IPC. A worker's {@link ClusterBroker} sends `publish` and `read` to it
 * and gets the answer back on the same channel; after every publish the primary sends the new
 * entry, with the id it follows, to every worker, where it wakes that worker's local waits (one
 * message per worker per publish, however many clients wait there). IPC keeps the order of
 * messages, so a worker never sees an entry before the answer to a read that came earlier.
 *
 * `nsgi --workers N` starts the relay itself. A program with its own node:cluster primary calls
 * {@link startBrokerRelay} there; without it a worker's first use of the broker fails after
 * {@link CLUSTER_REQUEST_TIMEOUT_MS} with an error that says so.
 */
import cluster from 'node:cluster';
import { normaliseCursor } from './ids.ts';
import { MemoryBroker, type MemoryBrokerOptions } from './memory.ts';
import {
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

/** CLUSTER_REQUEST_TIMEOUT_MS is how long a worker waits for the primary's answer before failing the call: 5 s. */
export const CLUSTER_REQUEST_TIMEOUT_MS = 5000;

/** BROKER_MESSAGE marks nsgi's broker messages among whatever else an app sends over IPC. */
const BROKER_MESSAGE = 'nsgi:broker';

type Request =
  | { type: typeof BROKER_MESSAGE; op: 'ping'; ref: number }
  | { type: typeof BROKER_MESSAGE; op: 'publish'; ref: number; topic: string; data: string; options: PublishOptions }
  | { type: typeof BROKER_MESSAGE; op: 'read'; ref: number; topic: string; after: string };

type Notice =
  | { type: typeof BROKER_MESSAGE; op: 'reply'; ref: number; ok: true; value: unknown }
  | { type: typeof BROKER_MESSAGE; op: 'reply'; ref: number; ok: false; error: string; kind: 'type' | 'range' | 'broker' }
  | { type: typeof BROKER_MESSAGE; op: 'published'; topic: string; prev: string; entry: BrokerEntry };

/** Channel is the worker's end of the IPC channel: `process` in a cluster worker. */
export interface Channel {
  send?(message: unknown, callback: (error: Error | null) => void): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

/** ClusterBrokerOptions configures a {@link ClusterBroker}. */
export interface ClusterBrokerOptions {
  /** The channel to the primary; default `process`. */
  channel?: Channel;
  /** How long to wait for an answer; default {@link CLUSTER_REQUEST_TIMEOUT_MS}. */
  requestTimeoutMs?: number;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

/** lastRef numbers requests across every ClusterBroker of the process, since brokers sharing a channel see each other's answers. */
let lastRef = 0;

/** ClusterBroker is a worker's view of the log its primary keeps; see the file comment. */
export class ClusterBroker implements Broker {
  readonly kind = 'cluster' as const;
  private readonly channel: Channel;
  private readonly timeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private readonly waiters: Waiters;
  private listening = false;
  private closed = false;
  private readonly onMessage = (message: unknown): void => this.receive(message);

  constructor(options: ClusterBrokerOptions = {}) {
    this.channel = options.channel ?? process;
    this.timeoutMs = options.requestTimeoutMs ?? CLUSTER_REQUEST_TIMEOUT_MS;
    this.waiters = new Waiters((topic, after) => this.request({ op: 'read', topic, after }) as Promise<ReadResult>);
  }

  async ready(): Promise<void> {
    await this.request({ op: 'ping' });
  }

  async publish(topic: string, data: string, options: PublishOptions = {}): Promise<string> {
    checkTopicName(topic);
    checkData(data);
    checkPublishOptions(options);
    return (await this.request({ op: 'publish', topic, data, options })) as string;
  }

  async read(topic: string, after?: string): Promise<ReadResult> {
    checkTopicName(topic);
    return (await this.request({ op: 'read', topic, after: normaliseCursor(after) })) as ReadResult;
  }

  async wait(topic: string, after: string | undefined, options: BrokerWaitOptions): Promise<ReadResult | 'timeout'> {
    checkTopicName(topic);
    checkWaitOptions(options);
    if (this.closed) throw closedError();
    this.listen();
    return this.waiters.wait(topic, normaliseCursor(after), options);
  }

  subscribe(topic: string, after: string | undefined, options: BrokerSubscribeOptions = {}): BrokerSubscription {
    checkTopicName(topic);
    const cursor = normaliseCursor(after);
    if (this.closed) throw closedError();
    this.listen();
    return this.waiters.subscribe(topic, cursor, options.signal);
  }

  waiting(topic?: string): number {
    return this.waiters.count(topic);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [ref, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(ref);
      pending.reject(closedError());
    }
    this.waiters.fail(closedError());
    if (this.listening) this.channel.off('message', this.onMessage);
    this.listening = false;
  }

  private listen(): void {
    if (this.listening) return;
    this.listening = true;
    this.channel.on('message', this.onMessage);
  }

  private request(body: { op: 'ping' } | { op: 'publish'; topic: string; data: string; options: PublishOptions } | { op: 'read'; topic: string; after: string }): Promise<unknown> {
    if (this.closed) return Promise.reject(closedError());
    if (typeof this.channel.send !== 'function') {
      return Promise.reject(new BrokerError('config', 'the cluster broker runs only in a node:cluster worker (this process has no IPC channel); use the memory or Redis broker'));
    }
    this.listen();
    const ref = ++lastRef;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new BrokerError('unavailable', `the cluster primary did not answer a broker ${body.op} within ${this.timeoutMs} ms; a custom primary must call startBrokerRelay()`));
      }, this.timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      try {
        // With a callback, a closed channel reports here instead of as an 'error' event on the process.
        (this.channel.send as NonNullable<Channel['send']>)({ type: BROKER_MESSAGE, ref, ...body } satisfies Request, (error) => {
          if (error === null || !this.pending.has(ref)) return;
          clearTimeout(timer);
          this.pending.delete(ref);
          reject(new BrokerError('unavailable', 'lost the channel to the cluster primary', { cause: error }));
        });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(ref);
        reject(new BrokerError('unavailable', 'lost the channel to the cluster primary', { cause: err }));
      }
    });
  }

  private receive(message: unknown): void {
    if (!isBrokerMessage(message)) return;
    const notice = message as Notice;
    if (notice.op === 'published') {
      this.waiters.deliver(notice.topic, notice.prev, [notice.entry]);
      return;
    }
    if (notice.op !== 'reply') return;
    const pending = this.pending.get(notice.ref);
    if (pending === undefined) return;
    this.pending.delete(notice.ref);
    clearTimeout(pending.timer);
    if (notice.ok) pending.resolve(notice.value);
    else pending.reject(notice.kind === 'type' ? new TypeError(notice.error) : notice.kind === 'range' ? new RangeError(notice.error) : new BrokerError('unavailable', notice.error));
  }
}

function closedError(): BrokerError {
  return new BrokerError('closed', 'the cluster broker is closed');
}

function isBrokerMessage(message: unknown): boolean {
  return message !== null && typeof message === 'object' && (message as { type?: unknown }).type === BROKER_MESSAGE;
}

/** Peer is one worker as the relay sees it. */
export interface Peer {
  send(message: unknown, callback: (error: Error | null) => void): unknown;
  isConnected?(): boolean;
}

/** Hub is the primary's side of the channels: every worker, and the messages they send. */
export interface Hub {
  peers(): Iterable<Peer>;
  onMessage(handler: (peer: Peer, message: unknown) => void): () => void;
}

/** clusterHub is the {@link Hub} of node:cluster's workers. */
export function clusterHub(): Hub {
  return {
    peers: () => Object.values(cluster.workers ?? {}).filter((w) => w !== undefined),
    onMessage(handler) {
      const listener = (worker: Peer, message: unknown): void => handler(worker, message);
      cluster.on('message', listener);
      return () => cluster.off('message', listener);
    },
  };
}

function ignoreSendError(): void {}

/** BrokerRelayOptions configures {@link startBrokerRelay}. */
export interface BrokerRelayOptions extends MemoryBrokerOptions {
  /** The workers; default node:cluster's ({@link clusterHub}). */
  hub?: Hub;
}

/**
 * startBrokerRelay keeps the log for the workers, in the primary: it answers their requests and
 * sends every new entry to all of them. It returns the function that stops it and drops the log.
 */
export function startBrokerRelay(options: BrokerRelayOptions = {}): () => void {
  const hub = options.hub ?? clusterHub();
  const broker = new MemoryBroker(options);
  const reply = (peer: Peer, notice: Notice): void => {
    if (peer.isConnected?.() === false) return;
    // A worker that died between its request and the answer is replaced; nothing to tell it.
    try {
      peer.send(notice, ignoreSendError);
    } catch {
      // The channel closed synchronously: the same case.
    }
  };
  const stopPublishing = broker.onPublish((topic, { entry, prev }) => {
    for (const peer of hub.peers()) reply(peer, { type: BROKER_MESSAGE, op: 'published', topic, prev, entry });
  });
  const stopListening = hub.onMessage((peer, message) => {
    if (!isBrokerMessage(message)) return;
    const request = message as Request;
    try {
      let value: unknown = null;
      if (request.op === 'publish') value = broker.publishNow(request.topic, request.data, request.options ?? {}).entry.id;
      else if (request.op === 'read') value = broker.readNow(request.topic, normaliseCursor(request.after));
      // The answer goes out after the entry's notice, which onPublish sent during publishNow.
      reply(peer, { type: BROKER_MESSAGE, op: 'reply', ref: request.ref, ok: true, value });
    } catch (err) {
      const kind = err instanceof TypeError ? 'type' : err instanceof RangeError ? 'range' : 'broker';
      reply(peer, { type: BROKER_MESSAGE, op: 'reply', ref: request.ref, ok: false, error: err instanceof Error ? err.message : String(err), kind });
    }
  });
  return () => {
    stopListening();
    stopPublishing();
    void broker.close();
  };
}
