/**
 * The broker suite: every case of `broker-cases.ts` against every backend, plus what only one
 * backend can show (the memory broker's age limit and earlier runs).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../../src/broker/memory.ts';
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
  it('drops entries older than maxAgeMs and says so to a reader that had not seen them', async () => {
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

  it('a reader bringing an id of an earlier run gets the kept entries with missed: true', async () => {
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
