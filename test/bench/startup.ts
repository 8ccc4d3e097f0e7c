/**
 * What one fresh server process costs before it does any work: the time from spawning it to its
 * listening line, and its resident memory once it has answered one request and sat idle. nsgi is
 * run as its users run it, from the repository packed and installed into a temporary project
 * (test/helpers/package.ts), and compared with node:http serving the same response from the same
 * project, in the same run. Two more rows show what a loader costs: a TypeScript app (tsx is
 * registered for it), and a JavaScript app served from this repository's sources, which every
 * process ran through tsx before nsgi shipped compiled JavaScript.
 *
 * Each run starts every server once, in an order rotated from run to run; each figure is the
 * median of the runs, printed with its min and max, because other work on the machine moves
 * single runs. Writes the table between the start-up markers of BENCHMARKS.md.
 *
 *   node --import tsx test/bench/startup.ts [--runs 7] [--no-write]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installPackage, packRepository } from '../helpers/package.ts';
import { REPO_ROOT } from '../helpers/spawn-cli.ts';
import { rssBytes, sleep } from './lib/proc.ts';
import { rewriteSection } from './lib/report.ts';
import { fmt, summarize, type Summary } from './lib/stats.ts';

const MARKDOWN = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url));
const START = '<!-- startup:start -->';
const END = '<!-- startup:end -->';
/** How long a server sits idle after its one request before its RSS is read. */
const SETTLE_MS = 1000;
/** How long a server may take to print its listening line. */
const READY_TIMEOUT_MS = 30_000;
/** How long a server gets to exit on SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** The body every server answers with, checked so that a broken server cannot pass for a fast one. */
const BODY = 'Hello, World!\n';

/** The apps and the node:http server, written into the consumer project. */
const FILES: Record<string, string> = {
  'app.mjs': `export default function* app(environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  yield ${JSON.stringify(BODY)};
}
`,
  'app.ts': `import type { App } from 'nsgi';
const app: App = function* (environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  yield ${JSON.stringify(BODY)};
};
export default app;
`,
  'node-http.mjs': `import http from 'node:http';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(${JSON.stringify(BODY)});
});
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`,
};

/** Contender is one way of running a server: a label and the command, run in the consumer project. */
interface Contender {
  readonly label: string;
  readonly args: (project: string) => string[];
}

const CONTENDERS: Contender[] = [
  { label: 'node:http (node-http.mjs)', args: () => ['node-http.mjs'] },
  { label: 'nsgi, installed package, `.mjs` app', args: () => ['node_modules/nsgi/bin/nsgi.js', 'app.mjs', '--port', '0'] },
  { label: 'nsgi, installed package, `.ts` app (tsx registered)', args: () => ['node_modules/nsgi/bin/nsgi.js', 'app.ts', '--port', '0'] },
  { label: 'nsgi from a clone, `.mjs` app (sources through tsx)', args: (project) => [path.join(REPO_ROOT, 'bin/nsgi.js'), path.join(project, 'app.mjs'), '--port', '0'] },
];

/** Sample is one fresh server's start-up time and idle RSS. */
interface Sample {
  readonly startMs: number;
  readonly rssMiB: number;
}

/** measure starts one server, waits for its listening line, requests it once, lets it idle, reads its RSS and stops it. */
async function measure(args: string[], cwd: string): Promise<Sample> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        stdout += text;
        const match = /listening on (http:\/\/\S+)/.exec(stdout);
        if (match === null) return;
        clearTimeout(timer);
        resolve(match[1]!);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before listening`));
      });
    });
    const startMs = Number(process.hrtime.bigint() - started) / 1e6;
    const body = await (await fetch(url, { headers: { connection: 'close' } })).text();
    if (body !== BODY) throw new Error(`answered ${JSON.stringify(body)}`);
    await sleep(SETTLE_MS);
    return { startMs, rssMiB: rssBytes(child.pid!) / 1024 / 1024 };
  } catch (err) {
    throw new Error(`node ${args.join(' ')}: ${(err as Error).message}; stderr: ${JSON.stringify(stderr)}`);
  } finally {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(killer);
  }
}

/** range prints a summary as `median (min–max)`. */
function range(s: Summary, unit: string): string {
  return `${fmt(s.median)} ${unit} (${fmt(s.min)}–${fmt(s.max)})`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const runsAt = argv.indexOf('--runs');
  const runs = runsAt === -1 ? 7 : Number(argv[runsAt + 1]);
  if (!Number.isInteger(runs) || runs < 3) throw new Error('--runs must be a whole number of at least 3');
  const write = !argv.includes('--no-write');

  const root = mkdtempSync(path.join(os.tmpdir(), 'nsgi-startup-'));
  try {
    console.log('packing and installing nsgi ...');
    const packed = await packRepository(root);
    const project = path.join(root, 'project');
    await installPackage(packed.tarball, project, { type: 'module' });
    for (const [name, text] of Object.entries(FILES)) writeFileSync(path.join(project, name), text);

    const loadBefore = os.loadavg();
    const samples = CONTENDERS.map(() => [] as Sample[]);
    for (let run = 0; run < runs; run++) {
      for (let k = 0; k < CONTENDERS.length; k++) {
        const i = (run + k) % CONTENDERS.length;
        const contender = CONTENDERS[i]!;
        const sample = await measure(contender.args(project), project);
        samples[i]!.push(sample);
        console.log(`run ${run + 1}/${runs} ${contender.label}: listening after ${sample.startMs.toFixed(0)} ms, idle RSS ${sample.rssMiB.toFixed(1)} MiB`);
      }
    }
    const loadAfter = os.loadavg();

    const baseline = summarize(samples[0]!.map((s) => s.rssMiB)).median;
    const rows = CONTENDERS.map((c, i) => {
      const start = summarize(samples[i]!.map((s) => s.startMs));
      const rss = summarize(samples[i]!.map((s) => s.rssMiB));
      const over = i === 0 ? '-' : `${rss.median - baseline >= 0 ? '+' : ''}${(rss.median - baseline).toFixed(1)} MiB`;
      return `| ${c.label} | ${range(start, 'ms')} | ${range(rss, 'MiB')} | ${over} |`;
    });
    const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
    const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' / ');
    const section = [
      `_Written by \`node --import tsx test/bench/startup.ts --runs ${runs}\` on ${new Date().toISOString().slice(0, 19)}Z: ` +
        `Node ${process.version}, ${cpu}, ${os.cpus().length} cores, Linux ${os.release()}; load average ${load(loadBefore)} before and ` +
        `${load(loadAfter)} after (1/5/15 min); medians of ${runs} runs with their min–max, since other work on the machine moves single runs._`,
      '',
      `| server | spawn to listening line | idle RSS after one request and ${SETTLE_MS / 1000} s | RSS over node:http |`,
      '|---|---:|---:|---:|',
      ...rows,
    ].join('\n');
    console.log(`\n${section}\n`);
    if (write) {
      rewriteSection(MARKDOWN, START, END, section);
      console.log(`wrote ${MARKDOWN}`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
