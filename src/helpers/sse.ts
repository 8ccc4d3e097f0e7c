/**
 * Server-sent events: an iterable of events in, a `text/event-stream` response out (the HTML
 * Living Standard, "Server-sent events", §9.2).
 *
 * ```ts
 * import { sse } from 'nsgi';
 *
 * export const app = sse(async function* (environ) {
 *   for await (const order of orders.changes({ signal: environ['nsgi.signal'] })) {
 *     yield { event: 'order', id: String(order.version), data: JSON.stringify(order) };
 *   }
 * });
 * ```
 *
 * What the helper does for the app:
 *
 * - The head goes out at once (`write.flushHead()`, SPEC §4.6), so the browser's `EventSource`
 *   fires `open` before the first event exists.
 * - Each event is framed as the standard says: multi-line data becomes one `data:` line per line
 *   (CRLF, CR and LF all count as line ends, as in the client's parser); `id` and `event` may not
 *   contain CR or LF (nor `id` NUL), since a line end in them would start a field of the
 *   attacker's choosing, so such an event is refused with a TypeError, which cuts the stream
 *   (SPEC §8) rather than sending it; `retry` must be a whole number.
 * - While the source is quiet, a comment line (`: ping`) goes out every `heartbeatMs` (default
 *   15 s), so proxies and load balancers do not close the connection as idle and a vanished
 *   client is noticed at the next write.
 * - When the client goes away or the server shuts down (`nsgi.signal`), the wait for the source's
 *   next event is abandoned at once and the source's iterator is closed (its `return()` called).
 *   An async generator runs its `finally` only once the `await` it is parked on settles, so a
 *   source that waits long should pass `environ['nsgi.signal']` to its waits as well.
 *
 * A topic of the broker (`src/broker/`) streams with {@link sseTopic} / {@link topicEvents}: each
 * entry is an event whose `id:` is the broker's id, so a client that reconnects with
 * `Last-Event-ID`, to this process or any other on the same broker, gets exactly the entries after
 * the last one it saw (on Redis, across restarts too), and hears `missed` when they are no longer
 * kept. The stream starts with `retry:`, telling the client how soon to come back.
 */
import type { App, Body, Environ, HeaderList, StartResponse } from '../../protocol/nsgi.ts';
import { defaultBroker } from '../broker/default.ts';
import { isCursor, LATEST } from '../broker/ids.ts';
import { subscribeTo } from '../broker/subscription.ts';
import { BEGINNING, BrokerError, type Broker, type BrokerEntry, type BrokerSubscription, type ReadResult } from '../broker/types.ts';
import { frames } from './sse-body.ts';

export { formatEvent } from './sse-format.ts';

/** DEFAULT_SSE_HEARTBEAT_MS is how long the stream may stay silent before a `: ping` comment: 15 s. */
export const DEFAULT_SSE_HEARTBEAT_MS = 15_000;

/** SseEvent is one event of a stream. Every field is optional, but a client dispatches only events with `data`. */
export interface SseEvent {
  /** The payload; each line becomes its own `data:` line, and the client joins them with `\n`. */
  data?: string;
  /** The event type, for `addEventListener(type)`; the client's default is `message`. No CR or LF. */
  event?: string;
  /** The event id, which the client sends back as `Last-Event-ID` when it reconnects. No CR, LF or NUL. */
  id?: string;
  /** The client's reconnection delay, in milliseconds; a whole number. */
  retry?: number;
  /** A comment, ignored by clients; useful to keep a connection warm or to leave a note in traces. */
  comment?: string;
}

/** SseMessage is what a source yields: an {@link SseEvent}, or a string, sent as the event's data. */
export type SseMessage = SseEvent | string;

/** SseSource is a stream of messages, sync or async; async generators are the normal case. */
export type SseSource = AsyncIterable<SseMessage> | Iterable<SseMessage>;

/** SseOptions configures {@link sse} and {@link sseResponse}. */
export interface SseOptions {
  /** Milliseconds of silence before a `: ping` comment is sent; default 15 s; 0 for none. */
  heartbeatMs?: number;
  /** More response headers, such as `Access-Control-Allow-Origin`, after the event-stream ones. */
  headers?: HeaderList;
}

/** SSE_HEADERS are the response headers of every event stream. */
export const SSE_HEADERS: HeaderList = [
  ['Content-Type', 'text/event-stream; charset=utf-8'],
  // Every reconnection must reach the server; a cached stream would replay stale events.
  ['Cache-Control', 'no-cache'],
  // nginx buffers responses by default, which would hold events back; this turns it off.
  ['X-Accel-Buffering', 'no'],
];

/**
 * sse makes an app that answers every request with the event stream `source(environ)` produces.
 * `source` is called once per request.
 */
export function sse(source: (environ: Environ) => SseSource, options: SseOptions = {}): App {
  return (environ, startResponse) => sseResponse(environ, startResponse, source(environ), options);
}

/**
 * sseResponse starts a `text/event-stream` response, sends its head at once, and returns the body
 * that frames the events of `source` and the heartbeat comments. Return it from the app. A HEAD
 * request gets the head only, and `source` is not iterated.
 */
export function sseResponse(environ: Environ, startResponse: StartResponse, source: SseSource, options: SseOptions = {}): Body {
  const write = startResponse('200 OK', [...SSE_HEADERS, ...(options.headers ?? [])]);
  // The head leaves before the body is known, so a HEAD gets no Content-Length: a GET's stream
  // has none either (RFC 9110 §8.6).
  write.flushHead();
  if (environ.REQUEST_METHOD === 'HEAD') return [];
  return frames(source, environ, options.heartbeatMs ?? DEFAULT_SSE_HEARTBEAT_MS);
}

/** DEFAULT_SSE_RETRY_MS is the reconnection delay a topic stream asks of its clients: 2 s, soon enough not to lose the thread, slow enough not to stampede a restarting server. */
export const DEFAULT_SSE_RETRY_MS = 2000;

/** SSE_MISSED_EVENT is the event type a topic stream sends when entries after the client's id are gone. */
export const SSE_MISSED_EVENT = 'missed';

/** SseTopicOptions configures {@link sseTopic} and {@link topicEvents}. */
export interface SseTopicOptions extends SseOptions {
  /** The broker; default: the process's. */
  broker?: Broker;
  /** The `retry:` sent first, in milliseconds; default {@link DEFAULT_SSE_RETRY_MS}. */
  retryMs?: number;
  /** The event type of every entry; default none (the client's `message`). */
  event?: string;
  /**
   * Where a client without `Last-Event-ID` starts: `'latest'` (default) with the next entry
   * published, `'beginning'` with the oldest kept one.
   */
  from?: 'latest' | 'beginning';
  /**
   * What to send when entries after the client's id are gone (or its `Last-Event-ID` is not an id
   * of this broker): by default an event of type {@link SSE_MISSED_EVENT} with empty data. An
   * app that can, sends a snapshot here instead.
   */
  onMissed?: (environ: Environ) => SseMessage | readonly SseMessage[] | undefined;
}

/**
 * sseTopic makes an app that streams the broker topic `topic` (or the one it names for the
 * request) to every client, with replay from `Last-Event-ID`; see {@link topicEvents}.
 */
export function sseTopic(topic: string | ((environ: Environ) => string), options: SseTopicOptions = {}): App {
  return sse((environ) => topicEvents(environ, typeof topic === 'string' ? topic : topic(environ), options), options);
}

/**
 * topicEvents yields the entries of a broker topic as events: first `retry:`, then, from the
 * client's `Last-Event-ID` (or as `from` says), each entry with its broker id as `id:`, the
 * missed notice where entries are gone, until the client leaves. When the broker fails (Redis
 * lost), the stream ends after a line on `nsgi.errors`; the client reconnects after `retry` and
 * resumes from its last id once the broker is back. Like a generator, it does nothing until its
 * first `next()`, and `return()` ends it (and its subscription) at once.
 */
export function topicEvents(environ: Environ, topic: string, options: SseTopicOptions = {}): AsyncIterableIterator<SseMessage> {
  return new TopicEvents(environ, topic, options);
}

/**
 * TopicEvents is {@link topicEvents}' iterator, written out rather than as an async generator:
 * each entry then costs one settlement of the subscription's promise, not a generator's
 * resumption, its `for await` and its `yield`. Messages made from one answer beyond the first wait
 * in `queue` for the next calls.
 */
class TopicEvents implements AsyncIterableIterator<SseMessage> {
  private queue: SseMessage[] | null = null;
  private subscription: BrokerSubscription | null = null;
  private started = false;
  private finished = false;
  /** A client that brought no id asked for nothing it could have missed. */
  private fresh = true;

  constructor(
    private readonly environ: Environ,
    private readonly topic: string,
    private readonly options: SseTopicOptions,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<SseMessage, undefined>> {
    if (this.queue !== null && this.queue.length > 0) return Promise.resolve(this.take());
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    if (!this.started) {
      this.started = true;
      return Promise.resolve({ done: false, value: { retry: this.options.retryMs ?? DEFAULT_SSE_RETRY_MS } });
    }
    if (this.subscription === null) {
      return this.subscribe().then(
        () => this.next(),
        (err: unknown) => this.fail(err),
      );
    }
    return this.subscription.next().then(
      (result) => this.answer(result),
      (err: unknown) => this.fail(err),
    );
  }

  return(): Promise<IteratorResult<SseMessage, undefined>> {
    this.queue = null;
    return Promise.resolve(this.finish());
  }

  /** subscribe finds where the client starts and subscribes from there. */
  private async subscribe(): Promise<void> {
    const { environ, options } = this;
    const broker = options.broker ?? defaultBroker();
    const sent = lastEventId(environ);
    let cursor: string;
    if (sent !== undefined && sent !== '' && isCursor(sent)) {
      cursor = sent;
      this.fresh = false;
    } else {
      // No id, or one this broker never made (garbled, or from another system): start afresh, and
      // if the client claimed a position, tell it the thread is broken.
      if (sent !== undefined && sent !== '') this.enqueue(missedNotice(environ, options));
      cursor = options.from === 'beginning' ? BEGINNING : (await broker.read(this.topic, LATEST)).lastId;
    }
    if (this.finished) return;
    // One subscription for the stream's life: no registration, listener or read per event.
    this.subscription = subscribeTo(broker, this.topic, cursor, { signal: environ['nsgi.signal'] });
  }

  /** answer turns an answer of the subscription into events, and hands over the first. */
  private answer(result: IteratorResult<ReadResult, undefined>): IteratorResult<SseMessage, undefined> {
    if (result.done === true) return this.finish();
    if (result.value.missed && !this.fresh) this.enqueue(missedNotice(this.environ, this.options));
    this.fresh = false;
    const event = this.options.event;
    const entries = result.value.entries;
    if (this.queue === null && entries.length === 1) {
      // The usual answer, one entry and no notice: no queue.
      const entry = entries[0] as BrokerEntry;
      return { done: false, value: event === undefined ? { id: entry.id, data: entry.data } : { id: entry.id, event, data: entry.data } };
    }
    this.enqueue(entries.map((entry): SseMessage => (event === undefined ? { id: entry.id, data: entry.data } : { id: entry.id, event, data: entry.data })));
    return this.take();
  }

  /** fail ends the stream: quietly when the client left, with a line when the broker failed, else with the error. */
  private fail(err: unknown): IteratorResult<SseMessage, undefined> {
    this.finish();
    if (this.environ['nsgi.signal'].aborted) return { done: true, value: undefined };
    if (!(err instanceof BrokerError)) throw err;
    this.environ['nsgi.errors'].write(`sse: the stream of topic ${JSON.stringify(this.topic)} ends: ${err.message}`);
    // Notices made before the failure still go out, as a generator's earlier yields would have.
    return this.queue !== null && this.queue.length > 0 ? this.take() : { done: true, value: undefined };
  }

  private enqueue(messages: Iterable<SseMessage>): void {
    const queue = (this.queue ??= []);
    for (const message of messages) queue.push(message);
  }

  /** take hands over the oldest queued message (the caller knows there is one). */
  private take(): IteratorResult<SseMessage, undefined> {
    return { done: false, value: (this.queue as SseMessage[]).shift() as SseMessage };
  }

  private finish(): IteratorResult<SseMessage, undefined> {
    this.finished = true;
    void this.subscription?.return();
    return { done: true, value: undefined };
  }
}

function missedNotice(environ: Environ, options: SseTopicOptions): Iterable<SseMessage> {
  if (options.onMissed === undefined) return [{ event: SSE_MISSED_EVENT, data: '' }];
  const made = options.onMissed(environ);
  if (made === undefined) return [];
  return typeof made === 'string' || !Array.isArray(made) ? [made as SseMessage] : (made as readonly SseMessage[]);
}

/** lastEventId is the client's `Last-Event-ID` (the id of the last event it saw before reconnecting), if it sent one. */
export function lastEventId(environ: Environ): string | undefined {
  return environ.HTTP_LAST_EVENT_ID;
}
