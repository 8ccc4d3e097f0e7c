/**
 * The broker suite: every case of `broker-cases.ts` against every backend, plus what only one
 * backend can show (the memory broker's age limit and earlier runs).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { fork, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ClusterBroker } from '../../src/broker/cluster.ts';
import { MemoryBroker } from '../../src/broker/memory.ts';
import { RedisBroker } from '../../src/broker/redis.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { makeId } from '../../src/broker/ids.ts';
import { BROKER_CASES, type Pair } from './broker-cases.ts';

interface Backend {
  readonly name: string;
  open(): Promise<Pair & { close(): Promise<void> }>;
}

let opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  const closing = opened;
  opened = [];
  for (const pair of closing) await pair.close();
});

let redis: RedisServer | undefined;
afterAll(async () => {
  await redis?.remove();
});

let topics = 0;
const uniqueTopic = (name: string): string => `${name}-${process.pid}-${++topics}`;

const BACKENDS: Backend[] = [
  {
    name: 'memory',
    async open() {
      const broker = new MemoryBroker();
      return { a: broker, b: broker, topic: uniqueTopic, close: () => broker.close() };
    },
  },
  {
    name: 'cluster (a real primary process over IPC)',
    async open() {
      const child = fork(fileURLToPath(new URL('./cluster-relay-child.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const a = new ClusterBroker({ channel: child });
      const b = new ClusterBroker({ channel: child });
      await a.ready();
      return {
        a,
        b,
        topic: uniqueTopic,
        async close() {
          await a.close();
          await b.close();
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.disconnect();
          await exited;
        },
      };
    },
  },
  {
    name: 'redis (a real redis-server, two clients as two processes would have)',
    async open() {
      redis ??= await startRedis();
      const a = new RedisBroker({ url: redis.url });
      const b = new RedisBroker({ url: redis.url });
      await a.ready();
      await b.ready();
      return {
        a,
        b,
        topic: uniqueTopic,
        async close() {
          await a.close();
          await b.close();
          expect(a.watched + b.watched).toBe(0);
        },
      };
    },
  },
];

describe.each(BACKENDS.map((backend) => ({ backend, name: backend.name })))('broker on $name', ({ backend }: { backend: Backend }) => {
  for (const c of BROKER_CASES) {
    it(c.name, async () => {
      const pair = await backend.open();
      opened.push(pair);
      await c.run(pair);
      expect(pair.a.waiting() + pair.b.waiting()).toBe(0);
    });
  }
});

describe('memory broker', () => {
  it('BR-4, BR-8: drops entries older than maxAgeMs and says so to a reader that had not seen them', async () => {
    let now = 1_000_000;
    const broker = new MemoryBroker({ maxAgeMs: 1000, now: () => now });
    const first = await broker.publish('t', 'old');
    now += 600;
    await broker.publish('t', 'middle');
    now += 600;
    const third = await broker.publish('t', 'new');
    expect(await broker.read('t', first)).toEqual({ entries: [{ id: expect.any(String), data: 'middle' }, { id: third, data: 'new' }], lastId: third, missed: false });
    now += 5000;
    expect(await broker.read('t', first)).toEqual({ entries: [], lastId: third, missed: true });
    expect(await broker.read('t', third)).toEqual({ entries: [], lastId: third, missed: false });
  });

  it('BR-2, BR-4: a reader bringing an id of an earlier run gets the kept entries with missed: true', async () => {
    const broker = new MemoryBroker();
    const earlier = makeId(Date.now() - 60_000, 7);
    expect(await broker.read('t', earlier)).toEqual({ entries: [], lastId: '0', missed: true });
    const id = await broker.publish('t', 'x');
    expect(id > earlier).toBe(true);
    expect(await broker.read('t', earlier)).toEqual({ entries: [{ id, data: 'x' }], lastId: id, missed: true });
    const wait = broker.wait('t', id, { timeoutMs: 1000 });
    const next = await broker.publish('t', 'y');
    expect(await wait).toEqual({ entries: [{ id: next, data: 'y' }], lastId: next, missed: false });
    await broker.close();
  });
});

describe('cluster broker', () => {
  it('BR-7: fails with an error that says why when there is no primary relay or no IPC channel at all', async () => {
    // A primary that listens on its channel but runs no relay.
    const child = spawn(process.execPath, ['-e', 'process.on("message", () => {})'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const silent = new ClusterBroker({ channel: child, requestTimeoutMs: 200 });
    await expect(silent.ready()).rejects.toThrow(/did not answer a broker ping within 200 ms; a custom primary must call startBrokerRelay\(\)/);
    await expect(silent.publish('t', 'x')).rejects.toMatchObject({ code: 'unavailable' });
    await silent.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill();
    await exited;
    const alone = new ClusterBroker({ channel: { on() {}, off() {} } });
    await expect(alone.ready()).rejects.toMatchObject({ code: 'config', message: expect.stringMatching(/only in a node:cluster worker/) });
  });
});
