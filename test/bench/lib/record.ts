/**
 * The raw-samples file: every run of the suite writes one JSON file with what it measured (each
 * server's figures run by run, the latency histograms, the notes) and what it ran on (versions,
 * flags, machine, pinning, load, the commands of added servers). The charts are drawn from this
 * file, so a chart can be redrawn, or checked, from the samples behind it (`test/bench/chart.ts`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { addServer, SERVER_ORDER, type Metric, type ScenarioResult, type ServerId } from './model.ts';

/** RECORD_VERSION changes when the file's shape does. */
export const RECORD_VERSION = 1;

/** ServerRecord says what one server of the run was. */
export interface ServerRecord {
  id: ServerId;
  label: string;
  /** The command line that started the server (as given to `--server`, for an added one). */
  command: string;
}

/** RunRecord is the raw-samples file. */
export interface RunRecord {
  version: number;
  /** When the run ended, ISO 8601. */
  when: string;
  /** The suite's arguments, as typed. */
  argv: string[];
  quick: boolean;
  runsPerFigure: number;
  seconds: number;
  machine: string[];
  versions: Record<string, string | null>;
  pinning: string;
  load: { before: number[]; after: number[] };
  servers: ServerRecord[];
  results: Array<{
    id: string;
    title: string;
    metrics: Metric[];
    notes: string[];
    runs: Record<string, Array<Record<string, number>>>;
    raw?: Record<string, unknown[]>;
  }>;
}

/** packageVersion is an installed package's version, or null when it is not installed (or has no loadable package.json). */
function packageVersion(root: string, name: string): string | null {
  try {
    const require = createRequire(`${root}package.json`);
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return null;
  }
}

/** versions are what the figures depend on: nsgi's commit, Node, and the packages the servers load. */
export function versions(root: string, extra: Record<string, string | null>): Record<string, string | null> {
  const git = spawnSync('git', ['-C', root, 'describe', '--always', '--dirty'], { encoding: 'utf8' });
  return {
    nsgi: git.status === 0 ? git.stdout.trim() : null,
    node: process.version,
    v8: process.versions.v8,
    ws: packageVersion(root, 'ws'),
    bufferutil: packageVersion(root, 'bufferutil'),
    'utf-8-validate': packageVersion(root, 'utf-8-validate'),
    tsx: packageVersion(root, 'tsx'),
    ...extra,
  };
}

/** toRecordResults turns the in-memory results into the file's plain objects. */
export function toRecordResults(results: ScenarioResult[]): RunRecord['results'] {
  return results.map((r) => ({
    id: r.id,
    title: r.title,
    metrics: r.metrics,
    notes: r.notes,
    runs: Object.fromEntries([...r.runs].map(([id, runs]) => [id, runs.map((f) => f ?? {})])),
    ...(r.raw === undefined ? {} : { raw: Object.fromEntries(r.raw) }),
  }));
}

/** saveRecord writes `record` as `file`, making its folder if needed. */
export function saveRecord(file: string, record: RunRecord): void {
  mkdirSync(file.slice(0, file.lastIndexOf('/')), { recursive: true });
  // NaN (a failed run's figure) is not JSON; null stands for it and is read back as NaN.
  writeFileSync(file, JSON.stringify(record, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1) + '\n');
}

/**
 * loadRecord reads a raw-samples file back into results the report and the charts take, and
 * makes its added servers known to them.
 */
export function loadRecord(file: string): { record: RunRecord; results: ScenarioResult[] } {
  if (!existsSync(file)) throw new Error(`no raw-samples file ${file}`);
  const record = JSON.parse(readFileSync(file, 'utf8')) as RunRecord;
  if (record.version !== RECORD_VERSION) throw new Error(`${file} is a version ${record.version} raw-samples file; this suite reads version ${RECORD_VERSION}`);
  for (const s of record.servers) if (!SERVER_ORDER.includes(s.id)) addServer(s.id, s.label);
  const number = (v: unknown): number => (typeof v === 'number' ? v : NaN);
  const results = record.results.map(
    (r): ScenarioResult => ({
      id: r.id,
      title: r.title,
      metrics: r.metrics,
      notes: r.notes,
      runs: new Map(Object.entries(r.runs).map(([id, runs]) => [id, runs.map((f) => Object.fromEntries(Object.entries(f).map(([k, v]) => [k, number(v)])))])),
      ...(r.raw === undefined ? {} : { raw: new Map(Object.entries(r.raw)) }),
    }),
  );
  return { record, results };
}

