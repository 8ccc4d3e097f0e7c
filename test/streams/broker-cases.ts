/**
 * The broker cases: one list of behaviours that every backend must show, run by `broker.test.ts`
 * against memory, cluster and Redis. Each case gets two brokers on the same log (`a` and `b`: one
 * object for memory, two processes' worth of clients for cluster and Redis), so what one publishes
 * the other must read and be woken by.
 */
import { expect } from 'vitest';
import { LATEST } from '../../src/broker/ids.ts';
import { BEGINNING, BrokerError, type Broker } from '../../src/broker/types.ts';

/** Pair is two brokers on one log and a way to tell topics of different cases apart. */
export interface Pair {
  readonly a: Broker;
  readonly b: Broker;
  /** A topic name no other case uses, so cases on a shared Redis do not see each other. */
  topic(name: string): string;
}

/** BrokerCase is one behaviour. */
export interface BrokerCase {
  readonly name: string;
  run(pair: Pair): Promise<void>;
}

/** settledWithin resolves true when `promise` settles within `ms`, false otherwise, without failing on its rejection. */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false))),
  ]);
  clearTimeout(timer);
  return settled;
}

/** untilZero polls `count` until it reads 0 or a second passes, and answers the last reading. */
export async function untilZero(count: () => number): Promise<number> {
  const deadline = Date.now() + 1000;
  while (count() !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  return count();
}

export const BROKER_CASES: BrokerCase[] = [
  {
    name: 'BR-1, BR-3: ids are unique, sort as strings in publishing order, and read-after answers the entries after an id',
    async run({ a, b, topic }) {
      const t = topic('order');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await (i % 2 === 0 ? a : b).publish(t, `m${i}`));
      expect(new Set(ids).size).toBe(5);
      expect([...ids].sort()).toEqual(ids);
      const all = await b.read(t);
      expect(all).toEqual({ entries: ids.map((id, i) => ({ id, data: `m${i}` })), lastId: ids[4], missed: false });
      expect(await a.read(t, BEGINNING)).toEqual(all);
      expect((await a.read(t, ids[2])).entries.map((e) => e.data)).toEqual(['m3', 'm4']);
      expect(await a.read(t, ids[4])).toEqual({ entries: [], lastId: ids[4], missed: false });
    },
  },
  {
    name: 'BR-3: an empty topic reads as no entries at the beginning',
    async run({ a, topic }) {
      expect(await a.read(topic('empty'))).toEqual({ entries: [], lastId: BEGINNING, missed: false });
    },
  },
  {
    name: 'BR-5: a wait is answered by a publish from the other broker, with exactly the new entry',
    async run({ a, b, topic }) {
      const t = topic('wake');
      const first = await a.publish(t, 'before');
      const waits = [a.wait(t, first, { timeoutMs: 5000 }), b.wait(t, first, { timeoutMs: 5000 }), b.wait(t, first, { timeoutMs: 5000 })];
      await until(() => a.waiting(t) + (a === b ? 0 : b.waiting(t)) === 3);
      const id = await a.publish(t, 'after');
      for (const result of await Promise.all(waits)) expect(result).toEqual({ entries: [{ id, data: 'after' }], lastId: id, missed: false });
      expect(a.waiting(t) + b.waiting(t)).toBe(0);
    },
  },
  {
    name: 'BR-5: a wait after an older id answers at once with everything after it',
    async run({ a, b, topic }) {
      const t = topic('behind');
      const one = await a.publish(t, '1');
      await a.publish(t, '2');
      await a.publish(t, '3');
      const result = await b.wait(t, one, { timeoutMs: 5000 });
      expect(result !== 'timeout' && result.entries.map((e) => e.data)).toEqual(['2', '3']);
    },
  },
  {
    name: 'BR-5, BR-6: a wait with nothing new times out, and leaves no waiter behind',
    async run({ a, topic }) {
      const t = topic('timeout');
      const last = await a.publish(t, 'x');
      const started = Date.now();
      expect(await a.wait(t, last, { timeoutMs: 60 })).toBe('timeout');
      expect(Date.now() - started).toBeGreaterThanOrEqual(50);
      expect(a.waiting(t)).toBe(0);
    },
  },
  {
    name: 'BR-5, BR-6: an aborted wait rejects with the signal reason at once and is released; an aborted signal is refused up front',
    async run({ a, topic }) {
      const t = topic('abort');
      const controllers = Array.from({ length: 20 }, () => new AbortController());
      const waits = controllers.map((c) => a.wait(t, undefined, { timeoutMs: 60_000, signal: c.signal }));
      await until(() => a.waiting(t) === 20);
      for (const c of controllers) c.abort(new Error('client left'));
      for (const wait of waits) await expect(wait).rejects.toThrow('client left');
      expect(a.waiting(t)).toBe(0);
      expect(a.waiting()).toBe(0);
      const aborted = AbortSignal.abort(new Error('already gone'));
      await expect(a.wait(t, undefined, { timeoutMs: 1000, signal: aborted })).rejects.toThrow('already gone');
    },
  },
  {
    name: 'BR-4, BR-8: history is bounded by capacity, and a reader whose id was trimmed is told it missed entries',
    async run({ a, b, topic }) {
      const t = topic('capacity');
      const ids: string[] = [];
      // Redis trims approximately (MAXLEN ~), a whole node of 100 entries at a time: at least
      // the capacity is kept, and past a few nodes, never everything.
      const count = 250;
      for (let i = 0; i < count; i++) ids.push(await a.publish(t, String(i), { capacity: 10 }));
      const all = await b.read(t);
      expect(all.entries.length).toBeGreaterThanOrEqual(10);
      expect(all.entries.length).toBeLessThan(count);
      expect(all.entries.at(-1)).toEqual({ id: ids[count - 1], data: String(count - 1) });
      expect(all.missed).toBe(true);
      const stale = await b.read(t, ids[0]);
      expect(stale.missed).toBe(true);
      expect(stale.entries).toEqual(all.entries);
      const recent = await b.read(t, ids[count - 5]);
      expect(recent).toEqual({ entries: [4, 3, 2, 1].map((back) => ({ id: ids[count - back], data: String(count - back) })), lastId: ids[count - 1], missed: false });
      const waited = await b.wait(t, ids[1], { timeoutMs: 5000 });
      expect(waited !== 'timeout' && waited.missed).toBe(true);
    },
  },
  {
    name: 'BR-3: an id from beyond the latest counts as the latest: the reader waits for the next entry',
    async run({ a, b, topic }) {
      const t = topic('future');
      const last = await a.publish(t, 'now');
      const future = '9999999999999-0000000000000001';
      expect(await b.read(t, future)).toEqual({ entries: [], lastId: last, missed: false });
      expect(await b.read(t, LATEST)).toEqual({ entries: [], lastId: last, missed: false });
      const wait = b.wait(t, future, { timeoutMs: 5000 });
      await until(() => b.waiting(t) === 1);
      const next = await a.publish(t, 'next');
      expect(await wait).toEqual({ entries: [{ id: next, data: 'next' }], lastId: next, missed: false });
    },
  },
  {
    name: 'BR-1, BR-5: many entries published while waiters are spread over old and new ids reach each exactly once, in order',
    async run({ a, b, topic }) {
      const t = topic('burst');
      const start = await a.publish(t, 'start');
      const seen: string[][] = [[], [], []];
      const follow = async (broker: Broker, index: number): Promise<void> => {
        let cursor = start;
        while ((seen[index] as string[]).length < 20) {
          const result = await broker.wait(t, cursor, { timeoutMs: 5000 });
          if (result === 'timeout') throw new Error('a follower timed out');
          for (const entry of result.entries) (seen[index] as string[]).push(entry.data);
          cursor = result.lastId;
        }
      };
      const followers = [follow(a, 0), follow(b, 1), follow(b, 2)];
      for (let i = 0; i < 20; i++) await (i % 3 === 0 ? b : a).publish(t, `e${i}`);
      await Promise.all(followers);
      const expected = Array.from({ length: 20 }, (_, i) => `e${i}`);
      for (const list of seen) expect(list).toEqual(expected);
    },
  },
  {
    name: 'BR-2: bad input is refused with an error naming it: topic, data, cursor, timeout, capacity',
    async run({ a, topic }) {
      await expect(a.publish('', 'x')).rejects.toThrow(/topic name/);
      await expect(a.publish(topic('bad'), { no: 1 } as unknown as string)).rejects.toThrow(/must be a string/);
      await expect(a.read(topic('bad'), 'yesterday')).rejects.toThrow(/"yesterday"/);
      await expect(a.wait(topic('bad'), undefined, { timeoutMs: Number.NaN })).rejects.toThrow(/timeoutMs/);
      await expect(a.publish(topic('bad'), 'x', { capacity: 0 })).rejects.toThrow(/capacity/);
      expect(a.waiting()).toBe(0);
    },
  },
  {
    name: 'BR-9: a subscription hands over every entry after its id, from either broker, in order, exactly once',
    async run({ a, b, topic }) {
      const t = topic('subscribe');
      const start = await a.publish(t, 'start');
      const subscription = (b.subscribe as NonNullable<Broker['subscribe']>)(t, start);
      const seen: string[] = [];
      const following = (async () => {
        for await (const result of subscription) {
          expect(result.entries.length).toBeGreaterThan(0);
          expect(result.lastId).toBe(result.entries.at(-1)?.id);
          for (const entry of result.entries) seen.push(entry.data);
          if (seen.length === 12) break;
        }
      })();
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) ids.push(await (i % 2 === 0 ? a : b).publish(t, `e${i}`));
      await following;
      expect(seen).toEqual(ids.map((_, i) => `e${i}`));
      expect(b.waiting(t)).toBe(0);
    },
  },
  {
    name: 'BR-9: a subscription whose consumer was busy gets what was published meanwhile at its next answers, in order',
    async run({ a, b, topic }) {
      const t = topic('busy');
      const subscription = (b.subscribe as NonNullable<Broker['subscribe']>)(t, undefined);
      const first = subscription.next();
      await until(() => b.waiting(t) === 1);
      await a.publish(t, 'one');
      const firstResult = await first;
      expect(firstResult.done !== true && firstResult.value.entries.map((e) => e.data)).toEqual(['one']);
      // The consumer is busy: nothing asks for the next answer while three more are published.
      for (const word of ['two', 'three', 'four']) await a.publish(t, word);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const later: string[] = [];
      while (later.length < 3) {
        const result = await subscription.next();
        if (result.done === true) throw new Error('the subscription ended');
        expect(result.value.missed).toBe(false);
        for (const entry of result.value.entries) later.push(entry.data);
      }
      expect(later).toEqual(['two', 'three', 'four']);
      expect(await subscription.return()).toEqual({ done: true, value: undefined });
      expect(await subscription.next()).toEqual({ done: true, value: undefined });
      expect(b.waiting(t)).toBe(0);
    },
  },
  {
    name: 'BR-9: an entry published while a subscription reads reaches it, whichever of the two comes first',
    async run({ a, b, topic }) {
      const t = topic('overtaken');
      const subscribe = b.subscribe as NonNullable<Broker['subscribe']>;
      for (let round = 0; round < 10; round++) {
        const before = (await a.read(t, LATEST)).lastId;
        await a.publish(t, `r${round}-0`);
        const subscription = subscribe.call(b, t, before);
        // The first next() reads; the second entry is published while that read is in flight.
        let pending = subscription.next();
        const late = a.publish(t, `r${round}-1`);
        const seen: string[] = [];
        for (;;) {
          if (!(await settledWithin(pending, 3000))) throw new Error(`round ${round}: only ${JSON.stringify(seen)} came`);
          const result = await pending;
          if (result.done === true) throw new Error('the subscription ended');
          for (const entry of result.value.entries) seen.push(entry.data);
          if (seen.length >= 2) break;
          pending = subscription.next();
        }
        await late;
        expect(seen).toEqual([`r${round}-0`, `r${round}-1`]);
        await subscription.return();
      }
    },
  },
  {
    name: 'BR-5, BR-6, BR-9: an aborted subscription rejects its pending next with the reason and is released; an aborted signal is refused at the first next',
    async run({ a, topic }) {
      const t = topic('subscribe-abort');
      const subscribe = a.subscribe as NonNullable<Broker['subscribe']>;
      const controllers = Array.from({ length: 20 }, () => new AbortController());
      const pending = controllers.map((c) => subscribe.call(a, t, undefined, { signal: c.signal }).next());
      await until(() => a.waiting(t) === 20);
      for (const c of controllers) c.abort(new Error('client left'));
      for (const next of pending) await expect(next).rejects.toThrow('client left');
      expect(a.waiting()).toBe(0);
      const gone = subscribe.call(a, t, undefined, { signal: AbortSignal.abort(new Error('already gone')) });
      await expect(gone.next()).rejects.toThrow('already gone');
      expect(a.waiting()).toBe(0);
    },
  },
  {
    name: 'BR-4, BR-9: a subscription from a trimmed id is told it missed entries',
    async run({ a, b, topic }) {
      const t = topic('subscribe-missed');
      const ids: string[] = [];
      for (let i = 0; i < 250; i++) ids.push(await a.publish(t, String(i), { capacity: 10 }));
      const subscription = (b.subscribe as NonNullable<Broker['subscribe']>)(t, ids[0]);
      const result = await subscription.next();
      expect(result.done !== true && result.value.missed).toBe(true);
      expect(result.done !== true && result.value.entries.at(-1)).toEqual({ id: ids[249], data: '249' });
      await subscription.return();
    },
  },
  {
    name: 'BR-7, BR-9: close rejects a pending subscription with a BrokerError',
    async run({ a, topic }) {
      const t = topic('subscribe-close');
      const next = (a.subscribe as NonNullable<Broker['subscribe']>)(t, undefined).next();
      await until(() => a.waiting(t) === 1);
      await a.close();
      await expect(next).rejects.toBeInstanceOf(BrokerError);
      expect(a.waiting()).toBe(0);
    },
  },
  {
    name: 'BR-7: close rejects pending waits with a BrokerError and later calls fail the same way',
    async run({ a, topic }) {
      const t = topic('close');
      const wait = a.wait(t, undefined, { timeoutMs: 60_000 });
      await until(() => a.waiting(t) === 1);
      await a.close();
      await expect(wait).rejects.toBeInstanceOf(BrokerError);
      expect(a.waiting()).toBe(0);
      await expect(a.publish(t, 'x')).rejects.toBeInstanceOf(BrokerError);
      await expect(a.wait(t, undefined, { timeoutMs: 1000 })).rejects.toBeInstanceOf(BrokerError);
    },
  },
];

/** until polls `check` every 5 ms until it holds, failing after 5 s. */
export async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
