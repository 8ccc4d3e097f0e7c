/**
 * The Redis client: ioredis, an optional peer dependency loaded only when the Redis broker is
 * configured, seen through the few methods the broker uses, so the package's types are not
 * needed to compile nsgi.
 */
import { BrokerError } from './types.ts';

/** Connection is the part of an ioredis client the broker uses. */
export interface Connection {
  status: string;
  connect(): Promise<void>;
  disconnect(): void;
  call(command: string, ...args: Array<string | number>): Promise<unknown>;
  multi(commands: Array<Array<string | number>>): { exec(): Promise<Array<[Error | null, unknown]> | null> };
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** ConnectionClass is ioredis's client class. */
export type ConnectionClass = new (url: string, options: Record<string, unknown>) => Connection;

const MISSING_CLIENT = 'the Redis broker needs the ioredis package: npm install ioredis';

/** loadClient imports ioredis, the optional peer dependency, or fails with a BrokerError saying how to install it. */
export async function loadClient(): Promise<ConnectionClass> {
  let module: { default?: unknown; Redis?: unknown };
  try {
    module = (await import('ioredis')) as { default?: unknown; Redis?: unknown };
  } catch (err) {
    throw new BrokerError('config', MISSING_CLIENT, { cause: err });
  }
  return (module.Redis ?? module.default) as ConnectionClass;
}
