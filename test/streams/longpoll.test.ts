/**
 * Long polling: the Topic on its own (numbering, capacity, waits that end by publish, timeout or
 * abort, with nothing left behind), then the chat example on the real server over fetch: a
 * waiting poll answered by a send, the 204 after the timeout, 500 abandoned polls that leave no
 * waiter, and the shutdown of a waiting poll.
 */

import { afterEach, describe, expect, it } from 'vitest';
import { Topic } from '../../src/helpers/longpoll.ts';
import { createChat } from '../../examples/chat.ts';
import { cleanup, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

describe('Topic', () => {
  it('numbers items from 1 and returns those above `since` at once', async () => {
    const topic = new Topic<string>();
    expect(topic.lastId).toBe(0);
    expect(topic.publish('a')).toBe(1);
    expect(topic.publish('b')).toBe(2);
    expect(topic.since(0)).toEqual({ items: [{ id: 1, value: 'a' }, { id: 2, value: 'b' }], lastId: 2, missed: false });
    expect(topic.since(1).items).toEqual([{ id: 2, value: 'b' }]);
    expect(await topic.waitFor(1, { timeoutMs: 1000 })).toEqual({ items: [{ id: 2, value: 'b' }], lastId: 2, missed: false });
    expect(topic.waiterCount).toBe(0);
  });

  it('keeps only the latest `capacity` items and says when a poller missed some', () => {
    const topic = new Topic<number>({ capacity: 3 });
    for (let i = 1; i <= 5; i++) topic.publish(i);
    expect(topic.since(0)).toEqual({ items: [3, 4, 5].map((v) => ({ id: v, value: v })), lastId: 5, missed: true });
    expect(topic.since(2).missed).toBe(false);
    expect(topic.since(4).items).toEqual([{ id: 5, value: 5 }]);
  });

  it('answers every waiter on publish, and treats a `since` from the future as the latest', async () => {
    const topic = new Topic<string>();
    topic.publish('old');
    const waits = [topic.waitFor(1, { timeoutMs: 5000 }), topic.waitFor(1, { timeoutMs: 5000 }), topic.waitFor(99, { timeoutMs: 5000 })];
    expect(topic.waiterCount).toBe(3);
    topic.publish('new');
    for (const result of await Promise.all(waits)) expect(result).toEqual({ items: [{ id: 2, value: 'new' }], lastId: 2, missed: false });
    expect(topic.waiterCount).toBe(0);
  });

  it('waits for an item with no timer when timeoutMs is Infinity or beyond what a timer holds', async () => {
    const topic = new Topic<string>();
    for (const timeoutMs of [Infinity, 30 * 24 * 3600 * 1000]) {
      let settled: unknown = null;
      const wait = topic.waitFor(topic.lastId, { timeoutMs }).then((r) => (settled = r));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(settled).toBeNull();
      topic.publish('x');
      await wait;
      expect(settled).not.toBe('timeout');
    }
    expect(topic.waiterCount).toBe(0);
  });

  it('rejects a timeoutMs that is not a number of milliseconds, and times out at once for one already past', async () => {
    const topic = new Topic<string>();
    for (const timeoutMs of [NaN, '100' as unknown as number]) {
      await expect(topic.waitFor(0, { timeoutMs })).rejects.toThrow(RangeError);
    }
    expect(await topic.waitFor(0, { timeoutMs: -5 })).toBe('timeout');
    expect(topic.waiterCount).toBe(0);
  });

  it('resolves "timeout" after timeoutMs and forgets the waiter', async () => {
    const topic = new Topic<string>();
    const start = Date.now();
    expect(await topic.waitFor(0, { timeoutMs: 100 })).toBe('timeout');
    expect(Date.now() - start).toBeGreaterThanOrEqual(95);
    expect(topic.waiterCount).toBe(0);
  });

  it('rejects with the signal\'s reason when aborted, with the waiter already gone', async () => {
    const topic = new Topic<string>();
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
    expect(await sent.json()).toEqual({ id: 1 });
    const res = await polling;
    expect(Date.now() - sentAt).toBeLessThan(1000);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { messages: Array<{ id: number; name: string; text: string; at: string }>; lastId: number; missed: boolean };
    expect(body.lastId).toBe(1);
    expect(body.missed).toBe(false);
    expect(body.messages).toHaveLength(1);
    expect(body.messages[0]).toMatchObject({ id: 1, name: 'ada', text: 'hello' });
    expect(Number.isNaN(Date.parse(body.messages[0]!.at))).toBe(false);
    expect(chat.topic.waiterCount).toBe(0);
  });

  it('returns what is already there at once, and takes plain text too', async () => {
    const chat = createChat();
    const { url } = await startServer(chat.app);
    await fetch(`${url}/send`, { method: 'POST', body: 'first' });
    await fetch(`${url}/send`, { method: 'POST', body: 'second' });
    const res = await fetch(`${url}/poll?since=1`);
    expect(await res.json()).toMatchObject({ messages: [{ id: 2, name: 'anonymous', text: 'second' }], lastId: 2 });
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
    expect(chat.topic.lastId).toBe(0);
  });
});
