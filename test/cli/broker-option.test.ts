/**
 * The CLI's stream broker option: `--broker` parsed and checked, `NSGI_BROKER` as its default, and
 * a broker that cannot be reached stopping the command before it listens, with a line that says so.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BROKER_ENV } from '../../src/broker/default.ts';
import { EXIT_FAILURE, EXIT_USAGE, helpText, main, parseCliArgs } from '../../src/cli.ts';
import { freePort } from '../helpers/redis.ts';
import { REPO_ROOT } from '../helpers/spawn-cli.ts';

const saved = process.env[BROKER_ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[BROKER_ENV];
  else process.env[BROKER_ENV] = saved;
});

async function run(argv: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  const controller = new AbortController();
  const code = await main(argv, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) }, cwd: REPO_ROOT, signal: controller.signal });
  return { code, stderr, stdout };
}

describe('--broker', () => {
  it('takes memory, cluster or a redis:// URL, and refuses anything else naming it', () => {
    for (const broker of ['memory', 'cluster', 'redis://127.0.0.1:6379/0', 'rediss://cache.example:6380', 'redis://:secret@10.0.0.5:6379/2']) {
      expect(parseCliArgs(['--broker', broker, 'app.ts'])).toMatchObject({ broker });
    }
    expect(parseCliArgs(['app.ts'])).not.toHaveProperty('broker');
    expect(() => parseCliArgs(['--broker', 'mysql://db', 'app.ts'])).toThrow('--broker must be memory, cluster or redis://host:port/db, got "mysql://db"');
    expect(() => parseCliArgs(['--broker', 'redis://127.0.0.1:6379/zero', 'app.ts'])).toThrow(/got "redis:\/\/127\.0\.0\.1:6379\/zero"/);
    expect(helpText()).toMatch(/--broker URL +stream broker: memory, cluster or redis:\/\/host:port\/db/);
  });

  it('stops before listening, with one line naming Redis and the cause, when Redis is down', async () => {
    const port = await freePort();
    const { code, stderr, stdout } = await run(['test/fixtures/app.ts', '--port', '0', '--broker', `redis://127.0.0.1:${port}/0`]);
    expect(code).toBe(EXIT_FAILURE);
    expect(stdout).toBe('');
    expect(stderr).toBe(`nsgi: cannot start the stream broker: cannot reach Redis at redis://127.0.0.1:${port}/0: connect ECONNREFUSED 127.0.0.1:${port}\n`);
  });

  it('takes NSGI_BROKER when --broker is absent, and refuses a bad one naming the variable', async () => {
    process.env[BROKER_ENV] = 'carrier-pigeon';
    const { code, stderr } = await run(['test/fixtures/app.ts', '--port', '0']);
    expect(code).toBe(EXIT_USAGE);
    expect(stderr).toBe('nsgi: NSGI_BROKER (environment) must be memory, cluster or redis://host:port/db, got "carrier-pigeon"\n');
  });
});
