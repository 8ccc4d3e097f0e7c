/**
 * The process's broker: the one `Topic`, the SSE topic stream and the WebSocket topics use unless
 * given another. Chosen once, at first use, in this order: the broker set by `serve({ broker })`
 * or `nsgi --broker` ({@link useBroker}); else the `NSGI_BROKER` environment variable; else the
 * cluster broker in a node:cluster worker (the primary keeps the log), and the memory broker in a
 * process of its own.
 */
import cluster from 'node:cluster';
import { ClusterBroker } from './cluster.ts';
import { MemoryBroker } from './memory.ts';
import { RedisBroker } from './redis.ts';
import { BrokerError, type Broker } from './types.ts';

/** BROKER_ENV is the environment variable naming the broker: `memory`, `cluster` or `redis://host:port/db`. */
export const BROKER_ENV = 'NSGI_BROKER';

let current: Broker | undefined;

/** defaultBroker answers the process's broker, choosing it on first use (see the file comment). */
export function defaultBroker(): Broker {
  if (current === undefined) {
    const spec = process.env[BROKER_ENV];
    current = spec !== undefined && spec !== '' ? createBroker(spec) : cluster.isWorker ? new ClusterBroker() : new MemoryBroker();
  }
  return current;
}

/**
 * createBroker makes a broker from its description: `memory`, `cluster`, or a `redis://` /
 * `rediss://` URL (`redis://host:port/db`). Anything else is a {@link BrokerError} naming it.
 * The broker is not connected yet: await its `ready()`.
 */
export function createBroker(spec: string): Broker {
  if (spec === 'memory') return new MemoryBroker();
  if (spec === 'cluster') return new ClusterBroker();
  if (/^rediss?:\/\//i.test(spec)) return new RedisBroker({ url: spec });
  throw new BrokerError('config', `unknown broker ${JSON.stringify(spec)}: use memory, cluster or a redis://host:port/db URL`);
}

/**
 * useBroker makes `broker` (or the one `spec` describes) the process's broker once it is ready,
 * and answers it; a broker that cannot be reached rejects with its {@link BrokerError}, and the
 * previous choice stays.
 */
export async function useBroker(broker: Broker | string): Promise<Broker> {
  const chosen = typeof broker === 'string' ? createBroker(broker) : broker;
  try {
    await chosen.ready();
  } catch (err) {
    if (typeof broker === 'string') await chosen.close();
    throw err;
  }
  current = chosen;
  return chosen;
}

/** resetDefaultBroker forgets the process's broker (without closing it), so the next use chooses again; for tests. */
export function resetDefaultBroker(): void {
  current = undefined;
}

/**
 * serveBroker is `serve({ broker })`: it makes the broker the process's once it is ready (a
 * {@link BrokerError} if it cannot be reached), and answers how to release it when the server
 * closes: a broker `serve` opened from a description is closed with the server, one passed in
 * stays open for its owner.
 */
export async function serveBroker(broker: Broker | string): Promise<() => Promise<void>> {
  const chosen = await useBroker(broker);
  return typeof broker === 'string' ? () => chosen.close() : () => Promise.resolve();
}
