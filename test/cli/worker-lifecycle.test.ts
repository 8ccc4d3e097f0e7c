/**
 * The worker lifecycle of a real `nsgi --workers` process under a bounded continuous load (plain
 * requests on new connections, long polls, event streams): a SIGHUP reload that imports the app
 * afresh, a reload whose app no longer imports, TTIN/TTOU, `--max-requests` recycling, the primary
 * killed with SIGKILL, and SIGHUP to a process without workers. Each must lose no request, and an
 * event stream on a replaced worker must end with its closing event, never cut.
 *
 * The app is test/fixtures/versioned.mjs, copied into a temp dir so that each test can change its
 * `version.txt` and read its `imports.log`.
 */
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request, runLoad, type LoadReport } from '../helpers/load.ts';
import { isAlive, workerPids } from '../helpers/processes.ts';
import { sleep, waitUntil } from '../helpers/server.ts';
import { killAllClis, startCli, type RunningCli } from '../helpers/spawn-cli.ts';

const FIXTURE = new URL('../fixtures/versioned.mjs', import.meta.url);
/** How long a test waits for workers to start or a reload to finish (each worker loads the app). */
const SETTLE_MS = 30_000;

let dir = '';
const pids = new Set<number>();

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-workers-'));
  copyFileSync(FIXTURE, path.join(dir, 'app.mjs'));
  setVersion('v1');
});

afterEach(async () => {
  await killAllClis();
  for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  pids.clear();
  rmSync(dir, { recursive: true, force: true });
});

function setVersion(version: string): void {
  writeFileSync(path.join(dir, 'version.txt'), `${version}\n`);
}

/** importers lists the pids that imported the app, in order. */
function importers(): number[] {
  try {
    return readFileSync(path.join(dir, 'imports.log'), 'utf8').split('\n').filter((l) => l !== '').map(Number);
  } catch {
    return [];
  }
}

async function startWorkers(args: readonly string[]): Promise<RunningCli & { primary: number }> {
  const running = await startCli([path.join(dir, 'app.mjs'), '--port', '0', ...args]);
  const primary = running.cli.child.pid!;
  pids.add(primary);
  return { ...running, primary };
}

/** workersOf waits until `primary` has `n` live children that have imported the app, and returns them. */
async function workersOf(primary: number, n: number): Promise<number[]> {
  const ready = (): boolean => {
    const children = workerPids(primary);
    return children.length === n && children.every((pid) => importers().includes(pid));
  };
  await waitUntil(ready, `${n} worker processes with the app imported (children ${workerPids(primary)}, imports ${importers()})`, SETTLE_MS);
  const now = workerPids(primary);
  for (const pid of now) pids.add(pid);
  return now;
}

/** servedBy is the set of `VERSION PID` answers among a load's bodies. */
function servedBy(report: LoadReport): Set<string> {
  return new Set(report.bodies.map((b) => b.trim()));
}

/** LOAD_LIMIT_MS bounds every load run, whatever happens to the server. */
const LOAD_LIMIT_MS = 90_000;

/** loadDuring runs the load while `during` runs, and half a second more. */
async function loadDuring(port: number, during: () => Promise<void>, options = {}): Promise<LoadReport> {
  const stop = new AbortController();
  const deadline = setTimeout(() => stop.abort(), LOAD_LIMIT_MS);
  const load = runLoad({ port }, stop.signal, { concurrency: 3, pollers: 2, streams: 2, ...options });
  try {
    await during();
    await sleep(500);
  } finally {
    stop.abort();
    clearTimeout(deadline);
  }
  return await load;
}

describe('SIGHUP reload', () => {
  it('replaces every worker one at a time under load, importing the app afresh, losing no request', async () => {
    const { cli, port, primary } = await startWorkers(['--workers', '2']);
    const before = await workersOf(primary, 2);

    const report = await loadDuring(port, async () => {
      await sleep(500);
      setVersion('v2');
      process.kill(primary, 'SIGHUP');
      await waitUntil(() => cli.stderr.includes('reload done: 2 of 2 workers replaced'), 'the reload to finish', SETTLE_MS);
      await waitUntil(() => before.every((pid) => !isAlive(pid)), 'the old workers to exit', SETTLE_MS);
    });

    expect(report.failures).toEqual([]);
    expect(report.ok).toBeGreaterThan(20);
    // The streams open on the old workers ended with their closing event when those drained.
    expect(report.streamsClean).toBeGreaterThanOrEqual(2);
    const after = workerPids(primary);
    expect(after).toHaveLength(2);
    expect(after.some((pid) => before.includes(pid))).toBe(false);
    const answers = servedBy(report);
    for (const pid of after) expect(answers.has(`v2 ${pid}`), `v2 from ${pid} in ${[...answers]}`).toBe(true);
    // Four imports, all in workers: two at the start, one per reloaded worker.
    expect(importers().sort()).toEqual([...before, ...after].sort());
    expect(importers()).not.toContain(primary);
  }, 120_000);

  it('keeps the old workers serving when the reloaded app fails to import, and logs why once', async () => {
    const { cli, port, primary } = await startWorkers(['--workers', '2']);
    const before = await workersOf(primary, 2);
    const report = await loadDuring(port, async () => {
      setVersion('bad');
      process.kill(primary, 'SIGHUP');
      await waitUntil(() => cli.stderr.includes('reload failed'), 'the reload to fail', SETTLE_MS);
    });
    expect(report.failures).toEqual([]);
    expect(cli.stderr).toMatch(/reload failed: the new worker \d+ exited \(code 2\) before listening; worker \d+ keeps serving/);
    expect(cli.stderr.match(/cannot load .*app\.mjs: this version is broken on purpose/g)).toHaveLength(1);
    expect(cli.running).toBe(true);
    expect(workerPids(primary).sort()).toEqual(before.sort());
    expect([...servedBy(report)].every((answer) => answer.startsWith('v1 '))).toBe(true);
  }, 120_000);
});

describe('TTIN and TTOU', () => {
  it('add and remove a worker under load, losing no request', async () => {
    const { cli, port, primary } = await startWorkers(['--workers', '2']);
    const first = await workersOf(primary, 2);
    let third = 0;
    const report = await loadDuring(port, async () => {
      process.kill(primary, 'SIGTTIN');
      const three = await workersOf(primary, 3);
      third = three.find((pid) => !first.includes(pid))!;
      await waitUntil(() => importers().includes(third), 'the third worker to load the app', SETTLE_MS);
      await sleep(1000);
      process.kill(primary, 'SIGTTOU');
      await waitUntil(() => workerPids(primary).length === 2, 'a worker to leave', SETTLE_MS);
    });
    expect(report.failures).toEqual([]);
    expect(cli.stderr).toContain('received SIGTTIN, now 3 workers');
    expect(cli.stderr).toContain('received SIGTTOU, now 2 workers');
    expect(servedBy(report).has(`v1 ${third}`)).toBe(true);
    // TTOU retires the oldest worker.
    expect(workerPids(primary)).toContain(third);
  }, 120_000);
});

describe('--max-requests', () => {
  it('recycles each worker after its requests, the successor listening first, losing no request', async () => {
    const { cli, port, primary } = await startWorkers(['--workers', '2', '--max-requests', '30', '--max-requests-jitter', '5']);
    const first = await workersOf(primary, 2);
    const report = await loadDuring(port, async () => {
      await waitUntil(() => first.every((pid) => !isAlive(pid)), 'both first workers to be recycled', SETTLE_MS * 2);
    }, { pollers: 0, streams: 0 });
    expect(report.failures).toEqual([]);
    expect(cli.stderr.match(/reached --max-requests; replacing it/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    // A recycled worker served at least its budget, and no more than the requests in flight past it.
    for (const pid of first) {
      const served = report.bodies.filter((b) => b.trim() === `v1 ${pid}`).length;
      expect(served).toBeGreaterThanOrEqual(30);
    }
  }, 150_000);
});

describe('losing the primary', () => {
  it('a worker whose primary is killed with SIGKILL finishes its in-flight response, then exits', async () => {
    const { port, primary } = await startWorkers(['--workers', '2', '--graceful-timeout', '5']);
    const workers = await workersOf(primary, 2);
    const slow = net.connect(port, '127.0.0.1');
    let text = '';
    slow.setEncoding('latin1').on('data', (d: string) => (text += d));
    const closed = new Promise<void>((resolve) => slow.on('close', () => resolve()));
    slow.write('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => text.includes('slow 0'), 'the slow response to start', 10_000);
    process.kill(primary, 'SIGKILL');
    await closed;
    expect(text).toMatch(/slow 9\n\r\n5\r\ndone\n\r\n0\r\n\r\n$/);
    await waitUntil(() => workers.every((pid) => !isAlive(pid)), 'the orphaned workers to exit', 10_000);
  }, 60_000);
});

describe('--reload', () => {
  it('reloads on a change to a module under the app directory, keeps the last good app on a broken edit, ignores other files', async () => {
    const { cli, port, primary } = await startWorkers(['--reload']);
    // The app reads version.txt as it loads; the edit that matters to --reload is the module's.
    const edit = (version: string): void => {
      setVersion(version);
      appendFileSync(path.join(dir, 'app.mjs'), `// edited to ${version}\n`);
    };
    const [first] = await workersOf(primary, 1);
    // A new connection each time: one kept alive to a worker that is retiring may be closed
    // under a request, which HTTP leaves to the client to retry (RFC 9112 §9.3.1).
    const answer = async (): Promise<string> => {
      const r = await request({ port }, '/', {});
      return r.ok ? r.body.trim() : r.why;
    };
    expect(await answer()).toBe(`v1 ${first}`);

    edit('v2');
    await waitUntil(() => cli.stderr.includes('reload done: 1 of 1'), 'the reload after the edit', SETTLE_MS);
    const [second] = await workersOf(primary, 1);
    expect(await answer()).toBe(`v2 ${second}`);

    edit('bad');
    await waitUntil(() => cli.stderr.includes('reload failed'), 'the failed reload', SETTLE_MS);
    expect(await answer()).toBe(`v2 ${second}`);

    // Each import appends to imports.log beside the app: that and dependencies never reload.
    const reloads = cli.stderr.match(/changed, reloading/g)?.length ?? 0;
    expect(reloads).toBe(2);
    mkdirSync(path.join(dir, 'node_modules'));
    writeFileSync(path.join(dir, 'node_modules', 'dep.js'), 'x');
    writeFileSync(path.join(dir, 'data.txt'), 'x');
    await sleep(500);
    expect(cli.stderr.match(/changed, reloading/g)?.length ?? 0).toBe(reloads);
  }, 90_000);
});

describe('the graceful timeout', () => {
  it("BODY-16, BODY-17: cutting a body that ignores nsgi.signal runs its finally before the process exits", async () => {
    const { cli, port, primary } = await startWorkers(['--graceful-timeout', '0.5']);
    const client = net.connect(port, '127.0.0.1');
    let text = '';
    client.setEncoding('latin1').on('data', (d: string) => (text += d));
    client.on('error', () => {});
    client.write('GET /endless HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => text.includes('tick 1'), 'the body to start', 10_000);
    process.kill(primary, 'SIGTERM');
    expect((await cli.waitForExit(10_000)).code).toBe(0);
    client.destroy();
    expect(readFileSync(path.join(dir, 'finally.log'), 'utf8')).toBe(`finally ${primary}\n`);
  }, 60_000);
});

describe('SIGHUP without --workers', () => {
  it('logs that there is nothing to reload and keeps serving, as a systemd ExecReload needs', async () => {
    const { cli, port, primary } = await startWorkers([]);
    const stream = runLoad({ port }, AbortSignal.timeout(1500), { concurrency: 2 });
    await sleep(300);
    process.kill(primary, 'SIGHUP');
    process.kill(primary, 'SIGTTIN');
    const report = await stream;
    expect(report.failures).toEqual([]);
    expect(cli.running).toBe(true);
    expect(cli.stderr).toContain('received SIGHUP, but without --workers there are no workers to reload; still serving');
    expect(cli.stderr).toContain('received SIGTTIN, but without --workers there are no workers to add; still serving');
    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(await res.text()).toBe(`v1 ${primary}\n`);
  }, 60_000);
});
