/**
 * nginx in front of two `nsgi --workers 2` instances, configured as docs/DEPLOYMENT.md says for
 * restarts (test/helpers/nginx.ts), under a bounded continuous load of plain requests, long polls
 * and event streams: a rolling restart of both instances, then a SIGHUP reload, a TTIN/TTOU and
 * `--max-requests` recycling, each with zero failed requests and every stream ended cleanly. And
 * uploads of 16 MiB and 64 MiB arriving hash-checked under `client_max_body_size 64m`, one byte
 * more refused by nginx with 413.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runLoad, type LoadReport } from '../helpers/load.ts';
import { restartSafeConfig, startNginx, type RunningNginx } from '../helpers/nginx.ts';
import { freePort, isAlive, workerPids } from '../helpers/processes.ts';
import { sleep, waitUntil } from '../helpers/server.ts';
import { CliProcess, killAllClis } from '../helpers/spawn-cli.ts';

/** Every load run stops after this long at the most, whatever happens. */
const LOAD_LIMIT_MS = 120_000;
/** How long an instance may take to start (tsx compiles the CLI, each worker loads the app). */
const START_MS = 30_000;

let dir = '';
let nginx: RunningNginx | null = null;
const ports: number[] = [];
const running = new Map<number, CliProcess>();

/** startInstance runs nsgi on `port` and waits for its listening line. */
async function startInstance(port: number, ...args: string[]): Promise<CliProcess> {
  const cli = new CliProcess([path.join(dir, 'app.mjs'), '--port', String(port), '--workers', '2', '--forwarded-allow-ips', '127.0.0.1', '--graceful-timeout', '5', ...args]);
  running.set(port, cli);
  await cli.waitForStdout(/^nsgi: listening on /, START_MS);
  await waitUntil(() => workerPids(cli.child.pid!).length === 2, 'both workers', START_MS);
  return cli;
}

/** stopAll ends every instance still running. */
async function stopAll(): Promise<void> {
  for (const cli of running.values()) cli.kill('SIGKILL');
  await Promise.all([...running.values()].map((cli) => cli.exited));
  running.clear();
}

/** loadThroughNginx runs the load through nginx while `during` runs, and a second more. */
async function loadThroughNginx(during: () => Promise<void>): Promise<LoadReport> {
  const stop = new AbortController();
  const deadline = setTimeout(() => stop.abort(), LOAD_LIMIT_MS);
  const load = runLoad({ port: nginx!.port }, stop.signal, { concurrency: 4, pollers: 2, streams: 2 });
  try {
    await sleep(300);
    await during();
    await sleep(1000);
  } finally {
    stop.abort();
    clearTimeout(deadline);
  }
  return await load;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-restarts-'));
  copyFileSync(new URL('../fixtures/versioned.mjs', import.meta.url), path.join(dir, 'app.mjs'));
  writeFileSync(path.join(dir, 'version.txt'), 'v1\n');
  ports.push(await freePort(), await freePort());
  nginx = await startNginx((port) => restartSafeConfig(port, ports));
}, 30_000);

afterEach(stopAll, 30_000);

afterAll(async () => {
  await nginx?.stop();
  await killAllClis();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('restarts behind nginx lose nothing', () => {
  it('a rolling restart of two instances, one at a time', async () => {
    for (const port of ports) await startInstance(port);
    const report = await loadThroughNginx(async () => {
      for (const port of ports) {
        const old = running.get(port)!;
        old.kill('SIGTERM');
        expect((await old.waitForExit(20_000)).code).toBe(0);
        await startInstance(port);
        // Both instances serve again before the next one goes.
        await sleep(500);
      }
    });
    expect(report.failures).toEqual([]);
    expect(report.ok).toBeGreaterThan(50);
    expect(report.streamsClean).toBeGreaterThanOrEqual(2);
  }, 180_000);

  it('a SIGHUP reload, a TTIN and TTOU, and --max-requests recycling', async () => {
    const [a, b] = [await startInstance(ports[0]!, '--max-requests', '150', '--max-requests-jitter', '20'), await startInstance(ports[1]!)];
    const firstOfA = workerPids(a.child.pid!);
    const report = await loadThroughNginx(async () => {
      const oldOfB = workerPids(b.child.pid!);
      process.kill(b.child.pid!, 'SIGHUP');
      await waitUntil(() => b.stderr.includes('reload done: 2 of 2'), 'the reload of b', START_MS);
      await waitUntil(() => oldOfB.every((pid) => !isAlive(pid)), "b's old workers to exit", START_MS);
      process.kill(b.child.pid!, 'SIGTTIN');
      await waitUntil(() => workerPids(b.child.pid!).length === 3, 'a third worker on b', START_MS);
      await sleep(1000);
      process.kill(b.child.pid!, 'SIGTTOU');
      await waitUntil(() => workerPids(b.child.pid!).length === 2, 'b back to two workers', START_MS);
      await waitUntil(() => firstOfA.every((pid) => !isAlive(pid)), "a's first workers to be recycled", 60_000);
    });
    expect(report.failures).toEqual([]);
    expect(a.stderr).toMatch(/reached --max-requests; replacing it/);
    expect(report.ok).toBeGreaterThan(100);
  }, 180_000);
});

describe('client_max_body_size 64m', () => {
  /** upload posts `size` bytes through nginx and resolves with the status and answer. */
  async function upload(size: number): Promise<{ status: number; text: string; sha256: string }> {
    const body = Buffer.alloc(size);
    for (let i = 0; i + 4 <= size; i += 4096) body.writeUInt32LE((i * 2654435761) >>> 0, i);
    const res = await fetch(`http://127.0.0.1:${nginx!.port}/upload`, { method: 'POST', body });
    return { status: res.status, text: await res.text(), sha256: createHash('sha256').update(body).digest('hex') };
  }

  it('16 MiB and 64 MiB uploads arrive whole; a byte more is refused by nginx with 413', async () => {
    for (const port of ports) await startInstance(port);
    for (const size of [16 * 1024 * 1024, 64 * 1024 * 1024]) {
      const r = await upload(size);
      expect(r.status).toBe(200);
      expect(r.text).toBe(`${size} ${r.sha256}`);
    }
    expect((await upload(64 * 1024 * 1024 + 1)).status).toBe(413);
  }, 120_000);
});
