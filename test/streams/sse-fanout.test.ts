/**
 * One publish to many SSE topic streams on the real server: the streams are woken in batches, so
 * the first clients receive the entry, and another connection's request is answered, while later
 * streams have not been answered yet; every client still receives it exactly once, and streams
 * that fall behind catch up in order.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { MemoryBroker } from '../../src/broker/memory.ts';
import type { Broker, BrokerSubscribeOptions, BrokerSubscription } from '../../src/broker/types.ts';
import { WAKE_BATCH } from '../../src/broker/waiters.ts';
import { sseTopic } from '../../src/helpers/sse.ts';
import { cleanup, RawClient, startServer, waitUntil } from '../helpers/server.ts';

/**
 * STREAMS is how many event streams the fan-out opens: eight wake batches' worth, so the first
 * bytes have several turns of the event loop to reach their client before the last batch.
 */
const STREAMS = WAKE_BATCH * 8;

const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await cleanup();
});

/** countingBroker is `inner` with a count of the answers its subscriptions have handed to their streams. */
function countingBroker(inner: MemoryBroker): { broker: Broker; answered: () => number } {
  let answered = 0;
  const broker: Broker = Object.create(inner) as Broker;
  broker.subscribe = (topic: string, after: string | undefined, options?: BrokerSubscribeOptions): BrokerSubscription => {
    const subscription = inner.subscribe(topic, after, options);
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        const result = await subscription.next();
        if (result.done !== true) answered++;
        return result;
      },
      return: () => subscription.return(),
    };
  };
  return { broker, answered: () => answered };
}

/** openStreams opens `count` raw event streams and resolves once each has its head and `retry:`. */
async function openStreams(port: number, count: number, onText: (index: number, text: string) => void): Promise<void> {
  await Promise.all(
    Array.from(
      { length: count },
      (_, index) =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /feed HTTP/1.1\r\nHost: t\r\n\r\n'));
          sockets.push(socket);
          let seen = '';
          socket.setEncoding('latin1');
          socket.on('data', (text: string) => {
            if (!seen.includes('retry:')) {
              seen += text;
              if (seen.includes('retry:')) resolve();
              return;
            }
            onText(index, text);
          });
          socket.once('error', reject);
        }),
    ),
  );
}

describe('SSE topic fan-out', () => {
  it('BR-10: reaches the first clients before the last stream is answered, and every client exactly once', async () => {
    const { broker, answered } = countingBroker(new MemoryBroker());
    const { port } = await startServer(sseTopic('feed', { broker, heartbeatMs: 0 }));
    // For each client: how many streams had been answered when the entry reached it, and how often it came.
    const answeredAtArrival: number[] = [];
    const arrivals = new Array<number>(STREAMS).fill(0);
    await openStreams(port, STREAMS, (index, text) => {
      const times = text.split('data: fan-out\n').length - 1;
      if (times === 0) return;
      if (arrivals[index] === 0) answeredAtArrival.push(answered());
      arrivals[index] = (arrivals[index] as number) + times;
    });
    await waitUntil(() => broker.waiting('feed') === STREAMS, 'every stream to subscribe');
    await broker.publish('feed', 'fan-out');
    await waitUntil(() => answeredAtArrival.length === STREAMS, 'every client to receive the entry');
    // Woken all at once, every stream would be answered before the first byte left.
    expect(Math.min(...answeredAtArrival)).toBeLessThan(STREAMS);
    expect(answered()).toBe(STREAMS);
    expect(arrivals.every((n) => n === 1)).toBe(true);
    expect(broker.waiting('feed')).toBe(STREAMS);
  });

  it('BR-10: serves another connection\'s request between the batches of a large publish', async () => {
    const { broker, answered } = countingBroker(new MemoryBroker());
    const events = sseTopic('feed', { broker, heartbeatMs: 0 });
    const app: App = (environ, startResponse) => {
      if (environ.PATH_INFO === '/feed') return events(environ, startResponse);
      startResponse('200 OK', [['Content-Length', '2']]);
      return ['ok'];
    };
    const { port } = await startServer(app);
    await openStreams(port, STREAMS, () => {});
    await waitUntil(() => broker.waiting('feed') === STREAMS, 'every stream to subscribe');
    const other = await RawClient.connect(port);
    let answeredAtResponse = -1;
    const responded = other.waitFor((data) => data.includes('\r\n\r\nok'), 'the other response').then(() => (answeredAtResponse = answered()));
    await broker.publish('feed', 'fan-out');
    other.write('GET /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    await responded;
    // Woken all at once, every stream would run before the request was even read.
    expect(answeredAtResponse).toBeGreaterThanOrEqual(0);
    expect(answeredAtResponse).toBeLessThan(STREAMS);
    await waitUntil(() => answered() === STREAMS, 'every stream to be answered');
  });

  it('BR-1, BR-10: delivers entries published faster than the batches wake, to every client, in order, once each', async () => {
    const broker = new MemoryBroker();
    const { port } = await startServer(sseTopic('feed', { broker, heartbeatMs: 0 }));
    const texts = new Array<string>(STREAMS).fill('');
    await openStreams(port, STREAMS, (index, text) => (texts[index] += text));
    await waitUntil(() => broker.waiting('feed') === STREAMS, 'every stream to subscribe');
    const words = ['one', 'two', 'three', 'four', 'five'];
    // Published back to back, while the first publish's batches are still waking streams.
    for (const word of words) await broker.publish('feed', word);
    const dataOf = (text: string): string[] => [...text.matchAll(/^data: (.*)$/gm)].map((m) => m[1] as string);
    await waitUntil(() => texts.every((text) => dataOf(text).length >= words.length), 'every client to receive every entry');
    for (const text of texts) expect(dataOf(text)).toEqual(words);
  });
});
