/**
 * Where an idle event stream's memory goes. For nsgi, node:http and the raw node:net ceiling, this
 * opens N idle `GET /sse` streams three times on a fresh server each time:
 *
 * 1. as the suite's `sse-idle` scenario does: RSS growth per stream;
 * 2. with V8's young generation held at 1 MiB (`--max-semi-space-size=1`): RSS growth per stream
 *    again, which shows how much of the first figure is the young generation growing while
 *    thousands of connections' objects survive, rather than the objects themselves;
 * 3. with a heap snapshot before and after (each after a full GC): live heap per stream, by kind of
 *    object, and the share that is nsgi's own classes (found by name in `src/`).
 *
 * Writes the tables between the memory markers of BENCHMARKS.md.
 *
 *   node --import tsx test/bench/memory.ts [--streams 5000] [--no-write] [--keep]
 *
 * `--keep` leaves the snapshots in a temporary directory (printed) for a closer look in a heap
 * snapshot viewer such as Chrome's DevTools.
 */
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { closeAbruptly, openEventStreams } from './lib/clients.ts';
import { decidePinning, openFileLimit, pinSelf, pinned, rssBytes, sleep, startServer, type RunningServer } from './lib/proc.ts';
import { rewriteSection } from './lib/report.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HOOK = fileURLToPath(new URL('./lib/heap-hook.ts', import.meta.url));
const START = '<!-- memory:start -->';
const END = '<!-- memory:end -->';
const SERVERS = [
  { id: 'nsgi', label: 'nsgi' },
  { id: 'node-http', label: 'node:http' },
  { id: 'ceiling', label: 'ceiling (raw node:net)' },
] as const;
/** How long the streams sit idle before RSS is read, as in the suite's sse-idle scenario. */
const SETTLE_MS = 1500;
const TOP = 12;

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Kind is one row of a heap diff: a kind of object and how much of it each stream added. */
interface Kind {
  name: string;
  bytes: number;
  count: number;
}

/** kindOf names a heap-snapshot node the way the tables group them. */
function kindOf(type: string, name: string): string {
  switch (type) {
    case 'object':
      return name;
    case 'closure':
      return `function ${name || '(anonymous)'}`;
    case 'string':
    case 'concatenated string':
    case 'sliced string':
      return '(strings)';
    case 'code':
      return '(compiled code)';
    case 'number':
      return '(heap numbers)';
    case 'object shape':
      return '(hidden classes)';
    case 'array':
      return '(internal arrays)';
    default:
      return `(${type}) ${name}`.slice(0, 60);
  }
}

/** tally sums self size and count per kind over one heap snapshot. */
function tally(file: string): Map<string, { bytes: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const out = new Map<string, { bytes: number; count: number }>();
  const nodes = snap.nodes;
  for (let i = 0; i < nodes.length; i += width) {
    const key = kindOf(types[nodes[i + iType]!]!, snap.strings[nodes[i + iName]!]!);
    const row = out.get(key) ?? { bytes: 0, count: 0 };
    row.bytes += nodes[i + iSize]!;
    row.count++;
    out.set(key, row);
  }
  return out;
}

/** heapDiff is what `after` holds beyond `before`, per stream, largest first. */
function heapDiff(before: string, after: string, streams: number): Kind[] {
  const a = tally(before);
  const rows: Kind[] = [];
  for (const [name, b] of tally(after)) {
    const base = a.get(name) ?? { bytes: 0, count: 0 };
    rows.push({ name, bytes: (b.bytes - base.bytes) / streams, count: (b.count - base.count) / streams });
  }
  return rows.sort((x, y) => y.bytes - x.bytes);
}

/** nsgiClasses are the class names declared in src/, to tell nsgi's own objects apart. */
function nsgiClasses(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) for (const m of readFileSync(path, 'utf8').matchAll(/\bclass (\w+)/g)) names.add(m[1]!);
    }
  };
  walk(`${ROOT}src`);
  return names;
}

interface Measured {
  label: string;
  rss: number;
  rssSmallYoung: number;
  heap: number;
  nsgiHeap: number;
  top: Kind[];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--streams');
  const streams = at >= 0 ? Number(args[at + 1]) : 5000;
  if (!Number.isInteger(streams) || streams < 10) throw new Error('--streams takes a whole number of at least 10');
  const write = !args.includes('--no-write');
  const keep = args.includes('--keep');
  const [soft] = openFileLimit();
  if (soft < streams + 200) throw new Error(`the open-file limit is ${soft}; ${streams} streams need about ${streams + 200} (ulimit -n)`);
  const pinning = decidePinning();
  pinSelf(pinning.client);
  const ours = nsgiClasses();
  const snapshotDir = mkdtempSync(`${os.tmpdir()}/nsgi-memory-`);
  process.env['HEAP_SNAPSHOT_DIR'] = snapshotDir;

  const start = (id: string, flags: string[], hook: string[] = []): Promise<RunningServer> => {
    const [cmd, argv] = pinned(pinning.server, process.execPath, [...flags, '--import', 'tsx', ...hook, `${ROOT}test/bench/servers/${id}.ts`, '0']);
    return startServer(id, cmd, argv, ROOT, null);
  };
  // Open a few streams and let them go first, so that code compiled on first use is not counted.
  const warm = async (port: number): Promise<void> => {
    closeAbruptly(await openEventStreams(port, 20, 20, 10_000));
    await sleep(500);
  };
  const rssPerStream = async (id: string, flags: string[]): Promise<number> => {
    const server = await start(id, flags);
    try {
      await warm(server.port);
      const before = rssBytes(server.pid);
      const sockets = await openEventStreams(server.port, streams, 50, 60_000);
      await sleep(SETTLE_MS);
      const after = rssBytes(server.pid);
      closeAbruptly(sockets);
      return (after - before) / streams;
    } finally {
      await server.stop();
    }
  };
  const snapshot = async (server: RunningServer): Promise<string> => {
    const line = once(server.child.stdout!, 'data');
    server.child.kill('SIGUSR2');
    const [text] = (await line) as [Buffer | string];
    const m = /SNAPSHOT (\S+)/.exec(String(text));
    if (m === null) throw new Error(`${server.name}: no snapshot line, got ${String(text)}`);
    return m[1]!;
  };

  const results: Measured[] = [];
  try {
    for (const { id, label } of SERVERS) {
      process.stdout.write(`${label}: RSS with ${streams} idle streams...\n`);
      const rss = await rssPerStream(id, []);
      process.stdout.write(`${label}: RSS with a 1 MiB young generation...\n`);
      const rssSmallYoung = await rssPerStream(id, ['--max-semi-space-size=1']);
      process.stdout.write(`${label}: heap snapshots...\n`);
      const server = await start(id, ['--expose-gc'], ['--import', HOOK]);
      server.child.stdout!.removeAllListeners('data');
      let top: Kind[];
      try {
        await warm(server.port);
        const before = await snapshot(server);
        const sockets = await openEventStreams(server.port, streams, 50, 60_000);
        await sleep(SETTLE_MS);
        const after = await snapshot(server);
        closeAbruptly(sockets);
        top = heapDiff(before, after, streams);
        if (keep) process.stdout.write(`${label}: snapshots ${before} (before) and ${after} (after)\n`);
      } finally {
        await server.stop();
      }
      const heap = top.reduce((sum, k) => sum + k.bytes, 0);
      const nsgiHeap = top.filter((k) => ours.has(k.name)).reduce((sum, k) => sum + k.bytes, 0);
      results.push({ label, rss, rssSmallYoung, heap, nsgiHeap, top });
    }
  } finally {
    if (keep) process.stdout.write(`snapshots kept in ${snapshotDir}\n`);
    else rmSync(snapshotDir, { recursive: true, force: true });
  }

  const kib = (bytes: number): string => (bytes / 1024).toFixed(2);
  const lines = [
    `_Written by \`node --import tsx test/bench/memory.ts\` on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${streams} idle streams per run, a fresh server for each run; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')}._`,
    '',
    '| server | RSS growth per stream | the same, young generation held at 1 MiB | live heap per stream | of which nsgi\'s own classes |',
    '|---|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.label} | ${kib(r.rss)} KiB | ${kib(r.rssSmallYoung)} KiB | ${kib(r.heap)} KiB | ${r.nsgiHeap > 0 ? `${kib(r.nsgiHeap)} KiB` : '-'} |`),
  ];
  for (const r of results) {
    lines.push('', `#### ${r.label}: live heap per stream, top ${TOP} kinds of object`, '', '| bytes per stream | objects per stream | kind |', '|---:|---:|---|');
    for (const k of r.top.slice(0, TOP)) lines.push(`| ${k.bytes.toFixed(0)} | ${k.count.toFixed(2)} | ${ours.has(k.name) ? `**${k.name}** (nsgi)` : k.name.replace(/\|/g, '\\|')} |`);
  }
  const text = lines.join('\n');
  process.stdout.write(`\n${text}\n`);
  if (write) {
    rewriteSection(`${ROOT}BENCHMARKS.md`, START, END, text);
    process.stdout.write('\nBENCHMARKS.md: memory section rewritten\n');
  }
}

await main();
