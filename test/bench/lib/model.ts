/** The shapes results take between the scenarios and the report. */

/** BuiltinServerId names a server under test that ships with the suite (`test/bench/servers/`). */
export type BuiltinServerId = 'nsgi' | 'nsgi-node-http' | 'node-http' | 'ceiling' | 'bun' | 'nginx';

/** ServerId names a server under test: a built-in one, or one added with `--server label=command`. */
export type ServerId = BuiltinServerId | (string & {});

/** BUILTIN_SERVERS are the suite's own servers, in report order. */
export const BUILTIN_SERVERS: BuiltinServerId[] = ['nsgi', 'nsgi-node-http', 'node-http', 'ceiling', 'bun', 'nginx'];

/**
 * SCENARIO_STARTED are the built-in servers that answer only some scenarios' routes, so the suite
 * runs no long-lived process of theirs: the scenarios that use them (Scenario.starts) start them.
 */
export const SCENARIO_STARTED: ServerId[] = ['nginx'];

/** SERVER_LABELS are the names the report prints; {@link addServer} adds the run's own. */
export const SERVER_LABELS: Record<ServerId, string> = {
  nsgi: 'nsgi',
  'nsgi-node-http': 'nsgi on node:http',
  'node-http': 'node:http',
  ceiling: 'ceiling (raw node:net)',
  bun: 'Bun.serve',
  nginx: 'nginx (sendfile)',
};

/** SERVER_ORDER is the order servers appear in tables and charts: the built-in ones, then the added ones. */
export const SERVER_ORDER: ServerId[] = [...BUILTIN_SERVERS];

/** addServer makes a server added to this run known to the report, after the built-in ones. */
export function addServer(id: ServerId, label: string): void {
  if (SERVER_ORDER.includes(id)) throw new Error(`a server named ${id} is already in the run`);
  SERVER_ORDER.push(id);
  SERVER_LABELS[id] = label;
}

/** Metric is one figure a scenario measures. */
export interface Metric {
  key: string;
  unit: string;
  better: 'higher' | 'lower';
  /**
   * True for a figure judged on its own scale rather than as a ratio: RSS growth that is often a
   * page or two, or zero, where a ratio to another server would only magnify noise.
   */
  absolute?: boolean;
}

/** ScenarioResult holds every run of one scenario: runs[server][k] is run k's figures. */
export interface ScenarioResult {
  id: string;
  title: string;
  metrics: Metric[];
  runs: Map<ServerId, Array<Record<string, number>>>;
  notes: string[];
  /** Samples behind the figures that the raw-samples file keeps: raw[server][k] is run k's (a latency histogram, say). */
  raw?: Map<ServerId, unknown[]>;
}

/** series is one server's values of one metric, run by run (NaN where a run failed). */
export function series(result: ScenarioResult, server: ServerId, metric: string): number[] {
  return (result.runs.get(server) ?? []).map((r) => r?.[metric] ?? NaN);
}
