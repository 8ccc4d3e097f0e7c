/** The shapes results take between the scenarios and the report. */

/** ServerId names a server under test. */
export type ServerId = 'nsgi' | 'nsgi-node-http' | 'node-http' | 'ceiling' | 'bun';

/** SERVER_LABELS are the names the report prints, in report order. */
export const SERVER_LABELS: Record<ServerId, string> = {
  nsgi: 'nsgi',
  'nsgi-node-http': 'nsgi on node:http',
  'node-http': 'node:http',
  ceiling: 'ceiling (raw node:net)',
  bun: 'Bun.serve',
};

/** SERVER_ORDER is the order servers appear in tables and the chart. */
export const SERVER_ORDER: ServerId[] = ['nsgi', 'nsgi-node-http', 'node-http', 'ceiling', 'bun'];

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
}

/** series is one server's values of one metric, run by run (NaN where a run failed). */
export function series(result: ScenarioResult, server: ServerId, metric: string): number[] {
  return (result.runs.get(server) ?? []).map((r) => r?.[metric] ?? NaN);
}
