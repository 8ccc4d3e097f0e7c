/**
 * `nsgi --certfile --keyfile` as an operator runs it: HTTPS checked with curl against a
 * certificate openssl made in a temp dir, renewed certificates picked up on SIGHUP without a
 * restart (alone and with workers), and unreadable or mismatched files refused with one line.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeCert, type Cert } from '../helpers/certs.ts';
import { curl, waitUntil } from '../helpers/server.ts';
import { CliProcess, killAllClis, runCli, trackCli } from '../helpers/spawn-cli.ts';

const APP = 'test/fixtures/app.ts';
let dir = '';
let first: Cert;
let second: Cert;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-cli-tls-'));
  first = makeCert(dir, 'first');
  second = makeCert(dir, 'second');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(killAllClis);

/** startTls runs nsgi with the live cert files and waits for its https listening line. */
async function startTls(live: { certfile: string; keyfile: string }, ...args: string[]): Promise<{ cli: CliProcess; port: number }> {
  const cli = trackCli(new CliProcess([APP, '--port', '0', '--certfile', live.certfile, '--keyfile', live.keyfile, ...args]));
  const match = await cli.waitForStdout(/^nsgi: listening on https:\/\/127\.0\.0\.1:(\d+)\n/);
  return { cli, port: Number(match[1]) };
}

/** servedCert asks curl for the certificate a new connection is served, as a SHA-256 fingerprint. */
async function servedCert(port: number, ca: string): Promise<{ body: string; fingerprint: string }> {
  const r = await curl(['-s', '--cacert', ca, '-w', '\n%{certs}', `https://127.0.0.1:${port}/`]);
  const text = r.stdout.toString();
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
  return { body: text.split('\n')[0]!, fingerprint: pem === null ? '' : new crypto.X509Certificate(pem[0]).fingerprint256 };
}

/** install copies `cert` to the paths the server is started with, as a renewal would. */
function install(cert: Cert, live: { certfile: string; keyfile: string }): void {
  copyFileSync(cert.certfile, live.certfile);
  copyFileSync(cert.keyfile, live.keyfile);
}

describe('--certfile and --keyfile', () => {
  for (const workers of [[], ['--workers', '2']]) {
    it(`serves HTTPS and rereads renewed certificates on SIGHUP ${workers.length === 0 ? 'alone' : 'with workers'}`, async () => {
      const live = { certfile: path.join(dir, `live${workers.length}.pem`), keyfile: path.join(dir, `live${workers.length}.key`) };
      install(first, live);
      const { cli, port } = await startTls(live, ...workers);
      const before = await servedCert(port, first.certfile);
      expect(before.body).toBe('ok');
      expect(before.fingerprint).toBe(new crypto.X509Certificate(first.cert).fingerprint256);

      install(second, live);
      process.kill(cli.child.pid!, 'SIGHUP');
      const want = new crypto.X509Certificate(second.cert).fingerprint256;
      let after = { body: '', fingerprint: '' };
      for (let i = 0; i < 150 && after.fingerprint !== want; i++) {
        after = await servedCert(port, second.certfile);
        if (after.fingerprint !== want) await new Promise((r) => setTimeout(r, 200));
      }
      expect(after).toEqual({ body: 'ok', fingerprint: want });
      expect(cli.running).toBe(true);
      if (workers.length === 0) expect(cli.stderr).toContain('nsgi: received SIGHUP, reloaded the TLS certificates');
    }, 60_000);
  }

  it('refuses a missing file, a key without its certificate, and a key that does not match, exit 2', async () => {
    const missing = await runCli([APP, '--port', '0', '--certfile', path.join(dir, 'nope.pem'), '--keyfile', first.keyfile]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^nsgi: TLS: cannot read the certificate .*nope\.pem: ENOENT/);
    const alone = await runCli([APP, '--keyfile', first.keyfile]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toBe('nsgi: --keyfile needs --certfile\n');
    const mismatched = await runCli([APP, '--port', '0', '--certfile', first.certfile, '--keyfile', second.keyfile]);
    expect(mismatched.code).toBe(2);
    expect(mismatched.stderr).toMatch(/^nsgi: TLS: .*(key values mismatch|KEY_VALUES_MISMATCH)/i);
  }, 30_000);

  it('keeps the old certificates when the renewed ones do not load', async () => {
    const live = { certfile: path.join(dir, 'keep.pem'), keyfile: path.join(dir, 'keep.key') };
    install(first, live);
    const { cli, port } = await startTls(live);
    writeFileSync(live.certfile, 'not a certificate');
    process.kill(cli.child.pid!, 'SIGHUP');
    await waitUntil(() => cli.stderr.includes('the TLS certificates were not reloaded'), 'the failed reload to be logged', 10_000);
    const still = await servedCert(port, first.certfile);
    expect(still).toEqual({ body: 'ok', fingerprint: new crypto.X509Certificate(first.cert).fingerprint256 });
  }, 30_000);
});

describe('--no-http2', () => {
  /** protocol asks curl, offering h2, which HTTP version it was served and with which certificate. */
  async function protocol(port: number, ca: string): Promise<{ version: string; fingerprint: string }> {
    const r = await curl(['--http2', '--cacert', ca, '-w', '\n%{http_version}\n%{certs}', `https://127.0.0.1:${port}/`]);
    const [, version] = r.stdout.toString().split('\n');
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout.toString());
    return { version: version!, fingerprint: pem === null ? '' : new crypto.X509Certificate(pem[0]).fingerprint256 };
  }

  it('serves h2 by default, reloads its certificates on SIGHUP, and HTTP/1.1 only with --no-http2', async () => {
    const live = { certfile: path.join(dir, 'h2.pem'), keyfile: path.join(dir, 'h2.key') };
    install(first, live);
    const { cli, port } = await startTls(live);
    expect(await protocol(port, first.certfile)).toEqual({ version: '2', fingerprint: new crypto.X509Certificate(first.cert).fingerprint256 });
    install(second, live);
    process.kill(cli.child.pid!, 'SIGHUP');
    await waitUntil(() => cli.stderr.includes('reloaded the TLS certificates'), 'the reload', 10_000);
    expect(await protocol(port, second.certfile)).toEqual({ version: '2', fingerprint: new crypto.X509Certificate(second.cert).fingerprint256 });
    const off = await startTls(live, '--no-http2');
    expect((await protocol(off.port, second.certfile)).version).toBe('1.1');
  }, 30_000);

  it('refuses --no-http2 without TLS, exit 2', async () => {
    const r = await runCli([APP, '--port', '0', '--no-http2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('nsgi: --no-http2 needs --certfile and --keyfile: HTTP/2 is only offered over TLS\n');
  });
});
