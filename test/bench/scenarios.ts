/**
 * The scenarios. Throughput scenarios run against long-lived servers, each server in turn within
 * run k (the order rotates every run, so no server always goes first); memory scenarios start a
 * fresh server process for every run, since RSS never shrinks back.
 */
import { closeAbruptly, download, openEventStreams, slowRead } from './lib/clients.ts';
import { DATA_FILE, type FileSet } from './lib/file-set.ts';
import { SERVER_LABELS, type Metric, type ScenarioResult, type ServerId } from './lib/model.ts';
import { startNginx } from './lib/nginx.ts';
import { checkRoute, type Route } from './lib/preflight.ts';
import { cpuSeconds, rssBytes, sleep, type Pinning, type RunningServer } from './lib/proc.ts';
import { ratioSummary } from './lib/report.ts';
import { fmt } from './lib/stats.ts';
import { runWrk } from './lib/wrk.ts';
import { runEcho } from './lib/ws-client.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** Context is what a scenario needs from the suite. */
export interface Context {
  quick: boolean;
  runs: number;
  servers: ServerId[];
  pinning: Pinning;
  pipelineScript: string;
  /** The open-file limit available to the suite and its servers. */
  fdLimit: number;
  /** live[id] is the long-lived instance of each server. */
  live: Map<ServerId, RunningServer>;
  /** fresh starts a new instance of a server (the caller stops it). */
  fresh(id: ServerId): Promise<RunningServer>;
  progress(line: string): void;
  /** `--rate`: the open-loop latency scenarios' requests (or streams) per second, when given. */
  rate?: number;
  /** The folder `/file/NAME` serves, written when a scenario of the run uses the file route. */
  files?: FileSet;
  /** The suite's folder, where servers the scenarios start run. */
  cwd: string;
}

/** Scenario is one measurement of the suite. */
export interface Scenario {
  id: string;
  title: string;
  metrics: Metric[];
  needsWrk: boolean;
  /**
   * True when the scenario measures only memory, with fresh processes and little CPU: such
   * scenarios run at the same time as each other, after the throughput scenarios.
   */
  memoryOnly?: boolean;
  /** The route the scenario loads: only servers that answer it correctly (lib/preflight.ts) take part. */
  route?: Route;
  /** True for a scenario that runs only when asked for (`--only`, `--sweep`, `--latency`), not in every full run. */
  optIn?: boolean;
  /** Servers of model.ts's SCENARIO_STARTED that this scenario starts itself, when the run includes them. */
  starts?: ServerId[];
  /** Built-in servers that take no part in this scenario, each with the reason the report gives. */
  excludes?: Partial<Record<ServerId, string>>;
  run(ctx: Context, result: ScenarioResult): Promise<void>;
}

/** rotate is `list` started from its k-th element, so the order changes from run to run. */
export const rotate = <T>(list: T[], k: number): T[] => list.map((_, i) => list[(i + k) % list.length]!);

/** record stores run k's figures of one server. */
export function record(result: ScenarioResult, id: ServerId, k: number, figures: Record<string, number>): void {
  let runs = result.runs.get(id);
  if (runs === undefined) {
    runs = [];
    result.runs.set(id, runs);
  }
  runs[k] = figures;
}

/** failed records run k of one server as failed, with the reason in the report's notes. */
export function failed(ctx: Context, result: ScenarioResult, id: ServerId, k: number, err: unknown): void {
  const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  ctx.progress(`[${result.id}] ${id} run ${k + 1} of ${ctx.runs}: FAILED: ${message}`);
  result.notes.push(`${id}, run ${k + 1}: ${message}`);
  record(result, id, k, {});
}

/** throughput measures every live server once per run, in rotating order. */
export async function throughput(
  ctx: Context,
  result: ScenarioResult,
  warm: ((server: RunningServer) => Promise<unknown>) | null,
  measure: (server: RunningServer) => Promise<Record<string, number>>,
  show: (figures: Record<string, number>) => string,
): Promise<void> {
  for (const id of warm === null ? [] : ctx.servers) {
    ctx.progress(`[${result.id}] ${id}: warm-up`);
    try {
      await warm!(ctx.live.get(id)!);
    } catch (err) {
      ctx.progress(`[${result.id}] ${id}: warm-up failed: ${err instanceof Error ? err.message.split('\n')[0] : err}`);
    }
  }
  for (let k = 0; k < ctx.runs; k++) {
    for (const id of rotate(ctx.servers, k)) {
      try {
        const figures = await measure(ctx.live.get(id)!);
        record(result, id, k, figures);
        ctx.progress(`[${result.id}] ${id} run ${k + 1} of ${ctx.runs}: ${show(figures)}`);
      } catch (err) {
        failed(ctx, result, id, k, err);
      }
    }
  }
}

function wrkScenario(id: string, title: string, pipelined: boolean): Scenario {
  return {
    id,
    title,
    metrics: [
      { key: 'rps', unit: 'req/s', better: 'higher' },
      { key: 'usreq', unit: 'server CPU µs per request', better: 'lower' },
      { key: 'busy', unit: 'server core busy %', better: 'lower' },
    ],
    needsWrk: true,
    route: 'hello',
    async run(ctx, result) {
      const seconds = ctx.quick ? 1 : 6;
      const wrk = (server: RunningServer, s: number) =>
        runWrk({
          url: `http://127.0.0.1:${server.port}/hello`,
          connections: 50,
          seconds: s,
          cpu: ctx.pinning.client,
          ...(pipelined ? { script: ctx.pipelineScript, env: { PIPELINE_DEPTH: '16' } } : {}),
        });
      await throughput(
        ctx,
        result,
        // A quick run warms the servers once, in the first wrk scenario.
        ctx.quick && pipelined ? null : (server) => wrk(server, ctx.quick ? 1 : 3),
        async (server) => {
          // The server's CPU time over the run tells whether it, or the load generator, was the
          // limit: a server core below ~95% busy was waiting for wrk.
          const cpu0 = cpuSeconds(server.pid);
          const t0 = performance.now();
          const r = await wrk(server, seconds);
          const cpu = cpuSeconds(server.pid) - cpu0;
          const wall = (performance.now() - t0) / 1000;
          // A server answering errors fast is not fast: such a run does not count.
          if (r.non2xx > 0) throw new Error(`${r.non2xx} non-2xx responses; the run does not count`);
          if (r.socketErrors > 0) result.notes.push(`${server.name}: ${r.socketErrors} socket errors in one run`);
          return { rps: r.requestsPerSecond, usreq: (cpu * 1e6) / r.requests, busy: (100 * cpu) / wall };
        },
        (f) => `${fmt(f['rps']!)} req/s, ${fmt(f['usreq']!)} µs CPU per request, core ${fmt(f['busy']!)}% busy`,
      );
    },
  };
}

/**
 * downloads fetches `path` from `server` `repeat` times, one new connection each, checks that every
 * download brought exactly `size` body bytes, and reports the server's CPU seconds per GiB and
 * MiB/s over them all. utime+stime count in 10 ms ticks: repeating divides the summed CPU time by
 * the summed bytes.
 */
async function downloads(server: RunningServer, path: string, size: number, repeat: number, timeoutMs: number): Promise<Record<string, number>> {
  let cpu = 0;
  let bytes = 0;
  let seconds = 0;
  for (let i = 0; i < repeat; i++) {
    let before = 0;
    const r = await download(server.port, path, timeoutMs, () => {
      before = cpuSeconds(server.pid);
    });
    cpu += cpuSeconds(server.pid) - before;
    if (r.bodyBytes !== size) throw new Error(`got ${r.bodyBytes} body bytes, expected ${size}`);
    bytes += r.bodyBytes;
    seconds += r.seconds;
  }
  return { cpu: cpu / (bytes / GIB), mibps: bytes / MIB / seconds };
}

/** CPU_AND_SPEED are the figures of a download scenario. */
const CPU_AND_SPEED: Metric[] = [
  { key: 'cpu', unit: 'server CPU s/GiB', better: 'lower' },
  { key: 'mibps', unit: 'MiB/s', better: 'higher' },
];

/** showCpuAndSpeed prints one run of a download scenario. */
const showCpuAndSpeed = (f: Record<string, number>): string => `${fmt(f['mibps']!)} MiB/s, ${fmt(f['cpu']!)} CPU s/GiB`;

/**
 * streamScenario downloads `/stream` and reports MiB/s and the server's CPU seconds per GiB.
 * utime+stime count in 10 ms ticks, so a full run repeats the download `fullRepeat` times per
 * run (new connection each time) and divides the summed CPU time by the summed bytes.
 */
function streamScenario(
  id: string,
  title: string,
  chunk: number,
  mode: 'sync' | 'async',
  fullSize: number,
  quickSize: number,
  fullRepeat: number,
): Scenario {
  return {
    id,
    title,
    metrics: CPU_AND_SPEED,
    needsWrk: false,
    route: 'stream',
    async run(ctx, result) {
      const size = ctx.quick ? quickSize : fullSize;
      const repeat = ctx.quick ? 1 : fullRepeat;
      result.title = title.replace(/^\S+ \S+/, size >= GIB ? `${size / GIB} GiB` : `${size / MIB} MiB`) + (repeat > 1 ? ` (x${repeat} per run)` : '');
      const path = (n: number) => `/stream?size=${n}&chunk=${chunk}&mode=${mode}`;
      await throughput(
        ctx,
        result,
        (server) => download(server.port, path(32 * MIB), 30_000),
        (server) => downloads(server, path(size), size, repeat, 120_000),
        showCpuAndSpeed,
      );
    },
  };
}

/** FILE_QUICK_REPEAT is how often a quick run downloads its smaller file per run: 64 MiB alone is a few 10 ms CPU ticks for nginx. */
const FILE_QUICK_REPEAT = 4;
/** FILE_TIMEOUT_MS bounds one download of the file. */
const FILE_TIMEOUT_MS = 300_000;

/**
 * fileScenario downloads one large file from disk (ctx.files, 1 GiB, 64 MiB in a quick run) from
 * every server that serves `/file/NAME`, and from nginx with sendfile, which it starts itself. The
 * ceiling takes no part: no canned bytes bound what sending a file costs, and sendfile (nginx) is
 * that bound.
 */
const fileScenario: Scenario = {
  id: 'file',
  title: '1 GiB file from disk',
  metrics: CPU_AND_SPEED,
  needsWrk: false,
  route: 'file',
  starts: ['nginx'],
  excludes: { ceiling: 'it sends canned bytes; for a file from disk, nginx with sendfile is the bound' },
  async run(ctx, result) {
    const files = ctx.files;
    if (files === undefined) throw new Error('the file scenario needs the run to write its files first');
    const repeat = ctx.quick ? FILE_QUICK_REPEAT : 1;
    result.title = `${files.size >= GIB ? `${files.size / GIB} GiB` : `${files.size / MIB} MiB`} file from disk${repeat > 1 ? ` (x${repeat} per run)` : ''}`;
    const live = new Map(ctx.live);
    let servers = ctx.servers;
    let nginx: RunningServer | null = null;
    if (servers.includes('nginx')) {
      try {
        nginx = await startNginx(files.root, ctx.pinning.server, ctx.cwd);
        // nginx is checked like every other server before any figure of it counts.
        const problem = await checkRoute(nginx.port, 'file');
        if (problem !== null) throw new Error(problem);
        live.set('nginx', nginx);
      } catch (err) {
        const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
        ctx.progress(`[file] nginx left out: ${message}`);
        result.notes.push(`nginx left out: ${message}`);
        servers = servers.filter((id) => id !== 'nginx');
      }
    }
    try {
      await throughput(
        { ...ctx, servers, live },
        result,
        (server) => download(server.port, `/file/${DATA_FILE}`, FILE_TIMEOUT_MS),
        (server) => downloads(server, `/file/${DATA_FILE}`, files.size, repeat, FILE_TIMEOUT_MS),
        showCpuAndSpeed,
      );
    } finally {
      await nginx?.stop();
    }
    // How far each server is from sendfile, which the ratio columns (against node:http) do not say.
    if (result.runs.has('nginx')) {
      for (const id of servers) {
        if (id === 'nginx' || !result.runs.has(id)) continue;
        const ratio = ratioSummary(result, id, 'nginx', 'cpu');
        if (!Number.isFinite(ratio)) continue;
        const note = `${SERVER_LABELS[id]}: ${ratio.toFixed(2)}x nginx's CPU s/GiB`;
        ctx.progress(`[file] ${note}`);
        result.notes.push(note);
      }
    }
  },
};

/**
 * websocketScenario echoes 32-byte binary messages over `/ws`, 16 in flight per connection, and
 * reports messages per second with the server's CPU per message, like the wrk scenarios.
 */
const websocketScenario: Scenario = {
  id: 'websocket-echo',
  title: 'WebSocket echo, 32-byte messages, 16 in flight per connection, 50 connections',
  metrics: [
    { key: 'msgs', unit: 'messages/s', better: 'higher' },
    { key: 'usmsg', unit: 'server CPU µs per message', better: 'lower' },
    { key: 'busy', unit: 'server core busy %', better: 'lower' },
  ],
  needsWrk: false,
  route: 'ws',
  async run(ctx, result) {
    const echo = (server: RunningServer, seconds: number, hooks: { onStart?(): void; onEnd?(): void } = {}) =>
      runEcho({
        port: server.port,
        path: '/ws',
        connections: 50,
        batch: 16,
        size: 32,
        warmupSeconds: ctx.quick || seconds === 0 ? 0 : 1,
        seconds,
        ...hooks,
      });
    await throughput(
      ctx,
      result,
      null,
      async (server) => {
        // As in the wrk scenarios, a server core below ~95% busy was waiting for the client.
        let cpu0 = 0;
        let cpu = 0;
        const r = await echo(server, ctx.quick ? 1 : 6, {
          onStart: () => {
            cpu0 = cpuSeconds(server.pid);
          },
          onEnd: () => {
            cpu = cpuSeconds(server.pid) - cpu0;
          },
        });
        return { msgs: r.messagesPerSecond, usmsg: (cpu * 1e6) / r.messages, busy: (100 * cpu) / r.seconds };
      },
      (f) => `${fmt(f['msgs']!)} messages/s, ${fmt(f['usmsg']!)} µs CPU per message, core ${fmt(f['busy']!)}% busy`,
    );
  },
};

/** inGroups runs `task` for every server, at most `size` at a time. */
async function inGroups(ids: ServerId[], size: number, task: (id: ServerId) => Promise<void>): Promise<void> {
  for (let i = 0; i < ids.length; i += size) await Promise.all(ids.slice(i, i + size).map(task));
}

const sseScenario: Scenario = {
  id: 'sse-idle',
  title: 'idle SSE connections',
  metrics: [{ key: 'kib', unit: 'server RSS KiB per connection', better: 'lower' }],
  needsWrk: false,
  memoryOnly: true,
  route: 'sse',
  async run(ctx, result) {
    const wanted = ctx.quick ? 1000 : 5000;
    // Every connection costs the suite one descriptor and the server one; keep 512 spare.
    const n = Math.min(wanted, ctx.fdLimit - 512);
    if (n < wanted) {
      const note = `open-file limit ${ctx.fdLimit}: measured ${n} idle connections instead of ${wanted} (raise ulimit -n)`;
      ctx.progress(`[sse-idle] ${note}`);
      result.notes.push(note);
    }
    const group = Math.max(1, Math.floor((ctx.fdLimit - 512) / (n + 64)));
    for (let k = 0; k < ctx.runs; k++) {
      await inGroups(rotate(ctx.servers, k), group, async (id) => {
        let server: RunningServer | null = null;
        try {
          server = await ctx.fresh(id);
          // One connection first, so the route's code is loaded before the baseline is taken.
          closeAbruptly(await openEventStreams(server.port, 1, 1, 10_000));
          await sleep(500);
          const base = rssBytes(server.pid);
          const sockets = await openEventStreams(server.port, n, 50, 60_000);
          await sleep(1500);
          const rss = rssBytes(server.pid);
          closeAbruptly(sockets);
          const kib = (rss - base) / n / 1024;
          record(result, id, k, { kib });
          ctx.progress(`[sse-idle] ${id} run ${k + 1} of ${ctx.runs}: ${n} connections, +${fmt((rss - base) / MIB)} MiB RSS, ${fmt(kib)} KiB each`);
        } catch (err) {
          failed(ctx, result, id, k, err);
        } finally {
          await server?.stop();
        }
      });
    }
    result.notes.push(`${n} idle connections per run; RSS measured 1.5 s after the last one received its first event`);
  },
};

const slowReaderScenario: Scenario = {
  id: 'slow-reader',
  title: 'slow reader at 1 MiB/s',
  metrics: [{ key: 'mib', unit: 'server RSS growth MiB', better: 'lower', absolute: true }],
  needsWrk: false,
  memoryOnly: true,
  route: 'stream',
  async run(ctx, result) {
    const seconds = ctx.quick ? 15 : 40;
    // At 1 MiB/s nobody is CPU-bound, so every server and every run go at once, each a fresh process.
    const jobs: Array<[ServerId, number]> = [];
    for (let k = 0; k < ctx.runs; k++) for (const id of ctx.servers) jobs.push([id, k]);
    ctx.progress(`[slow-reader] ${jobs.length} fresh servers (${ctx.servers.length} x ${ctx.runs} runs), each with one client reading 1 GiB at 1 MiB/s for ${seconds} s`);
    const started = await Promise.allSettled(jobs.map(([id]) => ctx.fresh(id)));
    await sleep(1000);
    await Promise.all(
      jobs.map(async ([id, k], j) => {
        const s = started[j]!;
        if (s.status === 'rejected') return failed(ctx, result, id, k, s.reason);
        const server = s.value;
        try {
          const base = rssBytes(server.pid);
          let peak = base;
          const bytes = await slowRead(server.port, `/stream?size=${GIB}&chunk=${64 * 1024}&mode=sync`, MIB, seconds, 250, () => {
            peak = Math.max(peak, rssBytes(server.pid));
          });
          const mib = (peak - base) / MIB;
          record(result, id, k, { mib });
          ctx.progress(`[slow-reader] ${id} run ${k + 1} of ${ctx.runs}: read ${fmt(bytes / MIB)} MiB, peak RSS growth ${fmt(mib)} MiB`);
        } catch (err) {
          failed(ctx, result, id, k, err);
        } finally {
          await server.stop();
        }
      }),
    );
    result.notes.push(`read for ${seconds} s per run; growth is peak VmRSS (sampled every 250 ms) minus VmRSS before the request`);
  },
};

/** SCENARIOS are every scenario, in the order they run. */
export const SCENARIOS: Scenario[] = [
  wrkScenario('hello', '/hello, keep-alive, 50 connections', false),
  wrkScenario('pipelined', '/hello, 16 pipelined per write, 50 connections', true),
  streamScenario('stream-64k', '1 GiB in 64 KiB chunks', 64 * 1024, 'sync', GIB, 512 * MIB, 2),
  streamScenario('stream-1k-sync', '128 MiB in 1 KiB chunks, sync generator', 1024, 'sync', 128 * MIB, 128 * MIB, 4),
  streamScenario('stream-1k-async', '128 MiB in 1 KiB chunks, async generator', 1024, 'async', 128 * MIB, 128 * MIB, 4),
  fileScenario,
  websocketScenario,
  sseScenario,
  slowReaderScenario,
];

/** SKIPPED_SCENARIOS are named in the issue but cannot run yet. */
export const SKIPPED_SCENARIOS: Array<[string, string]> = [];
