/**
 * Long polling: the Topic on its own (ids, capacity, waits that end by publish, timeout or
 * abort, with nothing left behind), then the chat example on the real server over fetch: a
 * waiting poll answered by a send, the 204 after the timeout, 500 abandoned polls that leave no
 * waiter, and the shutdown of a waiting poll.
 */

import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../../src/broker/memory.ts';
import { Topic } from '../../src/helpers/longpoll.ts';
import { createChat } from '../../examples/chat.ts';
import { cleanup, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

describe('Topic', () => {
  it('gives sorted string ids and returns the items after `since` at once', async () => {
    const topic = new Topic<string>({ broker: new MemoryBroker() });
    expect(await topic.since(0)).toEqual({ items: [], lastId: '0', missed: false });
    const a = await topic.publish('a');
    const b = await topic.publish('b');
    expect(typeof a).toBe('string');
    expect(a < b).toBe(true);
    expect(await topic.since(0)).toEqual({ items: [{ id: a, value: 'a' }, { id: b, value: 'b' }], lastId: b, missed: false });
    expect((await topic.since(a)).items).toEqual([{ id: b, value: 'b' }]);
    expect(await topic.waitFor(a, { timeoutMs: 1000 })).toEqual({ items: [{ id: b, value: 'b' }], lastId: b, missed: false });
    expect(topic.waiterCount).toBe(0);
  });

  it('carries values as JSON and refuses what JSON cannot hold', async () => {
    const topic = new Topic<unknown>({ broker: new MemoryBroker() });
    await topic.publish({ nested: [1, 'two', null] });
    expect((await topic.since(0)).items[0]?.value).toEqual({ nested: [1, 'two', null] });
    await expect(topic.publish(undefined)).rejects.toThrow(/JSON/);
    await expect(topic.since(5)).rejects.toThrow(/since must be an id/);
    await expect(topic.since('abc')).rejects.toThrow(/"abc"/);
  });

  it('keeps only the latest `capacity` items and says when a poller missed some', async () => {
    const topic = new Topic<number>({ capacity: 3, broker: new MemoryBroker() });
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push(await topic.publish(i));
    expect(await topic.since(0)).toEqual({ items: [3, 4, 5].map((v) => ({ id: ids[v - 1], value: v })), lastId: ids[4], missed: true });
    expect((await topic.since(ids[1])).missed).toBe(false);
    expect((await topic.since(ids[0])).missed).toBe(true);
    expect((await topic.since(ids[3])).items).toEqual([{ id: ids[4], value: 5 }]);
  });

  it('answers every waiter on publish, and treats a `since` from the future as the latest', async () => {
    const topic = new Topic<string>({ broker: new MemoryBroker() });
    const old = await topic.publish('old');
    const future = '9999999999999-0000000000000099';
    const waits = [topic.waitFor(old, { timeoutMs: 5000 }), topic.waitFor(old, { timeoutMs: 5000 }), topic.waitFor(future, { timeoutMs: 5000 })];
    expect(topic.waiterCount).toBe(3);
    const id = await topic.publish('new');
    for (const result of await Promise.all(waits)) expect(result).toEqual({ items: [{ id, value: 'new' }], lastId: id, missed: false });
    expect(topic.waiterCount).toBe(0);
  });

  it('shares one log between topics of the same name on one broker, and keeps other names apart', async () => {
    const broker = new MemoryBroker();
    const one = new Topic<string>({ name: 'room', broker });
    const two = new Topic<string>({ name: 'room', broker });
    const other = new Topic<string>({ name: 'elsewhere', broker });
    const wait = two.waitFor(0, { timeoutMs: 5000 });
    const id = await one.publish('hi');
    expect(await wait).toEqual({ items: [{ id, value: 'hi' }], lastId: id, missed: false });
    expect((await other.since(0)).items).toEqual([]);
  });

  it('waits for an item with no timer when timeoutMs is Infinity or beyond what a timer holds', async () => {
    const topic = new Topic<string>({ broker: new MemoryBroker() });
    for (const timeoutMs of [Infinity, 30 * 24 * 3600 * 1000]) {
      let settled: unknown = null;
      const { lastId } = await topic.since(0);
      const wait = topic.waitFor(lastId, { timeoutMs }).then((r) => (settled = r));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(settled).toBeNull();
      await topic.publish('x');
      await wait;
      expect(settled).not.toBe('timeout');
    }
    expect(topic.waiterCount).toBe(0);
  });

  it('rejects a timeoutMs that is not a number of milliseconds, and times out at once for one already past', async () => {
    const topic = new Topic<string>({ broker: new MemoryBroker() });
    for (const timeoutMs of [NaN, '100' as unknown as number]) {
      await expect(topic.waitFor(0, { timeoutMs })).rejects.toThrow(RangeError);
    }
    expect(await topic.waitFor(0, { timeoutMs: -5 })).toBe('timeout');
    expect(topic.waiterCount).toBe(0);
  });

  it('resolves "timeout" after timeoutMs and forgets the waiter', async () => {
    const topic = new Topic<string>({ broker: new MemoryBroker() });
    const start = Date.now();
    expect(await topic.waitFor(0, { timeoutMs: 100 })).toBe('timeout');
    expect(Date.now() - start).toBeGreaterThanOrEqual(95);
    expect(topic.waiterCount).toBe(0);
  });

  it('rejects with the signal\'s reason when aborted, with the waiter already gone', async () => {
    const topic = new Topic<string>({ broker: new MemoryBroker() });
    const controller = new AbortController();
    const wait = topic.waitFor(0, { timeoutMs: 60_000, signal: controller.signal });
    expect(topic.waiterCount).toBe(1);
    const reason = new Error('client gone');
    controller.abort(reason);
    expect(topic.waiterCount).toBe(0);
    await expect(wait).rejects.toBe(reason);
    await expect(topic.waitFor(0, { timeoutMs: 1000, signal: controller.signal })).rejects.toBe(reason);
    expect(topic.waiterCount).toBe(0);
  });
});

describe('the chat example', () => {
  it('answers a waiting poll as soon as a message is sent', async () => {
    const chat = createChat();
    const { url } = await startServer(chat.app);
    const polling = fetch(`${url}/poll?since=0`);
    await waitUntil(() => chat.topic.waiterCount === 1, 'the poll to wait');
    const sentAt = Date.now();
    const sent = await fetch(`${url}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'ada', text: 'hello' }) });
    const { id } = (await sent.json()) as { id: string };
    const res = await polling;
    expect(Date.now() - sentAt).toBeLessThan(1000);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { messages: Array<{ id: string; name: string; text: string; at: string }>; lastId: string; missed: boolean };
    expect(body.lastId).toBe(id);
    expect(body.missed).toBe(false);
    expect(body.messages).toHaveLength(1);
    expect(body.messages[0]).toMatchObject({ id, name: 'ada', text: 'hello' });
    expect(Number.isNaN(Date.parse(body.messages[0]!.at))).toBe(false);
    expect(chat.topic.waiterCount).toBe(0);
  });

  it('returns what is already there at once, and takes plain text too', async () => {
    const chat = createChat();
    const { url } = await startServer(chat.app);
    const first = ((await (await fetch(`${url}/send`, { method: 'POST', body: 'first' })).json()) as { id: string }).id;
    const second = ((await (await fetch(`${url}/send`, { method: 'POST', body: 'second' })).json()) as { id: string }).id;
    const res = await fetch(`${url}/poll?since=${first}`);
    expect(await res.json()).toMatchObject({ messages: [{ id: second, name: 'anonymous', text: 'second' }], lastId: second });
  });

  it('answers 204 when nothing arrives within the timeout', async () => {
    const chat = createChat({ pollTimeoutMs: 300 });
    const { url } = await startServer(chat.app);
    const start = Date.now();
    const res = await fetch(`${url}/poll?since=0`);
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
    expect(Date.now() - start).toBeGreaterThanOrEqual(280);
    expect(Date.now() - start).toBeLessThan(2000);
    expect(chat.topic.waiterCount).toBe(0);
  });

  it('ENV-29: leaves no waiter behind after 500 abandoned polls', { timeout: 30_000 }, async () => {
    const chat = createChat();
    const { url, errors } = await startServer(chat.app);
    const controllers = Array.from({ length: 500 }, () => new AbortController());
    const polls = controllers.map((controller) => fetch(`${url}/poll?since=0`, { signal: controller.signal }).catch((err: unknown) => err));
    await waitUntil(() => chat.topic.waiterCount === 500, `500 waiting polls (have ${chat.topic.waiterCount})`, 15_000);
    for (const controller of controllers) controller.abort();
    for (const outcome of await Promise.all(polls)) expect((outcome as Error).name).toBe('AbortError');
    await waitUntil(() => chat.topic.waiterCount === 0, 'every waiter to go', 5000);
    // Nothing waits for a message that will never come: a send now reaches nobody and still works.
    const sent = await fetch(`${url}/send`, { method: 'POST', body: 'anyone?' });
    expect(sent.status).toBe(200);
    expect(errors).toEqual([]);
  });

  it('ends a waiting poll with 503 when the server closes', async () => {
    const chat = createChat();
    const started = await startServer(chat.app);
    const polling = fetch(`${started.url}/poll?since=0`);
    await waitUntil(() => chat.topic.waiterCount === 1, 'the poll to wait');
    const closeStarted = Date.now();
    await started.server.close({ timeout: 10_000 });
    const res = await polling;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(Date.now() - closeStarted).toBeLessThan(2000);
    expect(chat.topic.waiterCount).toBe(0);
  });

  it('refuses a message above the size limit with 413 and a bad `since` with 400', async () => {
    const chat = createChat({ maxMessageBytes: 100 });
    const { url } = await startServer(chat.app);
    const big = await fetch(`${url}/send`, { method: 'POST', body: 'x'.repeat(101) });
    expect(big.status).toBe(413);
    const streamed = await fetch(`${url}/send`, {
      method: 'POST',
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(60).fill(120));
          controller.enqueue(new Uint8Array(60).fill(120));
          controller.close();
        },
      }),
      duplex: 'half',
    });
    expect(streamed.status).toBe(413);
    expect((await fetch(`${url}/poll?since=abc`)).status).toBe(400);
    expect((await fetch(`${url}/send`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text": ' })).status).toBe(400);
    expect((await fetch(`${url}/send`)).status).toBe(405);
    expect((await chat.topic.since(0)).items).toEqual([]);
  });
});
