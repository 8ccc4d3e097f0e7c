/**
 * Configuration beyond the command line: every option from the environment (`NSGI_*`, then the
 * plain `PORT`, `HOST` and `WEB_CONCURRENCY` platforms set), the command line winning; sizes with
 * K/M/G suffixes; `--log-level` for nsgi's own messages; `--max-requests` and its jitter.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { environmentName, main, parseByteCount, parseCliArgs, type ServeCommand } from '../../src/cli.ts';
import { freePort } from '../helpers/processes.ts';
import { killAllClis, runCli, startCli } from '../helpers/spawn-cli.ts';

afterEach(killAllClis);

const APP = 'test/fixtures/app.ts';

function serveCommand(argv: readonly string[], env: Record<string, string> = {}): ServeCommand {
  const command = parseCliArgs(argv, env);
  if (command.command !== 'serve') throw new Error(`expected a serve command, got ${command.command}`);
  return command;
}

/** Sink collects what main writes. */
function sink(): { text: string; write(t: string): void } {
  return {
    text: '',
    write(t: string) {
      this.text += t;
    },
  };
}

describe('options from the environment', () => {
  it('names each variable after its option', () => {
    expect(environmentName('port')).toBe('NSGI_PORT');
    expect(environmentName('max-body-size')).toBe('NSGI_MAX_BODY_SIZE');
    expect(environmentName('forwarded-allow-ips')).toBe('NSGI_FORWARDED_ALLOW_IPS');
  });

  it('reads NSGI_* values, flags and the app, the command line winning', () => {
    const env = {
      NSGI_PORT: '9001',
      NSGI_HOST: '0.0.0.0',
      NSGI_ACCESS_LOG: 'true',
      NSGI_MAX_BODY_SIZE: '10M',
      NSGI_GRACEFUL_TIMEOUT: '2.5',
      NSGI_APP: 'env-app.ts',
      NSGI_LOG_LEVEL: 'warning',
    };
    const fromEnv = serveCommand([], env);
    expect(fromEnv).toMatchObject({ target: 'env-app.ts', port: 9001, host: '0.0.0.0', accessLog: true, maxBodySize: 10 * 1024 * 1024, gracefulTimeout: 2500, logLevel: 'warning' });
    const overridden = serveCommand(['--port', '9002', '--max-body-size', '1K', 'cli-app.ts'], env);
    expect(overridden).toMatchObject({ target: 'cli-app.ts', port: 9002, maxBodySize: 1024, host: '0.0.0.0' });
  });

  it('falls back to PORT, HOST and WEB_CONCURRENCY, after their NSGI_* names', () => {
    expect(serveCommand(['a.ts'], { PORT: '28125', HOST: '::1', WEB_CONCURRENCY: '3' })).toMatchObject({ port: 28125, host: '::1', workers: 3 });
    expect(serveCommand(['a.ts'], { PORT: '28125', NSGI_PORT: '28126' }).port).toBe(28126);
    expect(serveCommand(['a.ts', '--port', '1'], { PORT: '28125' }).port).toBe(1);
  });

  it('treats an empty variable as unset and a false flag as off', () => {
    expect(serveCommand(['a.ts'], { NSGI_PORT: '', NSGI_ACCESS_LOG: '0' })).toMatchObject({ port: 8000, accessLog: false });
  });

  it('names the variable in the error for a bad value', () => {
    expect(() => parseCliArgs(['a.ts'], { NSGI_PORT: 'eighty' })).toThrow('NSGI_PORT (environment) must be a number from 0 to 65535, got "eighty"');
    expect(() => parseCliArgs(['a.ts'], { PORT: '70000' })).toThrow('PORT (environment) must be from 0 to 65535, got 70000');
    expect(() => parseCliArgs(['a.ts'], { NSGI_ACCESS_LOG: 'maybe' })).toThrow(/NSGI_ACCESS_LOG \(environment\) must be 1, true, yes, on, 0, false, no or off, got "maybe"/);
    expect(() => parseCliArgs(['a.ts'], { NSGI_WORKERS: '0' })).toThrow('NSGI_WORKERS (environment) must be a whole number of at least 1, got "0"');
  });

  it('a process started with PORT in its environment listens there', async () => {
    const port = await freePort();
    const stop = new AbortController();
    const stdout = sink();
    const stderr = sink();
    const running = main([APP], { stdout, stderr, env: { PORT: String(port) }, signal: stop.signal });
    for (let i = 0; i < 200 && !stdout.text.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(stdout.text).toBe(`nsgi: listening on http://127.0.0.1:${port}\n`);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok');
    stop.abort();
    expect(await running).toBe(0);
  }, 20_000);
});

describe('sizes', () => {
  it('accept K, M and G in powers of 1024, with or without a B', () => {
    expect(parseByteCount('--max-body-size', '0')).toBe(0);
    expect(parseByteCount('--max-body-size', '512')).toBe(512);
    expect(parseByteCount('--max-body-size', '64k')).toBe(64 * 1024);
    expect(parseByteCount('--max-body-size', '10M')).toBe(10 * 1024 * 1024);
    expect(parseByteCount('--max-body-size', '1G')).toBe(1024 ** 3);
    expect(parseByteCount('--max-body-size', '16MiB')).toBe(16 * 1024 * 1024);
    expect(parseByteCount('--max-body-size', '2MB')).toBe(2 * 1024 * 1024);
  });

  it('refuse anything else, naming the option', () => {
    for (const bad of ['10X', '1.5M', '-1', 'M', '', '10 M B']) {
      expect(() => parseByteCount('--max-body-size', bad)).toThrow(/--max-body-size must be a whole number of bytes, optionally with K, M or G \(such as 10M\)/);
    }
  });

  it('--max-body-size 1K answers 413 to a larger body', async () => {
    const { url } = await startCli([APP, '--port', '0', '--max-body-size', '1K']);
    expect((await fetch(`${url}/upload`, { method: 'POST', body: 'x'.repeat(1024) })).status).toBe(200);
    expect((await fetch(`${url}/upload`, { method: 'POST', body: 'x'.repeat(1025) })).status).toBe(413);
  }, 30_000);
});

describe('--log-level', () => {
  it('accepts the four levels and refuses others', () => {
    for (const level of ['error', 'warning', 'info', 'debug'] as const) expect(serveCommand(['a.ts', '--log-level', level]).logLevel).toBe(level);
    expect(() => parseCliArgs(['a.ts', '--log-level', 'verbose'])).toThrow('--log-level must be one of error, warning, info, debug, got "verbose"');
  });

  it('error keeps the shutdown notice off stderr; info (the default) shows it', async () => {
    const quiet = await startCli([APP, '--port', '0', '--log-level', 'error']);
    quiet.cli.kill('SIGTERM');
    const q = await quiet.cli.waitForExit(10_000);
    expect(q.code).toBe(0);
    expect(q.stderr).toBe('');
    const normal = await startCli([APP, '--port', '0']);
    normal.cli.kill('SIGTERM');
    const n = await normal.cli.waitForExit(10_000);
    expect(n.stderr).toMatch(/^nsgi: serving test\/fixtures\/app.ts as an nsgi app \(--interface nsgi\)\nnsgi: received SIGTERM, closing/);
  }, 30_000);

  it('errors the user must see are printed at every level', async () => {
    const result = await runCli(['test/fixtures/bad.ts', '--port', '0', '--log-level', 'error']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^nsgi: cannot load test\/fixtures\/bad\.ts/);
  }, 30_000);
});

describe('--access-log-format', () => {
  it('json prints one JSON object per response on stdout, after the listening line', async () => {
    const { cli, url } = await startCli([APP, '--port', '0', '--access-log-format', 'json']);
    expect(await (await fetch(`${url}/hello`, { headers: { 'user-agent': 'probe' } })).text()).toBe('ok');
    for (let i = 0; i < 100 && cli.stdout.split('\n').length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    const record = JSON.parse(cli.stdout.split('\n')[1]!) as Record<string, unknown>;
    expect(record).toMatchObject({ remote_addr: '127.0.0.1', request: 'GET /hello HTTP/1.1', status: 200, bytes: 2, user_agent: 'probe' });
  }, 30_000);

  it('refuses other formats', () => {
    expect(() => parseCliArgs(['a.ts', '--access-log-format', 'xml'])).toThrow('--access-log-format must be one of combined, json, got "xml"');
    expect(serveCommand(['a.ts'], { NSGI_ACCESS_LOG_FORMAT: 'json' })).toMatchObject({ accessLog: true, accessLogFormat: 'json' });
  });
});

describe('--max-requests', () => {
  it('parses with its jitter, which needs it', () => {
    expect(serveCommand(['a.ts', '--max-requests', '1000', '--max-requests-jitter', '50'])).toMatchObject({ maxRequests: 1000, maxRequestsJitter: 50 });
    expect(() => parseCliArgs(['a.ts', '--max-requests-jitter', '50'])).toThrow('--max-requests-jitter needs --max-requests');
    expect(() => parseCliArgs(['a.ts', '--max-requests', '0'])).toThrow('--max-requests must be a whole number of at least 1, got "0"');
  });
});
