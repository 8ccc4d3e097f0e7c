/**
 * chat: a chat room over long polling, with a {@link Topic} as its message log.
 *
 *   POST /send           publishes a message: JSON `{"name": "...", "text": "..."}` or plain text
 *                        (at most 4 KiB); answers `{"id": "..."}`
 *   GET  /poll?since=ID  answers the messages after ID (`0` for all kept) at once, or waits for
 *                        the next one up to 25 s and then answers 204 No Content; poll again with
 *                        the `lastId` of the answer
 *
 * The room lives on the process's broker, so it is one room however it is served: one process,
 * `nsgi --workers 2` (the primary keeps the log), or several instances with `--broker
 * redis://...`. Every poller sees every message once, in one order, with one id sequence;
 * `missed: true` says that messages after the poller's id are no longer kept.
 *
 * The wait honours `nsgi.signal`: a client that leaves, or a server that shuts down, ends it at
 * once, and the topic forgets the waiter (`topic.waiterCount`). The body is read from `nsgi.input`
 * chunk by chunk and refused with 413 as soon as it passes the limit, without reading the rest.
 *
 *   node bin/nsgi.js examples/chat.ts --workers 2
 *   curl -N 'http://127.0.0.1:8000/poll?since=0' &
 *   curl -d 'hello' http://127.0.0.1:8000/send
 */

import type { App, Body, Environ, StartResponse } from '../protocol/nsgi.ts';
import { isCursor } from '../src/broker/ids.ts';
import { BrokerError, type Broker } from '../src/broker/types.ts';
import { Topic } from '../src/helpers/longpoll.ts';

/** POLL_TIMEOUT_MS is how long a poll waits for a message before answering 204: 25 s, below common 30 s proxy timeouts. */
export const POLL_TIMEOUT_MS = 25_000;

/** MAX_MESSAGE_BYTES bounds a POST /send body: 4 KiB. */
export const MAX_MESSAGE_BYTES = 4096;

/** Message is one chat message as the topic keeps it. */
export interface Message {
  readonly name: string;
  readonly text: string;
  /** When the server received it, ISO 8601. */
  readonly at: string;
}

/** ChatOptions configures {@link createChat}. */
export interface ChatOptions {
  /** Milliseconds a poll waits before 204; default {@link POLL_TIMEOUT_MS}. */
  pollTimeoutMs?: number;
  /** Largest accepted body of POST /send; default {@link MAX_MESSAGE_BYTES}. */
  maxMessageBytes?: number;
  /** The room's topic name; rooms of one name share their messages in every process. */
  name?: string;
  /** The broker; default: the process's. */
  broker?: Broker;
}

/** Chat is one chat room: its app and the topic behind it. */
export interface Chat {
  readonly app: App;
  readonly topic: Topic<Message>;
}

/** createChat makes a chat room with its own message log. */
export function createChat(options: ChatOptions = {}): Chat {
  const topic = new Topic<Message>({ capacity: 500, ...(options.name !== undefined && { name: options.name }), ...(options.broker !== undefined && { broker: options.broker }) });
  const pollTimeoutMs = options.pollTimeoutMs ?? POLL_TIMEOUT_MS;
  if (typeof pollTimeoutMs !== 'number' || !(pollTimeoutMs >= 0)) throw new RangeError(`pollTimeoutMs must be milliseconds, 0 or more, got ${String(pollTimeoutMs)}`);
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;

  const app: App = async (environ, startResponse) => {
    const method = environ.REQUEST_METHOD;
    switch (environ.PATH_INFO) {
      case '/send':
        if (method !== 'POST') return methodNotAllowed(startResponse, 'POST');
        return send(environ, startResponse);
      case '/poll':
        if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(startResponse, 'GET, HEAD');
        return poll(environ, startResponse);
      default:
        return text(startResponse, '404 Not Found', `Not Found: ${environ.PATH_INFO}\nThis chat answers POST /send and GET /poll?since=N.\n`);
    }
  };

  async function send(environ: Environ, startResponse: StartResponse): Promise<Body> {
    const body = await readBounded(environ, maxBytes);
    if (body === undefined) return text(startResponse, '413 Content Too Large', `A message is at most ${maxBytes} bytes\n`);
    const message = parseMessage(environ.CONTENT_TYPE ?? '', body);
    if (typeof message === 'string') return text(startResponse, '400 Bad Request', `${message}\n`);
    let id: string;
    try {
      id = await topic.publish({ ...message, at: new Date().toISOString() });
    } catch (err) {
      if (err instanceof BrokerError) return unavailable(startResponse, err);
      throw err;
    }
    return json(startResponse, '200 OK', { id });
  }

  async function poll(environ: Environ, startResponse: StartResponse): Promise<Body> {
    const asked = new URLSearchParams(environ.QUERY_STRING).get('since') ?? '0';
    if (!isCursor(asked)) return text(startResponse, '400 Bad Request', `since must be 0 or the lastId of an answer, got ${JSON.stringify(asked)}\n`);
    const signal = environ['nsgi.signal'];
    let result;
    try {
      result = await topic.waitFor(asked, { timeoutMs: pollTimeoutMs, signal });
    } catch (err) {
      // The broker lost its connection (Redis down): the client retries after a second.
      if (err instanceof BrokerError) return unavailable(startResponse, err);
      if (!signal.aborted) throw err;
      // The client left (nobody reads this) or the server is closing: tell it to come back.
      startResponse('503 Service Unavailable', [['Retry-After', '1'], ['Content-Length', '0']]);
      return [];
    }
    if (result === 'timeout') {
      startResponse('204 No Content', [['Cache-Control', 'no-store']]);
      return [];
    }
    return json(startResponse, '200 OK', { messages: result.items.map(({ id, value }) => ({ id, ...value })), lastId: result.lastId, missed: result.missed });
  }

  return { app, topic };
}

/**
 * readBounded reads the request body as it arrives and returns it, or undefined as soon as it
 * passes `max` bytes; a declared Content-Length above `max` is refused before reading.
 */
async function readBounded(environ: Environ, max: number): Promise<Uint8Array | undefined> {
  if (environ.CONTENT_LENGTH !== undefined && Number(environ.CONTENT_LENGTH) > max) return undefined;
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of environ['nsgi.input']) {
    size += part.length;
    if (size > max) return undefined;
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/** parseMessage reads a JSON `{name?, text}` or a plain-text body; a string is what is wrong with it. */
function parseMessage(contentType: string, body: Uint8Array): { name: string; text: string } | string {
  const raw = new TextDecoder().decode(body);
  let name = 'anonymous';
  let said: unknown = raw;
  if (/^application\/json\b/i.test(contentType)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return 'The body is not valid JSON';
    }
    if (parsed === null || typeof parsed !== 'object') return 'The JSON body must be an object: {"name": "...", "text": "..."}';
    const fields = parsed as { name?: unknown; text?: unknown };
    said = fields.text;
    if (fields.name !== undefined) {
      if (typeof fields.name !== 'string') return 'name must be a string';
      name = fields.name.trim().slice(0, 40) || 'anonymous';
    }
  }
  if (typeof said !== 'string' || said.trim() === '') return 'A message needs some text';
  return { name, text: said };
}

/** unavailable answers 503 for a broker that cannot serve now; the poller's next try may reach it. */
function unavailable(startResponse: StartResponse, err: BrokerError): Body {
  return text(startResponse, '503 Service Unavailable', `The message log is unavailable: ${err.message}\n`, [['Retry-After', '1']]);
}

function methodNotAllowed(startResponse: StartResponse, allow: string): Body {
  const message = `Method not allowed; use ${allow}\n`;
  startResponse('405 Method Not Allowed', [['Allow', allow], ['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(Buffer.byteLength(message))]]);
  return [message];
}

function text(startResponse: StartResponse, status: string, message: string, extra: Array<[string, string]> = []): Body {
  startResponse(status, [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(Buffer.byteLength(message))], ...extra]);
  return [message];
}

function json(startResponse: StartResponse, status: string, value: unknown): Body {
  const body = JSON.stringify(value);
  startResponse(status, [['Content-Type', 'application/json'], ['Cache-Control', 'no-store'], ['Content-Length', String(Buffer.byteLength(body))]]);
  return [body];
}

/** chat is the room `app` serves. */
export const chat: Chat = createChat({ name: 'chat' });

/** app is the chat room, for `nsgi examples/chat.ts`. */
export const app: App = chat.app;

export default app;
