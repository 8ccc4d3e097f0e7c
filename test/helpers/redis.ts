/**
 * Starts a real `redis-server` for a test: on a free loopback port, in a temporary directory,
 * persisting nothing unless asked (`--appendonly yes` for the restart tests), and stops it.
 * Never the system's Redis service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** REDIS_START_TIMEOUT_MS bounds how long redis-server may take to accept connections. */
const REDIS_START_TIMEOUT_MS = 10_000;

/** RedisServer is one running redis-server. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** stop ends the server (SIGKILL when `hard`, as a crash would) and waits for it to exit. */
  stop(hard?: boolean): Promise<void>;
  /** restart starts it again on the same port and directory, with the same persistence. */
  restart(): Promise<void>;
  /** remove stops it if running and deletes its directory. */
  remove(): Promise<void>;
}

/** freePort finds a loopback port nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** startRedis starts a redis-server; `aof` turns on the append-only file, so a restart keeps the streams. */
export async function startRedis(options: { aof?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'nsgi-redis-'));
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', options.aof === true ? 'yes' : 'no', '--appendfsync', 'always'];
    const started = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => fail(new Error(`redis-server did not start within ${REDIS_START_TIMEOUT_MS} ms:\n${output}`)), REDIS_START_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        started.kill('SIGKILL');
        reject(err);
      };
      started.once('error', fail);
      started.once('exit', (code) => fail(new Error(`redis-server exited with ${code}:\n${output}`)));
      started.stdout?.setEncoding('utf8').on('data', (text: string) => {
        output += text;
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          started.removeAllListeners('exit');
          resolve();
        }
      });
    });
  };
  const stop = async (hard = false): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    dir,
    stop,
    restart: launch,
    async remove() {
      await stop(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
