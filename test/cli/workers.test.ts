/**
 * `--workers` with real signals sent to a real `nsgi` process: two pids serve one port,
 * `nsgi.multiprocess` is true, a SIGKILLed worker is replaced, SIGTERM to the primary stops every
 * worker, and a module that fails to load stops the primary with one line. The app is
 * test/fixtures/app.ts (`/pid` reports the serving process).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive as alive, workerPids as childrenOf } from '../helpers/processes.ts';
import { RawClient, cleanup, finalResponses, waitUntil } from '../helpers/server.ts';
import { killAllClis, runCli, startCli } from '../helpers/spawn-cli.ts';

const pidsToKill = new Set<number>();

afterEach(async () => {
  await cleanup();
  await killAllClis();
  for (const pid of pidsToKill) if (alive(pid)) process.kill(pid, 'SIGKILL');
  pidsToKill.clear();
});

const APP = 'test/fixtures/app.ts';

/** get makes one request on a new connection and returns the complete response's body. */
async function get(port: number, path: string): Promise<string> {
  const client = await RawClient.connect(port);
  try {
    client.write(`GET ${path} HTTP/1.1\nHost: a\nConnection: close\n\n`);
    await client.waitForClose();
    const [r] = finalResponses(client.data, { closed: true });
    expect(r?.status).toBe(200);
    expect(r!.complete).toBe(true);
    return r!.body.toString();
  } finally {
    client.destroy();
  }
}
describe('--workers 2', () => {
  /** pidsSeen makes requests on new connections until `want` distinct pids answered. */
  async function pidsSeen(port: number, want: number, tries = 60): Promise<Set<number>> {
    const pids = new Set<number>();
    for (let i = 0; i < tries && pids.size < want; i++) {
      const body = JSON.parse(await get(port, '/pid')) as { pid: number; multiprocess: boolean };
      expect(body.multiprocess).toBe(true);
      pids.add(body.pid);
    }
    return pids;
  }

  /** servingPids keeps asking (up to 15 s) until `want` distinct worker pids have answered. */
  async function servingPids(port: number, want: number): Promise<Set<number>> {
    const deadline = Date.now() + 15_000;
    const seen = new Set<number>();
    while (seen.size < want && Date.now() < deadline) {
      for (const pid of await pidsSeen(port, want, 10)) seen.add(pid);
      if (seen.size < want) await new Promise((r) => setTimeout(r, 100));
    }
    return seen;
  }

  it('serves from two processes, replaces a SIGKILLed worker, and SIGTERM stops them all with exit 0', async () => {
    const { cli, port } = await startCli([APP, '--port', '0', '--workers', '2']);
    const primary = cli.child.pid!;
    pidsToKill.add(primary);
    await waitUntil(() => childrenOf(primary).length === 2, 'two worker processes', 10_000);
    const workers = childrenOf(primary);
    for (const pid of workers) pidsToKill.add(pid);

    // The first worker to listen prints the listening line; the other may still be loading the app.
    const pids = await servingPids(port, 2);
    expect(pids.size).toBe(2);
    expect([...pids].sort()).toEqual([...workers].sort());
    expect(pids.has(primary)).toBe(false);

    // Kill one worker: the primary logs it and starts another; requests keep succeeding.
    const victim = workers[0]!;
    process.kill(victim, 'SIGKILL');
    await waitUntil(() => cli.stderr.includes(`worker ${victim} died (signal SIGKILL)`), 'the primary to log the death', 5000);
    for (let i = 0; i < 10; i++) expect(await get(port, '/')).toBe('ok');
    await waitUntil(() => childrenOf(primary).filter((p) => p !== victim).length === 2, 'a replacement worker', 10_000);
    const now = childrenOf(primary);
    for (const pid of now) pidsToKill.add(pid);
    expect(now).not.toContain(victim);
    const replacement = now.find((p) => !workers.includes(p))!;
    expect(replacement).toBeDefined();
    // The replacement serves once it has loaded the app and listens (tsx compiles it first).
    const after = await servingPids(port, 2);
    expect([...after].sort()).toEqual([...now].sort());

    // SIGTERM to the primary reaches every worker; nothing is left running.
    cli.child.kill('SIGTERM');
    const result = await cli.waitForExit(10_000);
    expect(result.code).toBe(0);
    for (const pid of now) expect(alive(pid), `worker ${pid} still alive`).toBe(false);
    expect(childrenOf(primary)).toEqual([]);
  }, 60_000);

  it('SIGTERM to the primary lets an in-flight response on a worker finish', async () => {
    const { cli, port } = await startCli([APP, '--port', '0', '--workers', '2']);
    pidsToKill.add(cli.child.pid!);
    await waitUntil(() => childrenOf(cli.child.pid!).length === 2, 'two worker processes', 10_000);
    const workers = childrenOf(cli.child.pid!);
    for (const pid of workers) pidsToKill.add(pid);
    const slow = await RawClient.connect(port);
    slow.write('GET /slow HTTP/1.1\nHost: a\n\n');
    await slow.waitForText('slow 0');
    cli.child.kill('SIGTERM');
    await slow.waitForClose(5000);
    const [r] = finalResponses(slow.data, { closed: true });
    expect(r!.complete).toBe(true);
    expect(r!.body.toString().endsWith('done\n')).toBe(true);
    const result = await cli.waitForExit(10_000);
    expect(result.code).toBe(0);
    for (const pid of workers) expect(alive(pid)).toBe(false);
  }, 60_000);

  it('a bad app with --workers 2 exits 2 with one error line', async () => {
    const result = await runCli(['test/fixtures/bad.ts', '--port', '0', '--workers', '2']);
    expect(result.code).toBe(2);
    const lines = result.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^nsgi: cannot load test\/fixtures\/bad\.ts: .*broken on purpose/);
    expect(result.stdout).toBe('');
  }, 30_000);
});
