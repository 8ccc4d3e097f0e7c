/**
 * Profiles nsgi under load with `node --cpu-prof`: the server runs pinned to core 0 with a CPU
 * profiler, is driven for a fixed time (wrk on /hello, or back-to-back 1 KiB-chunk downloads), is
 * stopped with SIGTERM (the server exits, so the profile is written), and the profile's self time
 * is summed per function. Writes the summaries between the profile markers of BENCHMARKS.md.
 *
 *   node --import tsx test/bench/profile.ts [--seconds 10] [--only hello,pipelined,sync,async] [--no-write]
 *
 * The workloads: `hello` (wrk on /hello), `pipelined` (wrk, 16 requests per write), `sync` and
 * `async` (1 KiB chunks from a sync or an async generator); by default `hello` and `sync`.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { download } from './lib/clients.ts';
import { decidePinning, pinSelf, pinned, startServer } from './lib/proc.ts';
import { rewriteSection } from './lib/report.ts';
import { runWrk, wrkVersion } from './lib/wrk.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER = fileURLToPath(new URL('./servers/nsgi.ts', import.meta.url));
const PIPELINE = fileURLToPath(new URL('./wrk/pipeline.lua', import.meta.url));
const START = '<!-- profile:start -->';
const END = '<!-- profile:end -->';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** selfTimes sums each function's self time (µs) across the profile's samples. */
function selfTimes(profile: CpuProfile): { rows: Array<{ name: string; where: string; us: number }>; busy: number; idle: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const perNode = new Map<number, number>();
  profile.samples.forEach((id, i) => perNode.set(id, (perNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const perFunction = new Map<string, { name: string; where: string; us: number }>();
  let busy = 0;
  let idle = 0;
  for (const [id, us] of perNode) {
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const url = frame.url.replace(`file://${ROOT}`, '').replace(/^file:\/\/.*\/node_modules\//, 'node_modules/');
    // tsx compiles src/ on the fly, so V8's line numbers are the compiled code's: keep them only
    // for code Node runs as written.
    const where = url === '' ? '' : url.startsWith('node:') ? `${url}:${frame.lineNumber + 1}` : url;
    const name = frame.functionName || '(anonymous)';
    const key = `${name} ${where}`;
    const row = perFunction.get(key) ?? { name, where, us: 0 };
    row.us += us;
    perFunction.set(key, row);
  }
  return { rows: [...perFunction.values()].sort((a, b) => b.us - a.us), busy, idle };
}

function category(where: string, name: string): string {
  if (where.startsWith('src/')) return 'nsgi (src/)';
  if (where.startsWith('test/')) return 'bench app (test/bench/servers/)';
  if (where.startsWith('node:')) return 'Node internals (node:*)';
  if (name === '(garbage collector)') return 'garbage collector';
  if (name === '(program)') return '(program)';
  if (where === '') return 'native (socket writes, buffer copies)';
  return 'other';
}

/** summarize renders the top functions overall, the top ones in src/, and time per category. */
function summarize(title: string, profile: CpuProfile, top: number): string {
  const { rows, busy, idle } = selfTimes(profile);
  const pct = (us: number): string => `${((us / busy) * 100).toFixed(1)}%`;
  const categories = new Map<string, number>();
  for (const r of rows) categories.set(category(r.where, r.name), (categories.get(category(r.where, r.name)) ?? 0) + r.us);
  const table = (list: typeof rows): string[] => [
    '| self time | function | where |',
    '|---:|---|---|',
    ...list.map((r) => `| ${pct(r.us)} | \`${r.name}\` | ${r.where || '(native)'} |`),
  ];
  return [
    `#### ${title}`,
    '',
    `${(busy / 1e6).toFixed(1)} s of busy CPU sampled (plus ${(idle / 1e6).toFixed(1)} s idle); percentages are of busy time.`,
    '',
    [...categories.entries()].sort((a, b) => b[1] - a[1]).map(([c, us]) => `${c} ${pct(us)}`).join(' · '),
    '',
    `Top ${top} functions by self time:`,
    '',
    ...table(rows.slice(0, top)),
    '',
    `Top ${top} in src/:`,
    '',
    ...table(rows.filter((r) => r.where.startsWith('src/')).slice(0, top)),
    '',
  ].join('\n');
}

/** profileWorkload runs nsgi under the profiler while `load` runs, and returns the profile. */
async function profileWorkload(load: (port: number) => Promise<void>): Promise<CpuProfile> {
  const pinning = decidePinning();
  const dir = mkdtempSync(`${os.tmpdir()}/nsgi-prof-`);
  const [cmd, args] = pinned(pinning.server, process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--import', 'tsx', SERVER, '0']);
  const server = await startServer('nsgi', cmd, args, ROOT, null);
  try {
    await load(server.port);
  } finally {
    await server.stop();
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`no profile written in ${dir}; did the server exit on SIGTERM?`);
  const profile = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')) as CpuProfile;
  rmSync(dir, { recursive: true, force: true });
  return profile;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--seconds');
  const seconds = i >= 0 ? Number(argv[i + 1]) : 10;
  const pinning = decidePinning();
  pinSelf(pinning.client);
  if (wrkVersion() === null) throw new Error('wrk is not installed; install it with `apt-get install wrk`');
  const sections: string[] = [];

  const o = argv.indexOf('--only');
  const only = o >= 0 ? (argv[o + 1] ?? '').split(',') : ['hello', 'sync'];
  const downloads = (mode: string) => async (port: number) => {
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) await download(port, `/stream?size=${128 * 1024 * 1024}&chunk=1024&mode=${mode}`, 60_000);
  };
  const workloads: Array<[string, string, (port: number) => Promise<void>]> = [
    ['hello', `/hello, keep-alive, 50 connections (wrk, ${seconds} s)`, async (port) => {
      await runWrk({ url: `http://127.0.0.1:${port}/hello`, connections: 50, seconds, cpu: pinning.client });
    }],
    ['pipelined', `/hello, 16 pipelined per write, 50 connections (wrk, ${seconds} s)`, async (port) => {
      await runWrk({ url: `http://127.0.0.1:${port}/hello`, connections: 50, seconds, cpu: pinning.client, script: PIPELINE, env: { PIPELINE_DEPTH: '16' } });
    }],
    ['sync', `128 MiB in 1 KiB chunks, sync generator (back-to-back downloads, ${seconds} s)`, downloads('sync')],
    ['async', `128 MiB in 1 KiB chunks, async generator (back-to-back downloads, ${seconds} s)`, downloads('async')],
  ];
  for (const id of only) if (!workloads.some(([w]) => w === id)) throw new Error(`unknown workload ${id}: use ${workloads.map(([w]) => w).join(', ')}`);
  for (const [id, title, load] of workloads) {
    if (!only.includes(id)) continue;
    console.log(`profiling nsgi: ${title}`);
    sections.push(summarize(title, await profileWorkload(load), 15));
  }

  const text = [`_Written by \`node --import tsx test/bench/profile.ts\` on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')}._`, '', ...sections].join('\n');
  console.log(`\n${text}`);
  if (!argv.includes('--no-write')) {
    rewriteSection(`${ROOT}BENCHMARKS.md`, START, END, text);
    console.log('rewrote the profile section of BENCHMARKS.md');
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
