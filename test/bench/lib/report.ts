/**
 * The report: the results table, the targets with pass or fail, the SVG chart, and the rewrite of
 * BENCHMARKS.md's generated section.
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { BUILTIN_SERVERS, SERVER_LABELS, SERVER_ORDER, series, type ScenarioResult, type ServerId } from './model.ts';
import { fmt, fmtRatio, ratios, summarize } from './stats.ts';

/** START and END mark the generated section of BENCHMARKS.md. */
export const START = '<!-- results:start -->';
export const END = '<!-- results:end -->';

/** ratioSummary is the median of per-run ratios of `server` to `against` for one metric. */
export function ratioSummary(result: ScenarioResult, server: ServerId, against: ServerId, metric: string): number {
  return summarize(ratios(series(result, server, metric), series(result, against, metric))).median;
}

/** resultsTable renders every scenario's medians, spreads and ratios as Markdown. */
export function resultsTable(results: ScenarioResult[]): string {
  const lines = [
    '| scenario | metric | server | median | min | max | vs node:http | vs ceiling |',
    '|---|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    for (const m of r.metrics) {
      for (const id of SERVER_ORDER) {
        if (!r.runs.has(id)) continue;
        const s = summarize(series(r, id, m.key));
        const vsNode = r.runs.has('node-http') && !m.absolute ? ratioSummary(r, id, 'node-http', m.key) : NaN;
        const vsCeiling = r.runs.has('ceiling') && !m.absolute ? ratioSummary(r, id, 'ceiling', m.key) : NaN;
        const arrow = m.better === 'higher' ? '↑' : '↓';
        lines.push(
          `| ${r.title} | ${m.unit} ${arrow} | ${SERVER_LABELS[id]} | ${fmt(s.median)} | ${fmt(s.min)} | ${fmt(s.max)} | ${fmtRatio(vsNode)} | ${fmtRatio(vsCeiling)} |`,
        );
      }
    }
  }
  lines.push('', '↑ higher is better, ↓ lower is better. Ratios are medians of per-run ratios (run k of each server against run k of the other); RSS growth, often zero or a page or two, is shown without ratios.');
  return lines.join('\n');
}

/** Target is one goal from the issue, checked against the medians. */
interface Target {
  scenario: string;
  text: string;
  check(result: ScenarioResult): { measured: string; pass: boolean } | null;
}

const metricName: Record<string, string> = { rps: 'req/s', cpu: 'CPU s/GiB', kib: 'KiB per connection', mib: 'RSS growth', msgs: 'messages/s' };

function ratioTarget(scenario: string, metric: string, against: ServerId, op: '>=' | '<=', bound: number, text: string): Target {
  return {
    scenario,
    text,
    check(result) {
      if (!result.runs.has('nsgi') || !result.runs.has(against)) return null;
      const ratio = ratioSummary(result, 'nsgi', against, metric);
      if (!Number.isFinite(ratio)) return null;
      const pass = op === '>=' ? ratio >= bound : ratio <= bound;
      // How far off: the change in nsgi's figure that would just meet the target.
      const change = ((bound / ratio - 1) * 100).toFixed(0);
      const shown = `${ratio.toFixed(3)}x ${SERVER_LABELS[against]}`;
      return { measured: pass ? shown : `${shown}; misses by ${op === '>=' ? `+${change}` : change}% of nsgi's ${metricName[metric]}`, pass };
    },
  };
}

/** TARGETS are nsgi's performance goals, as ratios within one run. */
export const TARGETS: Target[] = [
  ratioTarget('hello', 'rps', 'ceiling', '>=', 0.85, 'hello, keep-alive: >= 0.85x the ceiling req/s'),
  ratioTarget('pipelined', 'rps', 'ceiling', '>=', 0.3, 'hello, 16 pipelined: >= 0.3x the ceiling req/s'),
  ratioTarget('stream-64k', 'cpu', 'ceiling', '<=', 1.1, "64 KiB chunks: CPU s/GiB <= 1.1x the ceiling's"),
  ratioTarget('stream-1k-sync', 'cpu', 'ceiling', '<=', 1.2, "1 KiB chunks, sync generator: CPU s/GiB <= 1.2x the ceiling's"),
  ratioTarget('stream-1k-async', 'cpu', 'ceiling', '<=', 1.2, "1 KiB chunks, async generator: CPU s/GiB <= 1.2x the ceiling's"),
  ratioTarget('file', 'cpu', 'node-http', '<=', 1, "file from disk: CPU s/GiB <= node:http's (createReadStream piped)"),
  ratioTarget('websocket-echo', 'msgs', 'node-http', '>=', 3, 'WebSocket echo: >= 3x node:http + ws messages/s'),
  ratioTarget('sse-idle', 'kib', 'bun', '<=', 1, "idle SSE memory per connection: <= Bun.serve's"),
  {
    scenario: 'slow-reader',
    text: "slow reader RSS growth: <= the ceiling's + 4 MiB",
    check(result) {
      if (!result.runs.has('nsgi') || !result.runs.has('ceiling')) return null;
      const nsgi = summarize(series(result, 'nsgi', 'mib')).median;
      const ceiling = summarize(series(result, 'ceiling', 'mib')).median;
      if (!Number.isFinite(nsgi) || !Number.isFinite(ceiling)) return null;
      const pass = nsgi <= ceiling + 4;
      return { measured: `${fmt(nsgi)} MiB vs ceiling ${fmt(ceiling)} MiB${pass ? '' : ` (${fmt(nsgi - ceiling - 4)} MiB over)`}`, pass };
    },
  },
];

/** targetsTable checks each target that the run measured. */
export function targetsTable(results: ScenarioResult[]): { table: string; summary: string } {
  const lines = ['| target | nsgi measured (median) | result |', '|---|---|---|'];
  let passed = 0;
  let checked = 0;
  for (const t of TARGETS) {
    const r = results.find((x) => x.id === t.scenario);
    const outcome = r === undefined ? null : t.check(r);
    if (outcome === null) {
      lines.push(`| ${t.text} | not measured in this run | — |`);
      continue;
    }
    checked++;
    if (outcome.pass) passed++;
    lines.push(`| ${t.text} | ${outcome.measured} | ${outcome.pass ? '**pass**' : '**FAIL**'} |`);
  }
  return { table: lines.join('\n'), summary: `${passed} of ${checked} measured targets pass` };
}

const COLORS: Record<ServerId, string> = {
  nsgi: '#2563eb',
  'nsgi-node-http': '#7c3aed',
  'node-http': '#6b7280',
  ceiling: '#16a34a',
  bun: '#f59e0b',
  nginx: '#0f766e',
};
/** ADDED_COLORS colour the servers added with `--server`, in the order they were added. */
const ADDED_COLORS = ['#dc2626', '#0891b2', '#db2777', '#65a30d', '#92400e', '#4f46e5'];

/** colorOf is a server's colour in the charts. */
export function colorOf(id: ServerId): string {
  const added = SERVER_ORDER.indexOf(id) - BUILTIN_SERVERS.length;
  return COLORS[id] ?? ADDED_COLORS[Math.max(0, added) % ADDED_COLORS.length]!;
}

/** esc escapes text for SVG. */
export const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * chartSvg draws, for each scenario's first metric, one bar per server: its median ratio to
 * node:http (node:http = 1), on a log2 axis so 0.5x and 2x sit equally far from 1.
 */
export function chartSvg(results: ScenarioResult[], caption: string): string {
  const groups = results.filter((r) => r.runs.has('node-http') && !r.metrics[0]!.absolute);
  const servers = SERVER_ORDER.filter((id) => groups.some((r) => r.runs.has(id)));
  const values = groups.map((r) => servers.map((id) => (r.runs.has(id) ? ratioSummary(r, id, 'node-http', r.metrics[0]!.key) : NaN)));
  const finite = values.flat().filter((v) => Number.isFinite(v) && v > 0);
  const lo = Math.min(-1, Math.floor(Math.log2(Math.min(...finite, 1))));
  const hi = Math.max(1, Math.ceil(Math.log2(Math.max(...finite, 1))));
  const bar = 18;
  const groupWidth = servers.length * bar + 36;
  const left = 60;
  const top = 70;
  const plotHeight = 300;
  const width = left + groups.length * groupWidth + 20;
  const height = top + plotHeight + 80;
  const y = (v: number): number => top + plotHeight - ((Math.log2(v) - lo) / (hi - lo)) * plotHeight;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">nsgi against node:http (= 1) and the ceiling, median ratio per scenario (log scale)</text>`,
    `<text x="${left}" y="38" fill="#444">${esc(caption)}</text>`,
  ];
  servers.forEach((id, i) => {
    const x = left + i * 150;
    out.push(`<rect x="${x}" y="48" width="12" height="12" fill="${colorOf(id)}"/><text x="${x + 16}" y="58">${esc(SERVER_LABELS[id]!)}</text>`);
  });
  for (let e = lo; e <= hi; e++) {
    const v = 2 ** e;
    const gy = y(v).toFixed(1);
    out.push(`<line x1="${left}" x2="${width - 20}" y1="${gy}" y2="${gy}" stroke="${e === 0 ? '#111' : '#ddd'}" stroke-width="${e === 0 ? 1.5 : 1}"/>`);
    out.push(`<text x="${left - 6}" y="${Number(gy) + 4}" text-anchor="end">${v >= 1 ? v : `1/${1 / v}`}x</text>`);
  }
  groups.forEach((r, g) => {
    const gx = left + g * groupWidth + 18;
    servers.forEach((id, i) => {
      const v = values[g]![i]!;
      if (!Number.isFinite(v) || v <= 0) return;
      const x = gx + i * bar;
      const yv = y(v);
      const base = y(2 ** lo);
      out.push(`<rect x="${x}" y="${yv.toFixed(1)}" width="${bar - 3}" height="${(base - yv).toFixed(1)}" fill="${colorOf(id)}"><title>${esc(SERVER_LABELS[id]!)}: ${fmtRatio(v)}</title></rect>`);
      out.push(`<text x="${x + (bar - 3) / 2}" y="${(yv - 3).toFixed(1)}" text-anchor="middle" font-size="8">${v >= 10 ? v.toFixed(0) : v.toFixed(1)}</text>`);
    });
    const m = r.metrics[0]!;
    const cx = gx + (servers.length * bar) / 2;
    out.push(`<text x="${cx}" y="${top + plotHeight + 18}" text-anchor="middle" font-weight="bold">${esc(r.id)}</text>`);
    out.push(`<text x="${cx}" y="${top + plotHeight + 32}" text-anchor="middle" fill="#444">${esc(m.unit)}</text>`);
    out.push(`<text x="${cx}" y="${top + plotHeight + 46}" text-anchor="middle" fill="#444">${m.better === 'higher' ? 'higher is better' : 'lower is better'}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** rewriteSection replaces what lies between `start` and `end` in `file`, or appends the block. */
export function rewriteSection(file: string, start: string, end: string, body: string): void {
  const block = `${start}\n${body.trim()}\n${end}`;
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  const next = a >= 0 && b > a ? text.slice(0, a) + block + text.slice(b + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
}
