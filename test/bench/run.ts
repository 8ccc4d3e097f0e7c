/**
 * The benchmark suite: `npm run bench [-- --quick] [--only a,b] [--servers a,b] [--server 'label=command'] [--sweep] [--latency] [--write]`.
 *
 * Each server under test runs as its own process pinned to core 0; wrk and the suite's own Node
 * clients run on core 1 (when there are two cores and taskset). Every figure is the median of at
 * least three runs, printed with its min and max and with its ratio to node:http and to the
 * ceiling from the same run. A full run (no --quick/--only/--servers) rewrites the results
 * section of BENCHMARKS.md and BENCHMARKS.svg; a partial run only prints, unless --write. Every
 * run writes its raw samples, and the charts drawn from them, to test/bench/results/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseServerSpec, startExternal, type ExternalServer } from './lib/external.ts';
import { writeFileSet, type FileSet } from './lib/file-set.ts';
import { SCENARIO_STARTED, SERVER_LABELS, SERVER_ORDER, addServer, type ScenarioResult, type ServerId } from './lib/model.ts';
import { checkRoute, type Route } from './lib/preflight.ts';
import { decidePinning, openFileLimit, pinSelf, pinned, startServer, type RunningServer } from './lib/proc.ts';
import { RECORD_VERSION, loadRecord, saveRecord, toRecordResults, versions } from './lib/record.ts';
import { END, START, chartSvg, resultsTable, rewriteSection, targetsTable } from './lib/report.ts';
import { sweepChartSvg } from './lib/sweep-chart.ts';
import { LATENCY_SCENARIOS } from './latency.ts';
import { sweepScenario } from './sweep.ts';
import { wrkVersion } from './lib/wrk.ts';
import { DEFAULT_FANOUT_CLIENTS, fanoutTable, runFanout, type FanoutRow } from './fanout.ts';
import { parserTable, runParserBench, type ParserRow } from './parser.ts';
import { SCENARIOS, SKIPPED_SCENARIOS, type Context, type Scenario } from './scenarios.ts';
import { FILE_ROOT_ENV } from './servers/routes.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BENCH = fileURLToPath(new URL('./', import.meta.url));
const ADAPTER = `${ROOT}src/adapters/node-http.ts`;
const MARKDOWN = `${ROOT}BENCHMARKS.md`;
const CHART = `${ROOT}BENCHMARKS.svg`;
const SWEEP_CHART = `${ROOT}BENCHMARKS-sweep.svg`;
const RECORD = `${ROOT}BENCHMARKS.json`;
const RESULTS = `${BENCH}results/`;
/** FILE_SIZE and QUICK_FILE_SIZE are the size of the file scenario's file in a full and in a quick run. */
const FILE_SIZE = 1024 ** 3;
const QUICK_FILE_SIZE = 64 * 1024 ** 2;

/** ALL_SCENARIOS are every scenario the suite knows; the opt-in ones run only when asked for. */
const ALL_SCENARIOS: Scenario[] = [...SCENARIOS, sweepScenario('sync'), sweepScenario('async'), ...LATENCY_SCENARIOS];

const USAGE = `usage: npm run bench -- [--quick] [--only scenario,...] [--servers server,...] [--server 'label=command'] [--sweep] [--latency] [--write]

  --quick          shorter runs and smaller scenarios (under 2 minutes)
  --only LIST      run only these scenarios: ${[...ALL_SCENARIOS.map((s) => s.id), 'parser', 'fanout'].join(', ')}
  --servers LIST   run only these built-in servers: ${SERVER_ORDER.join(', ')}
  --server L=CMD   add a server of your own, labelled L, started by the shell command CMD with the
                   port in $PORT (repeatable); it must answer the routes in BENCHMARKS.md
  --sweep          add the chunk-size sweeps (sweep-sync, sweep-async) to the run
  --latency        add the open-loop latency scenarios (latency-hello, latency-sse) to the run
  --rate N         the latency scenarios' requests (or new streams) per second
  --runs N         runs per figure (default 5, quick 3; at least 3 for a median worth printing)
  --fanout-clients N  idle event streams of the fanout scenario (default ${DEFAULT_FANOUT_CLIENTS}, quick 1000)
  --write          rewrite BENCHMARKS.md even after a partial run`;

interface Options {
  quick: boolean;
  only: string[] | null;
  servers: ServerId[] | null;
  external: ExternalServer[];
  sweep: boolean;
  latency: boolean;
  rate: number | undefined;
  runs: number;
  write: boolean;
  fanoutClients: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { quick: false, only: null, servers: null, external: [], sweep: false, latency: false, rate: undefined, runs: 0, write: false, fanoutClients: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    if (arg === '--quick') options.quick = true;
    else if (arg === '--write') options.write = true;
    else if (arg === '--only') options.only = value().split(',');
    else if (arg === '--servers') options.servers = value().split(',') as ServerId[];
    else if (arg === '--runs') options.runs = Number(value());
    else if (arg === '--fanout-clients') options.fanoutClients = Number(value());
    else if (arg === '--server') options.external.push(parseServerSpec(value()));
    else if (arg === '--sweep') options.sweep = true;
    else if (arg === '--latency') options.latency = true;
    else if (arg === '--rate') options.rate = Number(value());
    else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${arg}\n${USAGE}`);
  }
  for (const e of options.external) addServer(e.id, e.label);
  const known = new Set<string>([...ALL_SCENARIOS.map((s) => s.id), 'parser', 'fanout', ...SKIPPED_SCENARIOS.map(([id]) => id)]);
  for (const id of options.only ?? []) if (!known.has(id)) throw new Error(`unknown scenario ${id}\n${USAGE}`);
  for (const id of options.servers ?? []) if (!SERVER_ORDER.includes(id)) throw new Error(`unknown server ${id}\n${USAGE}`);
  // Five runs by default on a full run: on a shared machine a median of five resists one bad run.
  if (options.runs === 0) options.runs = options.quick ? 3 : 5;
  if (!Number.isInteger(options.runs) || options.runs < 1) throw new Error(`--runs needs a whole number`);
  if (options.fanoutClients === 0) options.fanoutClients = options.quick ? 1000 : DEFAULT_FANOUT_CLIENTS;
  if (!Number.isInteger(options.fanoutClients) || options.fanoutClients < 1) throw new Error(`--fanout-clients needs a whole number`);
  if (options.rate !== undefined && !(options.rate > 0 && options.rate <= 1_000_000)) throw new Error(`--rate needs a number of requests per second above 0`);
  return options;
}

/** raiseFileLimit re-runs the suite under a shell that raised `ulimit -n`, when it must and can. */
function raiseFileLimit(needed: number): number {
  const [soft, hard] = openFileLimit();
  if (soft >= needed || hard <= soft || process.env['NSGI_BENCH_REEXEC'] === '1') return soft;
  const limit = Math.min(hard, 65536);
  console.log(`ulimit -n is ${soft}; re-running the suite with ulimit -n ${limit}`);
  const r = spawnSync('sh', ['-c', `ulimit -n ${limit} && exec "$@"`, 'sh', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, NSGI_BENCH_REEXEC: '1' },
  });
  process.exit(r.status ?? 1);
}

/** adapterStatus says whether the nsgi-on-node:http server can run, and if not, why. */
async function adapterStatus(): Promise<string | null> {
  if (!existsSync(ADAPTER)) return 'src/adapters/node-http.ts does not exist yet (the interop work has not landed)';
  try {
    const mod = (await import(pathToFileURL(ADAPTER).href)) as { toNodeListener?: unknown };
    if (typeof mod.toNodeListener !== 'function') return 'src/adapters/node-http.ts does not export toNodeListener';
  } catch (err) {
    return `src/adapters/node-http.ts failed to load: ${err instanceof Error ? err.message : err}`;
  }
  return null;
}

/** BUN_HINT says how to add the Bun peer, which is not among the project's dependencies (about 100 MB). */
const BUN_HINT = 'to compare with Bun, run `npm install --no-save bun` (about 100 MB), put bun on PATH, or set BUN=/path/to/bun';

/** findBun locates the bun binary: $BUN, then node_modules/.bin/bun, then bun on PATH; null when there is none. */
function findBun(): string | null {
  const candidates = [process.env['BUN'], `${ROOT}node_modules/.bin/bun`, ...(process.env['PATH'] ?? '').split(':').filter((d) => d !== '').map((d) => `${d}/bun`)];
  return candidates.find((c): c is string => c !== undefined && c !== '' && existsSync(c)) ?? null;
}

function machine(wrk: string | null, bun: string | null): string[] {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown';
  const mem = (os.totalmem() / 1024 ** 3).toFixed(1);
  // os.availableParallelism() would count only the cores this pinned process may use.
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  return [
    `CPU: ${model}, ${cores} cores (Linux ${os.release()}, ${mem} GiB RAM)`,
    `Node ${process.version}; ${wrk ?? 'wrk not installed'}; bun ${bun ?? 'not found'}`,
  ];
}

const fmtLoad = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' / ');

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const loadBefore = os.loadavg();
  const log = (line: string): void => {
    const t = `${((Date.now() - started) / 1000).toFixed(1)}s`.padStart(7);
    console.log(line.startsWith('\n') ? `\n[${t}] ${line.slice(1)}` : line.includes('\n') ? line : `[${t}] ${line}`);
  };
  const fdLimit = raiseFileLimit(Math.max((options.quick ? 1000 : 5000) * 3, options.fanoutClients * 2) + 1024);
  const pinning = decidePinning();
  pinSelf(pinning.client);
  const wrk = wrkVersion();
  const bunPath = findBun();
  const bunRun = bunPath === null ? null : spawnSync(bunPath, ['--version'], { encoding: 'utf8' });
  const bun = bunRun?.status === 0 ? bunRun.stdout.trim() : null;

  log(`nsgi benchmarks (${options.quick ? 'quick' : 'full'} run, ${options.runs} runs per figure)`);
  for (const line of machine(wrk, bun)) log(`  ${line}`);
  log(`  ${pinning.note}; load average before the run ${fmtLoad(loadBefore)} (1/5/15 min); ulimit -n ${fdLimit}`);

  const skipped: string[] = [];
  const skip = (line: string): void => {
    skipped.push(line);
    log(`skipped: ${line}`);
  };
  if (wrk === null) skip('the wrk scenarios: wrk is not installed; install it with `apt-get install wrk`');

  // Servers.
  // Added servers always run: naming one with --server asks for it.
  const added = options.external.map((e) => e.id);
  let servers = options.servers === null ? SERVER_ORDER.slice() : [...new Set([...options.servers, ...added])];
  const adapter = await adapterStatus();
  if (adapter !== null && servers.includes('nsgi-node-http')) {
    skip(`server nsgi-node-http (nsgi app on node:http via toNodeListener): ${adapter}`);
    servers = servers.filter((s) => s !== 'nsgi-node-http');
  }
  if (bun === null && servers.includes('bun')) {
    skip(`server bun: ${bunPath === null ? 'no bun binary found' : `${bunPath} does not run`}; ${BUN_HINT}`);
    servers = servers.filter((s) => s !== 'bun');
  }
  const command = (id: ServerId): [string, string[]] => {
    const file = `${BENCH}servers/${id}.ts`;
    return id === 'bun' ? pinned(pinning.server, bunPath as string, [file, '0']) : pinned(pinning.server, process.execPath, ['--import', 'tsx', file, '0']);
  };
  let files: FileSet | null = null;
  const alive = new Set<RunningServer>();
  const fresh = async (id: ServerId): Promise<RunningServer> => {
    const external = options.external.find((e) => e.id === id);
    const [cmd, args] = external === undefined ? command(id) : ['', []];
    const server = external === undefined ? await startServer(id, cmd, args, ROOT, null) : await startExternal(external, pinning.server, ROOT);
    alive.add(server);
    server.child.once('exit', () => alive.delete(server));
    return server;
  };
  const killAll = (): void => {
    for (const s of alive) s.kill();
    files?.remove();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      killAll();
      process.exit(130);
    });
  }

  // Scenarios.
  const asked = (s: Scenario): boolean => (s.id.startsWith('sweep-') && options.sweep) || (s.id.startsWith('latency-') && options.latency);
  const wanted = (id: string): boolean => options.only === null || options.only.includes(id);
  const scenarios = ALL_SCENARIOS.filter(
    (s) => (options.only === null ? s.optIn !== true || asked(s) : options.only.includes(s.id) || asked(s)) && (!s.needsWrk || wrk !== null),
  );
  for (const [id, why] of SKIPPED_SCENARIOS) if (wanted(id)) skip(`${id}: ${why.replace(/^skipped: /, '')}`);

  // The file route's folder exists before the servers start: they read its name from the environment.
  if (scenarios.some((s) => s.route === 'file')) {
    const size = options.quick ? QUICK_FILE_SIZE : FILE_SIZE;
    log(`writing the file scenario's ${size / 1024 ** 2} MiB file`);
    files = await writeFileSet(size);
    process.env[FILE_ROOT_ENV] = files.root;
  }

  // The servers of SCENARIO_STARTED are started by the scenarios that use them, and a server every
  // scenario of the run leaves out is not started at all.
  const longLived = servers.filter((id) => !SCENARIO_STARTED.includes(id) && scenarios.some((s) => s.excludes?.[id] === undefined));
  const live = new Map<ServerId, RunningServer>();
  if (scenarios.some((s) => s.memoryOnly !== true)) {
    for (const id of longLived) {
      log(`starting ${SERVER_LABELS[id]}`);
      try {
        live.set(id, await fresh(id));
      } catch (err) {
        // The route checks below try once more and leave it out, saying why.
        log(`${id} did not start: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
  // Every server answers each route the run uses correctly once before any figure of it counts.
  const answers = new Map<string, string | null>();
  const routes = [...new Set(scenarios.flatMap((s) => (s.route === undefined ? [] : [s.route])))];
  if (routes.length > 0) {
    log(`checking ${routes.join(', ')} on every server`);
    for (const id of longLived) {
      // A route only scenarios that leave this server out use is not checked on it.
      const routes = [...new Set(scenarios.flatMap((s) => (s.route === undefined || s.excludes?.[id] !== undefined ? [] : [s.route])))];
      let server = live.get(id) ?? null;
      const own = server === null;
      try {
        server ??= await fresh(id);
        for (const route of routes) answers.set(`${id} ${route}`, await checkRoute(server.port, route));
      } catch (err) {
        for (const route of routes) answers.set(`${id} ${route}`, `did not start: ${err instanceof Error ? err.message.split('\n')[0] : err}`);
      } finally {
        if (own) await server?.stop();
      }
      for (const route of routes) {
        const problem = answers.get(`${id} ${route}`);
        if (problem !== null && problem !== undefined) skip(`server ${id} on the ${route} scenarios: ${problem}`);
      }
    }
  }
  const answersRight = (id: ServerId, route: Route | undefined): boolean => route === undefined || answers.get(`${id} ${route}`) === null;
  const ctx: Context = {
    quick: options.quick,
    runs: options.runs,
    servers,
    pinning,
    pipelineScript: `${BENCH}wrk/pipeline.lua`,
    fdLimit,
    live,
    fresh,
    progress: log,
    cwd: ROOT,
    ...(options.rate === undefined ? {} : { rate: options.rate }),
    ...(files === null ? {} : { files }),
  };
  const takesPart = (s: Scenario, id: ServerId): boolean =>
    SCENARIO_STARTED.includes(id) ? s.starts?.includes(id) === true : s.excludes?.[id] === undefined && answersRight(id, s.route);
  const contextFor = (s: Scenario): Context => ({ ...ctx, servers: servers.filter((id) => takesPart(s, id)) });
  const results = scenarios.map(
    (s): ScenarioResult => ({
      id: s.id,
      title: s.title,
      metrics: s.metrics,
      runs: new Map(),
      notes: servers.flatMap((id) => (s.excludes?.[id] === undefined ? [] : [`${SERVER_LABELS[id]} takes no part: ${s.excludes[id]}`])),
    }),
  );
  for (const [i, scenario] of scenarios.entries()) {
    if (scenario.memoryOnly === true) continue;
    log(`\n== scenario ${i + 1} of ${scenarios.length}: ${scenario.id} (${scenario.title})`);
    await scenario.run(contextFor(scenario), results[i]!);
  }
  for (const s of live.values()) await s.stop();
  files?.remove();
  const memory = scenarios.filter((s) => s.memoryOnly === true);
  if (memory.length > 0) {
    log(`\n== scenarios ${memory.map((s) => s.id).join(' and ')}, at the same time (memory only, fresh processes)`);
    await Promise.all(memory.map((s) => s.run(contextFor(s), results[scenarios.indexOf(s)]!)));
  }

  let fanoutRows: FanoutRow[] = [];
  if (wanted('fanout')) {
    log(`\n== fanout: one publish to many idle SSE clients`);
    fanoutRows = await runFanout({ clients: options.fanoutClients, runs: options.runs, fdLimit, pinning, log });
  }

  let parserRows: ParserRow[] = [];
  if (wanted('parser')) {
    log(`\n== parser micro-benchmark`);
    parserRows = runParserBench(Math.max(options.runs, 3), options.quick ? 200 : 1000, log);
  }

  // Report.
  const seconds = (Date.now() - started) / 1000;
  const loadAfter = os.loadavg();
  const targets = targetsTable(results);
  const notes = results.flatMap((r) => r.notes.map((n) => `${r.id}: ${n}`));
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const caption = `${options.quick ? 'quick' : 'full'} run, ${when}, median of ${options.runs} runs; load average before ${fmtLoad(loadBefore)}`;
  const section = [
    `_Written by \`npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}\` on ${when}; do not edit by hand._`,
    '',
    `- ${options.quick ? '**Quick run**: shorter durations and smaller bodies than a full run.' : 'Full run.'} ${options.runs} runs per figure; took ${Math.round(seconds)} s.`,
    ...machine(wrk, bun).map((l) => `- ${l}`),
    `- ${pinning.note}.`,
    `- Load average before the run: ${fmtLoad(loadBefore)}; after: ${fmtLoad(loadAfter)} (1 / 5 / 15 min). Other work shared the machine.`,
    '',
    '### Results',
    '',
    resultsTable(results),
    '',
    '### Targets',
    '',
    `${targets.summary}.`,
    '',
    targets.table,
    '',
    '### Chart',
    '',
    '![nsgi, node:http, the ceiling and Bun.serve per scenario, as ratios to node:http](BENCHMARKS.svg)',
    '',
    ...(results.some((r) => r.id.startsWith('sweep-')) ? ['![CPU s/GiB and MiB/s against chunk size, per server](BENCHMARKS-sweep.svg)', ''] : []),
    'Raw samples (every run of every figure, latency histograms, versions, flags, machine): `BENCHMARKS.json`; the charts are drawn from it.',
    '',
    ...(parserRows.length > 0 ? ['### Parser micro-benchmark', '', parserTable(parserRows), ''] : []),
    ...(fanoutRows.length > 0 ? ['### Fan-out: one publish to many idle SSE clients', '', fanoutTable(fanoutRows), ''] : []),
    ...(skipped.length + notes.length > 0 ? ['### Skipped and notes', '', ...skipped.map((s) => `- skipped: ${s}`), ...notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n');

  log(`\n${resultsTable(results)}\n\nTargets: ${targets.summary}\n${targets.table}`);
  if (parserRows.length > 0) log(`\n${parserTable(parserRows)}`);
  if (fanoutRows.length > 0) log(`\n${fanoutTable(fanoutRows)}`);
  log(`\nfinished in ${seconds.toFixed(1)} s; load average now ${fmtLoad(loadAfter)}`);

  // The raw samples first; the charts are drawn from the file, as `test/bench/chart.ts` redraws them.
  const stamp = when.replace(/[:]/g, '-');
  const recordFile = `${RESULTS}${stamp}.json`;
  saveRecord(recordFile, {
    version: RECORD_VERSION,
    when,
    argv: process.argv.slice(2),
    quick: options.quick,
    runsPerFigure: options.runs,
    seconds,
    machine: machine(wrk, bun),
    versions: versions(ROOT, { wrk, bun }),
    pinning: pinning.note,
    load: { before: loadBefore, after: loadAfter },
    servers: servers.map((id) => ({
      id,
      label: SERVER_LABELS[id]!,
      command: SCENARIO_STARTED.includes(id)
        ? 'started by the scenarios that use it (lib/nginx.ts)'
        : (options.external.find((e) => e.id === id)?.command ?? command(id).flat().join(' ')),
    })),
    results: toRecordResults(results),
  });
  const saved = loadRecord(recordFile).results;
  const sweepChart = sweepChartSvg(saved, caption);
  writeFileSync(`${RESULTS}${stamp}.svg`, chartSvg(saved, caption));
  if (sweepChart !== null) writeFileSync(`${RESULTS}${stamp}-sweep.svg`, sweepChart);
  log(`raw samples in ${recordFile}, charts beside it`);

  const partial = options.quick || options.only !== null || options.servers !== null || options.external.length > 0;
  if (partial && !options.write) {
    log(`BENCHMARKS.md not rewritten (partial run; pass --write to rewrite it anyway)`);
    return;
  }
  rewriteSection(MARKDOWN, START, END, section);
  writeFileSync(RECORD, readFileSync(recordFile, 'utf8'));
  writeFileSync(CHART, chartSvg(saved, caption));
  if (sweepChart !== null) writeFileSync(SWEEP_CHART, sweepChart);
  log(`rewrote the results section of BENCHMARKS.md, BENCHMARKS.json and the charts`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
