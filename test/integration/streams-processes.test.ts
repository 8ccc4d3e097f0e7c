/**
 * The stream examples over real processes: `nsgi --workers 2` (the cluster broker), and two nsgi
 * instances sharing a real redis-server (the Redis broker), including a full restart of every nsgi
 * process and a Redis that dies and comes back. Every request and stream is a connection of its
 * own, so they spread over the workers; `X-Served-By` shows that they did.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { killAllClis, runCli, startCli, type RunningCli } from '../helpers/spawn-cli.ts';
import { closeStreams, events, expectOrderedIds, joinRoom, pollAll, publish, request, roomSocket, send, sleep, until } from '../helpers/stream-clients.ts';
import { closeWebSockets } from '../helpers/ws-client.ts';

const APP = 'test/fixtures/streams.ts';

const redises: RedisServer[] = [];
afterEach(async () => {
  closeStreams();
  closeWebSockets();
  await killAllClis();
  for (const server of redises.splice(0)) await server.remove();
});

/** startWorkers starts `nsgi --workers 2` and resolves once both workers have answered a request. */
async function startWorkers(): Promise<RunningCli> {
  const running = await startCli([APP, '--port', '0', '--workers', '2']);
  const seen = new Set<string>();
  const deadline = Date.now() + 20_000;
  while (seen.size < 2 && Date.now() < deadline) {
    const reply = await request(`${running.url}/feed/nowhere`);
    if (reply.servedBy !== undefined) seen.add(reply.servedBy);
  }
  expect(seen.size).toBe(2);
  return running;
}

describe('nsgi --workers 2 (cluster broker)', () => {
  it('chat: messages sent to either worker reach every poller in one order with unique ids', { timeout: 60_000 }, async () => {
    const { url } = await startWorkers();
    const pollers = Array.from({ length: 4 }, () => pollAll(url, 4));
    await sleep(500);
    const sent: Array<{ id: string; servedBy: string | undefined }> = [];
    for (const text of ['one', 'two', 'three', 'four']) sent.push(await send(url, text));
    const results = await Promise.all(pollers);
    const ids = sent.map((s) => s.id);
    expectOrderedIds(ids);
    for (const { messages } of results) expect(messages).toEqual(ids.map((id, i) => ({ id, text: ['one', 'two', 'three', 'four'][i] })));
    const workers = new Set([...sent.map((s) => s.servedBy), ...results.flatMap((r) => [...r.servedBy])]);
    expect(workers.size).toBe(2);
  });

  it('SSE: a client reconnecting with Last-Event-ID to either worker gets exactly the events after it', { timeout: 60_000 }, async () => {
    const { url } = await startWorkers();
    // Last-Event-ID 0: from the oldest kept event, so none is missed however late the stream starts.
    const first = await events(`${url}/feed/events`, '0');
    const ids: string[] = [];
    for (const text of ['a', 'b', 'c']) ids.push(await publish(url, text));
    expectOrderedIds(ids);
    expect((await first.until(3)).map((e) => [e.id, e.data])).toEqual([[ids[0], 'a'], [ids[1], 'b'], [ids[2], 'c']]);
    first.close();
    const servedBy = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const again = await events(`${url}/feed/events`, ids[0]);
      servedBy.add(again.headers['x-served-by'] as string);
      expect((await again.until(2)).map((e) => [e.id, e.data])).toEqual([[ids[1], 'b'], [ids[2], 'c']]);
      again.close();
    }
    expect(servedBy.size).toBe(2);
  });

  it('a worker that dies is replaced, and the new one serves the same history: the primary keeps it', { timeout: 60_000 }, async () => {
    const { url, cli } = await startWorkers();
    const one = await send(url, 'before the crash');
    const victim = Number(one.servedBy);
    process.kill(victim, 'SIGKILL');
    // A connection node:cluster hands to a worker it has not yet seen die is lost, so wait for the
    // primary to notice (it says so) before connecting again.
    await until(() => cli.stderr.includes(`worker ${victim} died`), 'the primary to notice the dead worker');
    // Until the replacement listens, the survivor takes every connection; then both answer again.
    const seen = new Set<string>();
    const deadline = Date.now() + 20_000;
    while (seen.size < 2 && Date.now() < deadline) {
      const reply = await request(`${url}/feed/nowhere`);
      if (reply.servedBy !== undefined && Number(reply.servedBy) !== victim) seen.add(reply.servedBy);
    }
    expect(seen.size).toBe(2);
    const two = await send(url, 'after the crash');
    for (let i = 0; i < 4; i++) {
      const { messages } = await pollAll(url, 2);
      expect(messages).toEqual([{ id: one.id, text: 'before the crash' }, { id: two.id, text: 'after the crash' }]);
    }
  });

  it('WebSocket room: a message sent on one worker reaches the sockets on both', { timeout: 60_000 }, async () => {
    const { url } = await startWorkers();
    const peers = await Promise.all(Array.from({ length: 4 }, () => roomSocket(url)));
    await joinRoom(peers);
    peers[0]!.ws.send('hello from 0');
    peers[3]!.ws.send('hello from 3');
    await until(() => peers.every((p) => p.received.length === 2), 'both messages at every socket');
    const orders = peers.map((p) => p.received.join('|'));
    expect(new Set(orders).size).toBe(1);
  });
});

describe('two nsgi instances sharing Redis', () => {
  async function pair(redis: RedisServer): Promise<[RunningCli, RunningCli]> {
    return Promise.all([startCli([APP, '--port', '0', '--broker', redis.url]), startCli([APP, '--port', '0', '--broker', redis.url])]);
  }

  it('chat, SSE and the room are one across instances, and SSE resumes from Last-Event-ID after every nsgi restarts', { timeout: 90_000 }, async () => {
    const redis = await startRedis({ aof: true });
    redises.push(redis);
    let [a, b] = await pair(redis);

    const polling = pollAll(b.url, 2);
    await sleep(300);
    const one = await send(a.url, 'one');
    const two = await send(b.url, 'two');
    expect((await polling).messages).toEqual([{ id: one.id, text: 'one' }, { id: two.id, text: 'two' }]);

    const listener = await events(`${b.url}/feed/events`, '0');
    const room = await Promise.all([roomSocket(a.url), roomSocket(b.url)]);
    await joinRoom(room);
    const ids = [await publish(a.url, 'x'), await publish(b.url, 'y'), await publish(a.url, 'z')];
    expectOrderedIds(ids);
    expect((await listener.until(3)).map((e) => e.data)).toEqual(['x', 'y', 'z']);
    room[0].ws.send('across');
    await until(() => room.every((r) => r.received.includes('across')), 'the room message on both instances');
    const resumed = await events(`${a.url}/feed/events`, ids[0]);
    expect((await resumed.until(2)).map((e) => [e.id, e.data])).toEqual([[ids[1], 'y'], [ids[2], 'z']]);

    // Every nsgi process goes; Redis stays. New processes replay from the client's id.
    closeStreams();
    closeWebSockets();
    await killAllClis();
    [a, b] = await pair(redis);
    const afterRestart = await events(`${b.url}/feed/events`, ids[1]);
    expect((await afterRestart.until(1)).map((e) => [e.id, e.data])).toEqual([[ids[2], 'z']]);
    const next = await publish(a.url, 'fresh');
    expect((await afterRestart.until(2))[1]).toEqual({ type: 'message', id: next, data: 'fresh' });
    expect(next > ids[2]!).toBe(true);
  });

  it('Redis dies: streams end, polls and sends answer 503 at once, other routes serve; Redis back: everything resumes', { timeout: 90_000 }, async () => {
    const redis = await startRedis({ aof: true });
    redises.push(redis);
    const [a] = await pair(redis);
    const before = await publish(a.url, 'before');
    const listener = await events(`${a.url}/feed/events`);
    await sleep(300);

    await redis.stop(true);
    await listener.ended;
    const started = Date.now();
    const poll = await request(`${a.url}/chat/poll?since=0`);
    expect(poll.status).toBe(503);
    expect(poll.body).toMatch(/unavailable: .*Redis at redis:\/\/127\.0\.0\.1:\d+\/0/);
    expect((await request(`${a.url}/chat/send`, { method: 'POST', body: 'lost?' })).status).toBe(503);
    expect((await request(`${a.url}/feed/publish`, { method: 'POST', body: 'lost?' })).status).toBe(503);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await request(`${a.url}/nowhere`)).status).toBe(404);

    await redis.restart();
    let after: string | undefined;
    const deadline = Date.now() + 15_000;
    while (after === undefined && Date.now() < deadline) {
      const reply = await request(`${a.url}/feed/publish`, { method: 'POST', body: 'after' });
      if (reply.status === 200) after = (JSON.parse(reply.body) as { id: string }).id;
      else await sleep(200);
    }
    expect(after).toBeDefined();
    const resumed = await events(`${a.url}/feed/events`, before);
    expect((await resumed.until(1)).map((e) => [e.id, e.data])).toEqual([[after, 'after']]);
  });

  it('refuses to start when Redis is down, saying so', { timeout: 30_000 }, async () => {
    const redis = await startRedis();
    const url = redis.url;
    await redis.remove();
    const result = await runCli([APP, '--port', '0', '--broker', url]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^nsgi: cannot start the stream broker: cannot reach Redis at ${url.replace(/[./]/g, '\\$&')}: connect ECONNREFUSED`, 'm'));
  });
});
