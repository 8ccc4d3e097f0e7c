/**
 * The soak test (issue 5): many clients streaming from one nsgi process for a while, with the
 * server's resident memory sampled before, during and after, to show that memory stays bounded
 * and comes back down once the load stops. Not part of `npm test`; run by hand:
 *
 *   node --import tsx test/bench/soak.ts [--seconds 60] [--clients 200] [--mib 4] [--no-write]
 *
 * It starts `node bin/nsgi.js test/fixtures/stream.ts --port 0` in a child process, runs
 * `--clients` concurrent clients that each download `/stream?mib=N` again and again (half over a
 * keep-alive agent, half on a new connection each time) until `--seconds` have passed, reads the
 * server's VmRSS from /proc/PID/status every few seconds, prints a table, and writes it into
 * BENCHMARKS.md between the `<!-- soak:start -->` and `<!-- soak:end -->` markers (the section is
 * added at the end of the file if the markers are missing; nothing else in the file is touched).
 * Everything is bounded: a hard deadline kills the server and exits 1 if the run hangs.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BENCHMARKS = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url));
const START = '<!-- soak:start -->';
const END = '<!-- soak:end -->';

interface Options {
  seconds: number;
  clients: number;
  mib: number;
  write: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { seconds: 60, clients: 200, mib: 4, write: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${arg} needs a positive number`);
      return v;
    };
    if (arg === '--seconds') options.seconds = next();
    else if (arg === '--clients') options.clients = Math.floor(next());
    else if (arg === '--mib') options.mib = Math.floor(next());
    else if (arg === '--no-write') options.write = false;
    else throw new Error(`unknown argument ${arg}; usage: soak.ts [--seconds 60] [--clients 200] [--mib 4] [--no-write]`);
  }
  return options;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** rssMiB reads a process's resident set size from /proc, in MiB. */
function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

interface Sample {
  phase: 'before' | 'during' | 'after';
  t: number;
  rss: number;
  requests: number;
  mib: number;
  open: number;
}

interface Totals {
  requests: number;
  bytes: number;
  errors: number;
  open: number;
  lastError: string;
}

/** download fetches one /stream response and resolves with its length; rejects on any failure. */
function download(port: number, mib: number, agent: http.Agent | false, totals: Totals): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/stream?mib=${mib}`, agent }, (res) => {
      let n = 0;
      res.on('data', (chunk: Buffer) => {
        n += chunk.length;
        totals.bytes += chunk.length;
      });
      res.on('end', () => (res.statusCode === 200 && n === mib * 1024 * 1024 ? resolve(n) : reject(new Error(`status ${res.statusCode}, ${n} bytes`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('no progress for 30 s')));
  });
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const hardDeadline = setTimeout(() => {
    process.stderr.write('soak: hard deadline passed; killing the server\n');
    server.kill('SIGKILL');
    process.exit(1);
  }, (options.seconds + 90) * 1000);
  hardDeadline.unref();

  const server = spawn(process.execPath, ['bin/nsgi.js', 'test/fixtures/stream.ts', '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let serverErr = '';
  server.stderr!.setEncoding('utf8').on('data', (t: string) => (serverErr += t));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`nsgi did not start within 20 s: ${serverErr}`)), 20_000);
    server.stdout!.setEncoding('utf8').on('data', (t: string) => {
      out += t;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    server.once('exit', (code) => reject(new Error(`nsgi exited with ${code}: ${serverErr}`)));
  });
  const pid = server.pid!;
  const samples: Sample[] = [];
  const totals: Totals = { requests: 0, bytes: 0, errors: 0, open: 0, lastError: '' };
  const t0 = Date.now();
  const sample = (phase: Sample['phase']): void => {
    const s: Sample = { phase, t: (Date.now() - t0) / 1000, rss: rssMiB(pid), requests: totals.requests, mib: totals.bytes / 1024 / 1024, open: totals.open };
    samples.push(s);
    process.stdout.write(`${phase.padEnd(6)} t=${s.t.toFixed(1).padStart(5)} s  rss=${s.rss.toFixed(1).padStart(7)} MiB  requests=${s.requests}  streamed=${s.mib.toFixed(0)} MiB  open=${s.open}\n`);
  };

  // Warm up: one small request so the app module is loaded and compiled before "before".
  await download(port, 1, false, totals);
  totals.requests = 0;
  totals.bytes = 0;
  await sleep(1000);
  sample('before');

  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: options.clients });
  const stopAt = Date.now() + options.seconds * 1000;
  const client = async (i: number): Promise<void> => {
    const agent = i % 2 === 0 ? keepAlive : false;
    while (Date.now() < stopAt) {
      totals.open++;
      try {
        await download(port, options.mib, agent, totals);
        totals.requests++;
      } catch (err) {
        totals.errors++;
        totals.lastError = `${agent === false ? 'new connection' : 'keep-alive'} client at t=${((Date.now() - t0) / 1000).toFixed(1)} s: ${String(err)}`;
        process.stderr.write(`soak: ${totals.lastError}\n`);
      } finally {
        totals.open--;
      }
    }
  };
  const sampler = setInterval(() => sample('during'), 5000);
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  clearInterval(sampler);
  keepAlive.destroy();
  const loadSeconds = (Date.now() - t0) / 1000;
  sample('after');
  for (let i = 0; i < 3; i++) {
    await sleep(5000);
    sample('after');
  }

  server.kill('SIGTERM');
  const exitCode = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      server.kill('SIGKILL');
      resolve(null);
    }, 15_000);
    server.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  clearTimeout(hardDeadline);

  const before = samples.find((s) => s.phase === 'before')!;
  const during = samples.filter((s) => s.phase === 'during');
  const peak = Math.max(...during.map((s) => s.rss), before.rss);
  const last = samples[samples.length - 1]!;
  const gib = totals.bytes / 1024 ** 3;
  const summary = [
    `${options.clients} clients (half keep-alive, half a new connection per request) each downloading ` +
      `${options.mib} MiB streams from one nsgi process for ${options.seconds} s: ${totals.requests} responses, ` +
      `${gib.toFixed(1)} GiB (${(gib / loadSeconds * 1024).toFixed(0)} MiB/s), ${totals.errors} errors; ` +
      `server RSS ${before.rss.toFixed(1)} MiB before, peak ${peak.toFixed(1)} MiB during, ` +
      `${last.rss.toFixed(1)} MiB ${(last.t - loadSeconds).toFixed(0)} s after; SIGTERM exit code ${exitCode}.`,
  ];
  const table = [
    '| phase | t (s) | server RSS (MiB) | responses | streamed (MiB) | in flight |',
    '|---|---:|---:|---:|---:|---:|',
    ...samples.map((s) => `| ${s.phase} | ${s.t.toFixed(1)} | ${s.rss.toFixed(1)} | ${s.requests} | ${s.mib.toFixed(0)} | ${s.open} |`),
  ];
  const env = `Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim() ?? 'unknown'}), ${os.platform()} ${os.release()}; ` +
    `recorded ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC by \`node --import tsx test/bench/soak.ts --seconds ${options.seconds} --clients ${options.clients} --mib ${options.mib}\`.`;
  const section = [summary.join(''), '', ...table, '', env + (totals.errors > 0 ? ` Last error: ${totals.lastError}` : '')].join('\n');
  process.stdout.write(`\n${section}\n`);

  if (options.write) {
    const text = readFileSync(BENCHMARKS, 'utf8');
    const start = text.indexOf(START);
    const end = text.indexOf(END);
    const block = `${START}\n${section}\n${END}`;
    const updated =
      start !== -1 && end > start
        ? text.slice(0, start) + block + text.slice(end + END.length)
        : `${text.replace(/\n*$/, '\n')}\n## Soak\n\n\`node --import tsx test/bench/soak.ts\` (not part of \`npm test\`): many clients streaming from one nsgi process; ` +
          `the server's RSS (VmRSS from /proc) before, during and after the load.\n\n${block}\n`;
    writeFileSync(BENCHMARKS, updated);
    process.stdout.write(`soak: results written to ${BENCHMARKS}\n`);
  }
  return totals.errors === 0 && exitCode === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
