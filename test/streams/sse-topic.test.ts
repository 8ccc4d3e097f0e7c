/**
 * The SSE topic stream on the real server: `retry:` first, broker ids as event ids, replay from
 * `Last-Event-ID`, the missed notice, a garbled id, a client that leaves (its wait released), a
 * broker without subscriptions, and a broker that fails (the stream ends and says why).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../../src/broker/memory.ts';
import type { Broker } from '../../src/broker/types.ts';
import { DEFAULT_SSE_RETRY_MS, sseTopic } from '../../src/helpers/sse.ts';
import { openEventStream, type EventStream } from '../helpers/event-stream.ts';
import { cleanup, startServer, waitUntil } from '../helpers/server.ts';

const streams: EventStream[] = [];
afterEach(async () => {
  for (const stream of streams.splice(0)) stream.close();
  await cleanup();
});

async function open(url: string, lastEventId?: string): Promise<EventStream> {
  const stream = await openEventStream(url, lastEventId === undefined ? {} : { lastEventId });
  streams.push(stream);
  return stream;
}

describe('sseTopic', () => {
  it('sends retry first, then each entry published after the client came, with the broker id as its id', async () => {
    const broker = new MemoryBroker();
    await broker.publish('feed', 'before anyone listened');
    const { url } = await startServer(sseTopic('feed', { broker }));
    const stream = await open(url);
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    await waitUntil(() => broker.waiting('feed') === 1 && stream.retry !== undefined, 'the stream to wait');
    expect(stream.retry).toBe(DEFAULT_SSE_RETRY_MS);
    const one = await broker.publish('feed', 'one');
    const two = await broker.publish('feed', 'line 1\nline 2');
    expect(await stream.until(2)).toEqual([
      { type: 'message', data: 'one', id: one },
      { type: 'message', data: 'line 1\nline 2', id: two },
    ]);
  });

  it('replays exactly the entries after Last-Event-ID, then goes on live', async () => {
    const broker = new MemoryBroker();
    const ids: string[] = [];
    for (const word of ['a', 'b', 'c', 'd']) ids.push(await broker.publish('feed', word));
    const { url } = await startServer(sseTopic('feed', { broker, event: 'word' }));
    const stream = await open(url, ids[1]);
    await stream.until(2);
    const e = await broker.publish('feed', 'e');
    expect(await stream.until(3)).toEqual([
      { type: 'word', data: 'c', id: ids[2] },
      { type: 'word', data: 'd', id: ids[3] },
      { type: 'word', data: 'e', id: e },
    ]);
  });

  it('says missed when the entries after Last-Event-ID are gone, and starts from the beginning on request', async () => {
    const broker = new MemoryBroker({ capacity: 2 });
    const ids: string[] = [];
    for (const word of ['a', 'b', 'c', 'd']) ids.push(await broker.publish('feed', word));
    const { url } = await startServer(sseTopic('feed', { broker, from: 'beginning' }));
    const behind = await open(url, ids[0]);
    expect(await behind.until(3)).toEqual([
      { type: 'missed', data: '', id: '' },
      { type: 'message', data: 'c', id: ids[2] },
      { type: 'message', data: 'd', id: ids[3] },
    ]);
    const fresh = await open(url);
    expect((await fresh.until(2)).map((e) => e.data)).toEqual(['c', 'd']);
  });

  it('treats a Last-Event-ID the broker never made as lost: missed, then live from now', async () => {
    const broker = new MemoryBroker();
    await broker.publish('feed', 'old');
    const { url } = await startServer(sseTopic('feed', { broker, onMissed: () => ({ event: 'snapshot', data: 'reload' }) }));
    const stream = await open(url, 'not-an-id');
    await waitUntil(() => broker.waiting('feed') === 1, 'the stream to wait');
    const id = await broker.publish('feed', 'new');
    expect(await stream.until(2)).toEqual([
      { type: 'snapshot', data: 'reload', id: '' },
      { type: 'message', data: 'new', id },
    ]);
  });

  it('releases the wait of every client that leaves', async () => {
    const broker = new MemoryBroker();
    const { url } = await startServer(sseTopic('feed', { broker }));
    const clients = await Promise.all(Array.from({ length: 20 }, () => open(url)));
    await waitUntil(() => broker.waiting('feed') === 20, '20 waiting streams');
    for (const client of clients) client.close();
    await waitUntil(() => broker.waiting() === 0, 'every wait to be released');
    await broker.publish('feed', 'to nobody');
  });

  it('BR-9: streams from a broker without subscribe() through a wait per answer, and releases it when the client leaves', async () => {
    const inner = new MemoryBroker();
    // A broker written before subscriptions: the five operations of the contract and nothing else.
    const broker: Broker = {
      kind: 'memory',
      ready: () => inner.ready(),
      publish: (topic, data, options) => inner.publish(topic, data, options),
      read: (topic, after) => inner.read(topic, after),
      wait: (topic, after, options) => inner.wait(topic, after, options),
      waiting: (topic) => inner.waiting(topic),
      close: () => inner.close(),
    };
    const { url } = await startServer(sseTopic('feed', { broker }));
    const stream = await open(url);
    await waitUntil(() => inner.waiting('feed') === 1, 'the stream to wait');
    const one = await broker.publish('feed', 'one');
    const two = await broker.publish('feed', 'two');
    expect(await stream.until(2)).toEqual([
      { type: 'message', data: 'one', id: one },
      { type: 'message', data: 'two', id: two },
    ]);
    stream.close();
    await waitUntil(() => inner.waiting() === 0, 'the wait to be released');
  });

  it('answers a HEAD with the head alone, without reading or subscribing to the topic', async () => {
    const inner = new MemoryBroker();
    let reads = 0;
    const broker: Broker = Object.create(inner) as Broker;
    broker.read = (topic, after) => {
      reads++;
      return inner.read(topic, after);
    };
    const { url } = await startServer(sseTopic('feed', { broker }));
    const res = await fetch(url, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await res.text()).toBe('');
    expect(reads).toBe(0);
    expect(inner.waiting()).toBe(0);
  });

  it('cuts the stream, with the error on nsgi.errors, when onMissed throws', async () => {
    const broker = new MemoryBroker();
    const { url, errors } = await startServer(
      sseTopic('feed', {
        broker,
        onMissed: () => {
          throw new Error('no snapshot today');
        },
      }),
    );
    const stream = await open(url, 'not-an-id');
    await stream.ended;
    await waitUntil(() => errors.join('').includes('no snapshot today'), 'the error on nsgi.errors');
    expect(broker.waiting()).toBe(0);
  });

  it('ends the stream with a line on nsgi.errors when the broker fails', async () => {
    const broker = new MemoryBroker();
    const { url, errors } = await startServer(sseTopic('feed', { broker }));
    const stream = await open(url);
    await waitUntil(() => broker.waiting('feed') === 1, 'the stream to wait');
    await broker.close();
    await stream.ended;
    expect(errors.join('')).toMatch(/the stream of topic "feed" ends: the memory broker is closed/);
  });
});
