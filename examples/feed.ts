/**
 * feed: a server-sent event feed on a broker topic, one order for every reader however it is
 * served.
 *
 *   POST /publish   publishes the body (text, at most 4 KiB) as the next event; answers `{"id": "..."}`
 *   GET  /events    the event stream: `retry:` first, then every event published after the
 *                   client came; a client that reconnects with `Last-Event-ID` (every browser's
 *                   EventSource does) gets exactly the events after it, from any worker or
 *                   instance on the same broker, and an event of type `missed` when they are no
 *                   longer kept
 *
 *   node bin/nsgi.js examples/feed.ts --workers 2
 *   curl -N http://127.0.0.1:8000/events &
 *   curl -d 'hello' http://127.0.0.1:8000/publish
 */
import type { App, Body, StartResponse } from '../protocol/nsgi.ts';
import { BrokerError } from '../src/broker/types.ts';
import { defaultBroker } from '../src/broker/default.ts';
import { sseTopic } from '../src/helpers/sse.ts';

/** FEED_TOPIC is the broker topic of the feed. */
export const FEED_TOPIC = 'feed';

/** MAX_EVENT_BYTES bounds a published event: 4 KiB. */
export const MAX_EVENT_BYTES = 4096;

/** FEED_CAPACITY is how many events the feed keeps for readers that reconnect. */
export const FEED_CAPACITY = 1000;

const events = sseTopic(FEED_TOPIC);

/** app serves the feed. */
export const app: App = async (environ, startResponse) => {
  const method = environ.REQUEST_METHOD;
  if (environ.PATH_INFO === '/events') {
    if (method !== 'GET' && method !== 'HEAD') return text(startResponse, '405 Method Not Allowed', 'Use GET\n', [['Allow', 'GET, HEAD']]);
    return events(environ, startResponse);
  }
  if (environ.PATH_INFO === '/publish') {
    if (method !== 'POST') return text(startResponse, '405 Method Not Allowed', 'Use POST\n', [['Allow', 'POST']]);
    const parts: Uint8Array[] = [];
    let size = 0;
    for await (const part of environ['nsgi.input']) {
      size += part.length;
      if (size > MAX_EVENT_BYTES) return text(startResponse, '413 Content Too Large', `An event is at most ${MAX_EVENT_BYTES} bytes\n`);
      parts.push(part);
    }
    try {
      const id = await defaultBroker().publish(FEED_TOPIC, Buffer.concat(parts).toString('utf8'), { capacity: FEED_CAPACITY });
      const body = JSON.stringify({ id });
      startResponse('200 OK', [['Content-Type', 'application/json'], ['Content-Length', String(Buffer.byteLength(body))]]);
      return [body];
    } catch (err) {
      if (!(err instanceof BrokerError)) throw err;
      return text(startResponse, '503 Service Unavailable', `The feed is unavailable: ${err.message}\n`, [['Retry-After', '1']]);
    }
  }
  return text(startResponse, '404 Not Found', 'This feed answers GET /events and POST /publish\n');
};

function text(startResponse: StartResponse, status: string, message: string, extra: Array<[string, string]> = []): Body {
  startResponse(status, [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(Buffer.byteLength(message))], ...extra]);
  return [message];
}

export default app;
