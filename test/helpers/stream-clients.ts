/**
 * Clients of the stream examples (`test/fixtures/streams.ts`) for the multi-process tests: every
 * request on a connection of its own, so requests spread over workers and instances, and the
 * serving process's pid (`X-Served-By`) reported with each answer.
 */
import http from 'node:http';
import { expect } from 'vitest';
import { openEventStream, type EventStream } from './event-stream.ts';
import { connectWebSocket, type Peer } from './ws-client.ts';

/** REQUEST_TIMEOUT_MS bounds one request of {@link request}; a long poll answers within 25 s. */
const REQUEST_TIMEOUT_MS = 30_000;

const streams: EventStream[] = [];

/** closeStreams closes every stream {@link events} opened. */
export function closeStreams(): void {
  for (const stream of streams.splice(0)) stream.close();
}

/** Reply is one answer, read whole. */
export interface Reply {
  readonly status: number;
  readonly servedBy: string | undefined;
  readonly body: string;
}

/** request sends one request on a connection of its own. */
export function request(url: string, options: { method?: string; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (text: string) => (body += text));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, servedBy: res.headers['x-served-by'] as string | undefined, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // Nothing here should take long; a request that hangs fails its test with the URL.
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${url} within ${REQUEST_TIMEOUT_MS} ms`)));
    req.end(options.body);
  });
}

/** publish publishes `text` to the feed and answers its id. */
export async function publish(base: string, text: string): Promise<string> {
  const reply = await request(`${base}/feed/publish`, { method: 'POST', body: text });
  expect(reply.status).toBe(200);
  return (JSON.parse(reply.body) as { id: string }).id;
}

/** send posts `text` to the chat and answers its id and the process that took it. */
export async function send(base: string, text: string): Promise<{ id: string; servedBy: string | undefined }> {
  const reply = await request(`${base}/chat/send`, { method: 'POST', body: text });
  expect(reply.status).toBe(200);
  return { id: (JSON.parse(reply.body) as { id: string }).id, servedBy: reply.servedBy };
}

/** ChatMessage is a message as a poll answers it. */
export interface ChatMessage {
  id: string;
  text: string;
}

/** pollAll polls from `since` until `count` messages came, answering them and the processes that served. */
export async function pollAll(base: string, count: number): Promise<{ messages: ChatMessage[]; servedBy: Set<string> }> {
  const messages: ChatMessage[] = [];
  const servedBy = new Set<string>();
  let since = '0';
  const deadline = Date.now() + 15_000;
  while (messages.length < count && Date.now() < deadline) {
    const reply = await request(`${base}/chat/poll?since=${since}`);
    if (reply.servedBy !== undefined) servedBy.add(reply.servedBy);
    if (reply.status === 204) continue;
    expect(reply.status).toBe(200);
    const answer = JSON.parse(reply.body) as { messages: ChatMessage[]; lastId: string; missed: boolean };
    expect(answer.missed).toBe(false);
    messages.push(...answer.messages.map(({ id, text }) => ({ id, text })));
    since = answer.lastId;
  }
  return { messages, servedBy };
}

/** events opens the event stream at `url`, closed by {@link closeStreams}. */
export async function events(url: string, lastEventId?: string): Promise<EventStream> {
  const stream = await openEventStream(url, lastEventId === undefined ? {} : { lastEventId });
  streams.push(stream);
  expect(stream.status).toBe(200);
  return stream;
}

/** roomSocket joins the WebSocket room of the app at `base`. */
export function roomSocket(base: string): Promise<Peer> {
  return connectWebSocket(`${base.replace('http', 'ws')}/ws/room`);
}

/**
 * joinRoom waits until every peer's subscription is live: the first peer sends `probe` messages
 * until each peer has received one (a socket's topic follower starts asynchronously, in whichever
 * process it landed), and then every peer forgets the probes.
 */
export async function joinRoom(peers: readonly Peer[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (let i = 0; !peers.every((p) => p.received.some((m) => m.startsWith('probe'))); i++) {
    if (Date.now() > deadline) throw new Error('the room did not deliver a probe to every socket within 15 s');
    peers[0]!.ws.send(`probe ${i}`);
    await sleep(100);
  }
  // Probes still in flight arrive in order before anything sent after them.
  peers[0]!.ws.send('probe last');
  await until(() => peers.every((p) => p.received.includes('probe last')), 'the last probe at every socket');
  for (const peer of peers) peer.received.splice(0);
}

/** until polls `check` every 20 ms until it holds, failing after `timeoutMs`. */
export async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** sleep resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** expectOrderedIds checks that ids are unique and sort as strings in the order given. */
export function expectOrderedIds(ids: string[]): void {
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(ids);
}

