/**
 * The fan-out scenario: one publish delivered to many idle SSE clients. For each server (nsgi on
 * the memory, cluster and Redis brokers, and a hand-written node:http broadcast loop) it opens
 * `clients` event streams on raw sockets, then, `runs` times, publishes one event and records when
 * each client receives it: time to the first and the last delivery, p50 and p99 over clients, and
 * the server's CPU time (all its processes) per delivered event. Run by `npm run bench` (scenario
 * id `fanout`); the client count is `--fanout-clients` (default 10,000), lowered to what the
 * open-file limit allows, and printed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { openEventStreams } from './lib/clients.ts';
import { cpuSeconds, decidePinning, openFileLimit, pinned, pinSelf, sleep, startServer, treePids, type Pinning, type RunningServer } from './lib/proc.ts';
import { summarize } from './lib/stats.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVERS = fileURLToPath(new URL('./servers/', import.meta.url));

/** DEFAULT_FANOUT_CLIENTS is the scenario's client count: 10,000 idle event streams. */
export const DEFAULT_FANOUT_CLIENTS = 10_000;

/** DELIVERY_TIMEOUT_MS bounds one publish's wait for every client. */
const DELIVERY_TIMEOUT_MS = 60_000;
/** CONNECT_CONCURRENCY bounds the connects in flight while the streams open. */
const CONNECT_CONCURRENCY = 200;
/** OPEN_TIMEOUT_MS bounds opening every stream. */
const OPEN_TIMEOUT_MS = 120_000;
/** SPARE_FDS is what the suite keeps of its open-file limit for everything but the client sockets. */
const SPARE_FDS = 512;

/** FanoutRow is one server's figures, medians over the runs. */
export interface FanoutRow {
  readonly server: string;
  readonly clients: number;
  readonly firstMs: number;
  readonly lastMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuUsPerEvent: number;
  readonly note?: string;
}

/** FanoutVariant is one server of the scenario: a label, a server file and its arguments after the port. */
export interface FanoutVariant {
  readonly label: string;
  readonly file: string;
  readonly args: readonly string[];
}

/** FanoutOptions configures {@link runFanout}. */
export interface FanoutOptions {
  clients: number;
  runs: number;
  fdLimit: number;
  pinning: Pinning;
  log(line: string): void;
  /** Which servers to measure, given the Redis URL; default {@link standardVariants}. */
  variants?: (redisUrl: string) => FanoutVariant[];
}

/** standardVariants is the scenario's servers: nsgi on each broker, and the node:http loop. */
export function standardVariants(redisUrl: string): FanoutVariant[] {
  return [
    { label: 'nsgi, memory broker', file: `${SERVERS}fanout-nsgi.ts`, args: ['memory'] },
    { label: 'nsgi, cluster broker (2 workers)', file: `${SERVERS}fanout-nsgi.ts`, args: ['cluster'] },
    { label: 'nsgi, Redis broker', file: `${SERVERS}fanout-nsgi.ts`, args: [redisUrl] },
    { label: 'node:http broadcast loop', file: `${SERVERS}fanout-node-http.ts`, args: [] },
  ];
}

/** runFanout measures every server and returns their rows. */
export async function runFanout(options: FanoutOptions): Promise<FanoutRow[]> {
  const clients = Math.max(1, Math.min(options.clients, options.fdLimit - SPARE_FDS));
  if (clients < options.clients) options.log(`[fanout] ${clients} clients, not ${options.clients}: ulimit -n is ${options.fdLimit}`);
  else options.log(`[fanout] ${clients} clients`);
  let redis: RedisServer | undefined;
  const rows: FanoutRow[] = [];
  try {
    redis = await startRedis();
    for (const { label, file, args } of (options.variants ?? standardVariants)(redis.url)) {
      options.log(`[fanout] ${label}`);
      try {
        rows.push(await measure(label, file, args, clients, options));
      } catch (err) {
        const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
        options.log(`[fanout] ${label}: FAILED: ${message}`);
        rows.push({ server: label, clients, firstMs: NaN, lastMs: NaN, p50Ms: NaN, p99Ms: NaN, cpuUsPerEvent: NaN, note: message });
      }
    }
  } finally {
    await redis?.remove();
  }
  return rows;
}

async function measure(label: string, file: string, args: readonly string[], clients: number, options: FanoutOptions): Promise<FanoutRow> {
  const [command, argv] = pinned(options.pinning.server, process.execPath, ['--import', 'tsx', file, '0', ...args]);
  const server = await startServer(label, command, argv, ROOT, options.fdLimit);
  let sockets: net.Socket[] = [];
  try {
    sockets = await openEventStreams(server.port, clients, CONNECT_CONCURRENCY, OPEN_TIMEOUT_MS, (seen) => seen.includes('\r\n\r\n'));
    // Every stream has its head; give the last ones time to reach their broker wait.
    await sleep(500);
    const runs: Array<Omit<FanoutRow, 'server' | 'clients'>> = [];
    for (let k = 0; k < options.runs; k++) {
      runs.push(await publishOnce(server, sockets, k));
      await sleep(200);
    }
    const pick = (key: keyof Omit<FanoutRow, 'server' | 'clients' | 'note'>): number => summarize(runs.map((r) => r[key])).median;
    const row = { server: label, clients, firstMs: pick('firstMs'), lastMs: pick('lastMs'), p50Ms: pick('p50Ms'), p99Ms: pick('p99Ms'), cpuUsPerEvent: pick('cpuUsPerEvent') };
    options.log(`[fanout] ${label}: first ${row.firstMs.toFixed(1)} ms, last ${row.lastMs.toFixed(1)} ms, p50 ${row.p50Ms.toFixed(1)} ms, p99 ${row.p99Ms.toFixed(1)} ms, ${row.cpuUsPerEvent.toFixed(1)} µs CPU per delivered event`);
    return row;
  } finally {
    for (const socket of sockets) socket.destroy();
    await server.stop();
  }
}

/** publishOnce publishes one event and times its arrival at every socket. */
async function publishOnce(server: RunningServer, sockets: net.Socket[], k: number): Promise<Omit<FanoutRow, 'server' | 'clients'>> {
  const marker = `fanout-${k}-${process.pid}`;
  const arrivals: number[] = [];
  const cpuBefore = processTreeCpu(server.pid);
  let all: () => void = () => {};
  const done = new Promise<void>((resolve) => (all = resolve));
  const listeners = sockets.map((socket) => {
    let seen = '';
    const onData = (buf: Buffer): void => {
      seen += buf.toString('latin1');
      if (!seen.includes(marker)) return;
      socket.off('data', onData);
      arrivals.push(performance.now());
      if (arrivals.length === sockets.length) all();
    };
    socket.on('data', onData);
    return [socket, onData] as const;
  });
  const start = performance.now();
  await post(server.port, marker);
  const timer = setTimeout(all, DELIVERY_TIMEOUT_MS);
  await done;
  clearTimeout(timer);
  for (const [socket, onData] of listeners) socket.off('data', onData);
  if (arrivals.length < sockets.length) throw new Error(`only ${arrivals.length} of ${sockets.length} clients got the event within ${DELIVERY_TIMEOUT_MS} ms`);
  // Let the server finish the writes it counted before reading its CPU time.
  await sleep(100);
  const cpu = processTreeCpu(server.pid) - cpuBefore;
  const latencies = arrivals.map((t) => t - start).sort((a, b) => a - b);
  return {
    firstMs: latencies[0]!,
    lastMs: latencies[latencies.length - 1]!,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    cpuUsPerEvent: (cpu * 1e6) / sockets.length,
  };
}

/** percentile is the nearest-rank percentile `p` of `sorted` (ascending). */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function post(port: number, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.write(`POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    socket.on('data', () => {});
    socket.once('end', () => resolve());
    socket.once('error', reject);
  });
}

/**
 * processTreeCpu is the CPU seconds of `pid` and its descendants (the cluster variant's workers),
 * every thread, from each thread's `/proc/PID/task/TID/schedstat` (nanoseconds): the 10 ms ticks
 * of `/proc/PID/stat` are 10 µs per delivered event at 1,000 clients, too coarse for one publish.
 * Where schedstat is missing it falls back to those ticks.
 */
function processTreeCpu(pid: number): number {
  let ns = 0;
  for (const p of treePids(pid)) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        ns += Number(readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  }
  return ns > 0 ? ns / 1e9 : cpuSeconds(pid);
}

/** fanoutTable renders the rows as a markdown table. */
export function fanoutTable(rows: FanoutRow[]): string {
  const f = (n: number, digits = 1): string => (Number.isNaN(n) ? 'failed' : n.toFixed(digits));
  return [
    '| server | clients | first delivery (ms) | last delivery (ms) | p50 (ms) | p99 (ms) | CPU per delivered event (µs) |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.server} | ${r.clients} | ${f(r.firstMs)} | ${f(r.lastMs)} | ${f(r.p50Ms)} | ${f(r.p99Ms)} | ${f(r.cpuUsPerEvent)} |`),
  ].join('\n');
}

/**
 * fanoutCli runs the scenario on its own, for one lever at a time: `node --import tsx
 * test/bench/fanout.ts [--clients N] [--runs N] [--only memory,cluster,redis,node-http]
 * [--beside DIR]`, where `--beside` also measures the nsgi servers of another checkout (the base
 * of a change) in the same run, each right after its counterpart.
 */
async function fanoutCli(argv: string[]): Promise<void> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i] as string, argv[i + 1]];
    if (!['--clients', '--runs', '--only', '--beside'].includes(name) || value === undefined) throw new Error(`usage: fanout.ts [--clients N] [--runs N] [--only LIST] [--beside DIR], got ${name}`);
    flags.set(name, value);
  }
  const only = new Set((flags.get('--only') ?? 'memory,cluster,redis,node-http').split(','));
  const beside = flags.get('--beside');
  const keys = ['memory', 'cluster', 'redis', 'node-http'];
  const variants = (redisUrl: string): FanoutVariant[] =>
    standardVariants(redisUrl).flatMap((variant, i) => {
      const key = keys[i] as string;
      if (!only.has(key)) return [];
      if (beside === undefined || key === 'node-http') return [variant];
      return [variant, { label: `${variant.label}, ${beside}`, file: `${beside}/test/bench/servers/fanout-nsgi.ts`, args: variant.args }];
    });
  const pinning = decidePinning();
  pinSelf(pinning.client);
  const rows = await runFanout({
    clients: Number(flags.get('--clients') ?? 1000),
    runs: Number(flags.get('--runs') ?? 5),
    fdLimit: openFileLimit()[0],
    pinning,
    log: (line) => console.log(line),
    variants,
  });
  console.log(fanoutTable(rows));
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await fanoutCli(process.argv.slice(2));
