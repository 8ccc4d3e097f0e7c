/**
 * WebSocket topics on the real server with real `ws` clients: a message reaches every subscriber
 * framed once per process, subscriptions end with their sockets, slow sockets are closed with 1013
 * or skipped as configured, and a compressing socket gets its own frame.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../../src/broker/memory.ts';
import { websocketApp } from '../../src/websocket.ts';
import { CLOSE_TRY_AGAIN_LATER, WebSocketTopics, type WebSocketTopicsOptions } from '../../src/websocket-topics.ts';
import { cleanup, startServer, waitUntil } from '../helpers/server.ts';
import { closeWebSockets, connectWebSocket } from '../helpers/ws-client.ts';

/** MESSAGES bounds the slow-socket loops: 4 MiB each, far more than loopback socket buffers hold. */
const MESSAGES = 12;

afterEach(async () => {
  closeWebSockets();
  await cleanup();
});

/** room serves a WebSocket endpoint whose sockets join topic `room` and publish what they send to it. */
async function room(options: WebSocketTopicsOptions & { perMessageDeflate?: boolean } = {}): Promise<{ url: string; topics: WebSocketTopics; broker: MemoryBroker }> {
  const broker = new MemoryBroker();
  const topics = new WebSocketTopics({ broker, ...options });
  const { url } = await startServer(
    websocketApp(
      (ws) => {
        topics.subscribe(ws, 'room');
        ws.on('message', (data) => void topics.publish('room', String(data)));
      },
      { perMessageDeflate: options.perMessageDeflate ?? false },
    ),
  );
  return { url: url.replace('http', 'ws'), topics, broker };
}

const connect = connectWebSocket;

describe('WebSocketTopics', () => {
  it('delivers a published message to every subscriber, framing it once', async () => {
    const { url, topics } = await room();
    const peers = await Promise.all([connect(url), connect(url), connect(url)]);
    await waitUntil(() => topics.subscribers('room') === 3, 'three subscribers');
    peers[0]!.ws.send('hello');
    peers[1]!.ws.send('world');
    await waitUntil(() => peers.every((p) => p.received.length === 2), 'both messages everywhere');
    for (const peer of peers) expect(peer.received).toEqual(['hello', 'world']);
    expect(topics.stats).toMatchObject({ framed: 2, sent: 6, sentAlone: 0 });
  });

  it('ends a subscription with its socket, and stops the topic follower with the last one', async () => {
    const { url, topics, broker } = await room();
    const peers = await Promise.all(Array.from({ length: 10 }, () => connect(url)));
    await waitUntil(() => topics.subscribers('room') === 10 && broker.waiting() === 1, 'ten subscribers, one follower');
    for (const peer of peers) peer.ws.close();
    await waitUntil(() => topics.subscribers() === 0, 'no subscriber');
    expect(topics.following).toBe(0);
    await waitUntil(() => broker.waiting() === 0, 'the follower wait to be released');
  });

  it('closes a subscriber that stops reading with 1013 under the default policy; the others go on', { timeout: 60_000 }, async () => {
    const { url, topics } = await room({ maxBufferedBytes: 64 * 1024 });
    const fast = await connect(url);
    const slow = await connect(url);
    await waitUntil(() => topics.subscribers('room') === 2, 'two subscribers');
    // The slow client stops reading its socket: the server's unsent bytes for it pile up.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    // The fast client reads each message before the next is published; the slow one's unsent
    // bytes outgrow the kernel's buffers within a few.
    const big = 'x'.repeat(4 * 1024 * 1024);
    for (let i = 0; i < MESSAGES && topics.stats.closedSlow === 0; i++) {
      await topics.publish('room', `${i}${big}`);
      await waitUntil(() => fast.received.length === i + 1, `message ${i} at the fast client`, 10_000);
    }
    expect(topics.stats.closedSlow).toBe(1);
    expect(topics.subscribers('room')).toBe(1);
    await topics.publish('room', 'after');
    await waitUntil(() => fast.received.at(-1) === 'after', 'the fast client to go on');
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const code = await new Promise<number>((resolve) => slow.ws.once('close', resolve));
    expect(code).toBe(CLOSE_TRY_AGAIN_LATER);
  });

  it("skips messages for a slow subscriber under 'drop', and keeps it subscribed", { timeout: 60_000 }, async () => {
    const { url, topics } = await room({ maxBufferedBytes: 64 * 1024, slowSocket: 'drop' });
    const fast = await connect(url);
    const slow = await connect(url);
    await waitUntil(() => topics.subscribers('room') === 2, 'two subscribers');
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big = 'y'.repeat(4 * 1024 * 1024);
    let published = 0;
    for (; published < MESSAGES && topics.stats.dropped === 0; published++) {
      await topics.publish('room', `${published}${big}`);
      await waitUntil(() => fast.received.length === published + 1, `message ${published} at the fast client`, 10_000);
    }
    expect(topics.stats.dropped).toBe(1);
    expect(topics.subscribers('room')).toBe(2);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await waitUntil(() => slow.received.length === published - 1, 'every message that was not dropped', 10_000);
    expect(slow.received.map((m) => m[0])).toEqual(fast.received.slice(0, published - 1).map((m) => m[0]));
  });

  it('sends through ws.send to a socket that negotiated compression', async () => {
    const { url, topics } = await room({ perMessageDeflate: true });
    const plain = await connect(url);
    const compressed = await connect(url, { perMessageDeflate: true });
    await waitUntil(() => topics.subscribers('room') === 2, 'two subscribers');
    await topics.publish('room', 'squeeze me');
    await waitUntil(() => plain.received.length === 1 && compressed.received.length === 1, 'both to receive');
    expect(compressed.received).toEqual(['squeeze me']);
    expect(topics.stats).toMatchObject({ framed: 1, sent: 1, sentAlone: 1 });
  });

  it('refuses bad options with a RangeError naming them, and a bad topic name with a TypeError', () => {
    expect(() => new WebSocketTopics({ maxBufferedBytes: -1 })).toThrow(/maxBufferedBytes/);
    expect(() => new WebSocketTopics({ slowSocket: 'ignore' as 'drop' })).toThrow(/slowSocket/);
    expect(() => new WebSocketTopics().subscribe({ readyState: 1 } as never, '')).toThrow(/a topic name must be a string of 1 to 256 characters, got ""/);
  });
});
