/**
 * `nsgi --interface`: `auto` recognises an nsgi app, a Hono app exported as `export default app`
 * and an Express app, says which it chose, and refuses anything else with the usual one-line
 * message; `fetch` and `node` name the interface outright.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { killAllClis, runCli, startCli } from '../helpers/spawn-cli.ts';
import { parseCliArgs } from '../../src/cli.ts';
import { waitUntil } from '../helpers/server.ts';

/** SPAWN_TEST_TIMEOUT_MS bounds a test that starts a CLI process (tsx compiles on first load). */
const SPAWN_TEST_TIMEOUT_MS = 30_000;

afterEach(killAllClis);

describe('--interface', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it('auto serves a Hono default export as a fetch handler, with the environ as c.env', async () => {
    const { cli, url } = await startCli(['test/cli/fixtures/hono-default.ts', '--port', '0']);
    expect(await (await fetch(`${url}/hello/ada`)).text()).toBe('hello ada from hono');
    expect(await (await fetch(`${url}/env`)).json()).toEqual({ remote: '127.0.0.1', signal: true });
    await waitUntil(() => cli.stderr.includes('\n'), 'the interface line');
    expect(cli.stderr).toContain('as a fetch handler (Request -> Response) (--interface fetch)');
  });

  it('auto serves an Express app as a node:http listener', async () => {
    const { cli, url } = await startCli(['test/cli/fixtures/listeners.ts', '--port', '0']);
    expect(await (await fetch(`${url}/users/7`)).json()).toEqual({ id: '7', from: 'express' });
    await waitUntil(() => cli.stderr.includes('\n'), 'the interface line');
    expect(cli.stderr).toContain('as a node:http listener (req, res) (--interface node)');
  });

  it('auto takes a plain function for an nsgi app, and says so', async () => {
    const { cli, url } = await startCli(['test/fixtures/app.ts', '--port', '0']);
    expect((await fetch(`${url}/`)).status).toBe(200);
    await waitUntil(() => cli.stderr.includes('\n'), 'the interface line');
    expect(cli.stderr).toContain('as an nsgi app (--interface nsgi)');
  });

  it('--interface node serves a bare (req, res) listener', async () => {
    const { url } = await startCli(['test/cli/fixtures/listeners.ts:plain', '--interface', 'node', '--port', '0']);
    expect(await (await fetch(`${url}/a?b=1`)).text()).toBe('plain GET /a?b=1');
  });

  it('refuses a value no interface can call with one line, exit 2', async () => {
    const result = await runCli(['test/cli/fixtures/listeners.ts:notAnApp', '--port', '0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^nsgi: export "notAnApp" of test\/cli\/fixtures\/listeners.ts is a number, not an app function\n$/);
    const fetchKind = await runCli(['test/cli/fixtures/listeners.ts:notAnApp', '--interface', 'fetch', '--port', '0']);
    expect(fetchKind.stderr).toMatch(/^nsgi: .* is a number, not a function or an object with a fetch\(\) method \(--interface fetch\)\n$/);
  });

  it('refuses an unknown interface name', () => {
    expect(() => parseCliArgs(['--interface', 'wsgi', 'app.ts'])).toThrow('--interface must be one of auto, nsgi, fetch, node, got "wsgi"');
    expect(parseCliArgs(['app.ts']).command === 'serve' && 'interface' in parseCliArgs(['app.ts'])).toBe(false);
    expect(parseCliArgs(['--interface=fetch', 'app.ts'])).toMatchObject({ interface: 'fetch' });
  });
});
