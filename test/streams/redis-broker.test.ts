/**
 * What only the Redis broker shows, against a real redis-server the test starts and stops: a clear
 * error when Redis is down at start, two connections per process however many clients wait, a
 * Redis killed under waiting clients (bounded failure, nothing hangs), and service resumed after
 * a restart with the history kept (AOF).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LATEST } from '../../src/broker/ids.ts';
import { RedisBroker } from '../../src/broker/redis.ts';
import { sseTopic } from '../../src/helpers/sse.ts';
import { websocketApp } from '../../src/websocket.ts';
import { WebSocketTopics } from '../../src/websocket-topics.ts';
import { openEventStream } from '../helpers/event-stream.ts';
import { cleanup, startServer, waitUntil } from '../helpers/server.ts';
import { closeWebSockets, connectWebSocket } from '../helpers/ws-client.ts';
import { BrokerError } from '../../src/broker/types.ts';
import { freePort, startRedis, type RedisServer } from '../helpers/redis.ts';
import { settledWithin, until } from './broker-cases.ts';

const servers: RedisServer[] = [];
const brokers: RedisBroker[] = [];
afterEach(async () => {
  closeWebSockets();
  await cleanup();
  for (const broker of brokers.splice(0)) await broker.close();
  for (const server of servers.splice(0)) await server.remove();
});

async function redis(options: { aof?: boolean } = {}): Promise<RedisServer> {
  const server = await startRedis(options);
  servers.push(server);
  return server;
}

function broker(url: string): RedisBroker {
  const made = new RedisBroker({ url });
  brokers.push(made);
  return made;
}

/** clientCount asks Redis how many connections it has, less the one asking. */
async function clientCount(url: string): Promise<number> {
  const probe = broker(url);
  await probe.ready();
  const list = (await (probe as unknown as { command: { call(...args: string[]): Promise<string> } }).command.call('client', 'list')).trim().split('\n');
  await probe.close();
  return list.length - 2;
}

describe('Redis broker', () => {
  it('fails at start with an error naming the address and the cause when Redis is down', async () => {
    const port = await freePort();
    const down = broker(`redis://127.0.0.1:${port}/0`);
    const started = Date.now();
    const failure = await down.ready().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(BrokerError);
    expect((failure as BrokerError).code).toBe('unavailable');
    expect((failure as Error).message).toBe(`cannot reach Redis at redis://127.0.0.1:${port}/0: connect ECONNREFUSED 127.0.0.1:${port}`);
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(down.publish('t', 'x')).rejects.toThrow(/cannot reach Redis/);
  });

  it('refuses a URL that is not Redis, or a database that is not a number, naming it', () => {
    expect(() => new RedisBroker({ url: 'http://127.0.0.1:6379' })).toThrow(/not a Redis URL: "http:\/\/127.0.0.1:6379"/);
    expect(() => new RedisBroker({ url: 'redis://127.0.0.1:6379/db' })).toThrow(/database must be a number, got "db"/);
    expect(() => new RedisBroker({ url: 'redis://:secret@127.0.0.1:1/0' })).not.toThrow();
  });

  it('never shows the password of the URL in an error', async () => {
    const port = await freePort();
    const down = broker(`redis://:hunter2@127.0.0.1:${port}/0`);
    const failure = (await down.ready().catch((err: unknown) => err)) as Error;
    expect(failure.message).toContain(`redis://:***@127.0.0.1:${port}/0`);
    expect(failure.message).not.toContain('hunter2');
  });

  it('BR-6: holds two connections however many clients wait on however many topics, and lets go of each topic', async () => {
    const server = await redis();
    const shared = broker(server.url);
    await shared.ready();
    // One signal per wait, as one per request in an app.
    const controllers = Array.from({ length: 60 }, () => new AbortController());
    const waits = controllers.map((controller, i) => shared.wait(`t${i % 3}`, undefined, { timeoutMs: 60_000, signal: controller.signal }).catch(() => 'aborted'));
    await until(() => shared.waiting() === 60 && shared.watched === 3);
    expect(await clientCount(server.url)).toBe(2);
    const id = await shared.publish('t1', 'one');
    await until(() => shared.waiting() === 40);
    for (const controller of controllers) controller.abort();
    expect(await Promise.all(waits)).toEqual(Array.from({ length: 60 }, (_, i) => (i % 3 === 1 ? { entries: [{ id, data: 'one' }], lastId: id, missed: false } : 'aborted')));
    expect(shared.waiting()).toBe(0);
    expect(shared.watched).toBe(0);
  });

  it('BR-7: rejects waiting clients, publishes and reads at once when Redis dies, and resumes with the history after a restart', { timeout: 30_000 }, async () => {
    const server = await redis({ aof: true });
    const a = broker(server.url);
    const b = broker(server.url);
    await a.ready();
    await b.ready();
    const first = await a.publish('news', 'before the crash');
    const waits = Array.from({ length: 5 }, () => b.wait('news', first, { timeoutMs: 60_000 }));
    await until(() => b.waiting('news') === 5);

    const outcomes = waits.map((wait) => wait.then(() => 'answered', (err: unknown) => err));
    await server.stop(true);
    for (const outcome of outcomes) {
      expect(await settledWithin(outcome, 3000)).toBe(true);
      expect(await outcome).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/^lost the connection to Redis at redis:\/\/127\.0\.0\.1:\d+\/0/) });
    }
    expect(b.waiting()).toBe(0);
    const publishing = a.publish('news', 'during');
    expect(await settledWithin(publishing, 3000)).toBe(true);
    await expect(publishing).rejects.toBeInstanceOf(BrokerError);
    await expect(b.wait('news', first, { timeoutMs: 60_000 })).rejects.toBeInstanceOf(BrokerError);

    await server.restart();
    let second: string | undefined;
    const deadline = Date.now() + 10_000;
    while (second === undefined && Date.now() < deadline) {
      second = await a.publish('news', 'after the restart').catch(() => undefined);
      if (second === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(second).toBeDefined();
    expect(await b.read('news', first)).toEqual({ entries: [{ id: second, data: 'after the restart' }], lastId: second, missed: false });
    expect((await b.read('news')).entries.map((e) => e.data)).toEqual(['before the crash', 'after the restart']);
    const wait = b.wait('news', second, { timeoutMs: 10_000 });
    await until(() => b.waiting('news') === 1);
    const third = await a.publish('news', 'live again');
    expect(await wait).toEqual({ entries: [{ id: third, data: 'live again' }], lastId: third, missed: false });
  });

  it('BR-6: event streams and WebSocket subscribers that leave release their waits and the topics of the blocking read', { timeout: 30_000 }, async () => {
    const server = await redis();
    const shared = broker(server.url);
    await shared.ready();
    const topics = new WebSocketTopics({ broker: shared });
    const sse = sseTopic('feed', { broker: shared });
    const { url } = await startServer((environ, startResponse) =>
      environ.PATH_INFO === '/ws' ? websocketApp((ws) => topics.subscribe(ws, 'room'))(environ, startResponse) : sse(environ, startResponse),
    );
    const streams = await Promise.all(Array.from({ length: 20 }, () => openEventStream(`${url}/events`)));
    const peers = await Promise.all(Array.from({ length: 10 }, () => connectWebSocket(`${url.replace('http', 'ws')}/ws`)));
    await waitUntil(() => shared.waiting('feed') === 20 && shared.waiting('room') === 1 && shared.watched === 2, '20 streams and one room follower waiting');
    const id = await shared.publish('feed', 'to all');
    await shared.publish('room', 'hello room');
    for (const stream of streams) expect(await stream.until(1)).toEqual([{ type: 'message', data: 'to all', id }]);
    await waitUntil(() => peers.every((p) => p.received.length === 1), 'the room message at every socket');
    for (const stream of streams) stream.close();
    closeWebSockets();
    await waitUntil(() => shared.waiting() === 0 && topics.subscribers() === 0 && topics.following === 0, 'every wait and subscription to go');
    expect(shared.watched).toBe(0);
    expect(await clientCount(server.url)).toBe(2);
  });

  it('BR-4: tells a reader whose history Redis lost (restarted without persistence) that it missed entries', { timeout: 30_000 }, async () => {
    const server = await redis();
    const a = broker(server.url);
    await a.ready();
    const lost = await a.publish('news', 'kept only in memory');
    await server.stop(true);
    await server.restart();
    let fresh: string | undefined;
    const deadline = Date.now() + 10_000;
    while (fresh === undefined && Date.now() < deadline) {
      fresh = await a.read('other', lost).then(
        () => 'reconnected',
        () => undefined,
      );
      if (fresh === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await a.read('news', lost)).toEqual({ entries: [], lastId: '0', missed: true });
    expect(await a.read('news', LATEST)).toEqual({ entries: [], lastId: '0', missed: false });
    const id = await a.publish('news', 'after the loss');
    expect(await a.read('news', lost)).toEqual({ entries: [{ id, data: 'after the loss' }], lastId: id, missed: true });
    expect(await a.read('news')).toEqual({ entries: [{ id, data: 'after the loss' }], lastId: id, missed: false });
  });
});
