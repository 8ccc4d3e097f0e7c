/**
 * The chunk-size sweep's chart: for each sweep scenario, server CPU seconds per GiB and MiB/s
 * against the chunk size, one line per server, both axes logarithmic, from the medians over runs.
 */
import { SERVER_LABELS, SERVER_ORDER, series, type ScenarioResult } from './model.ts';
import { colorOf, esc } from './report.ts';
import { fmt, summarize } from './stats.ts';

/** sweepSizes are the chunk sizes a sweep result holds, from its `cpu@SIZE` metrics. */
export function sweepSizes(result: ScenarioResult): number[] {
  return result.metrics.filter((m) => m.key.startsWith('cpu@')).map((m) => Number(m.key.slice(4)));
}

/** isSweep says whether a result is a chunk-size sweep. */
export function isSweep(result: ScenarioResult): boolean {
  return sweepSizes(result).length > 0;
}

const sizeText = (n: number): string => (n >= 1 << 20 ? `${n >> 20}M` : n >= 1024 ? `${n >> 10}K` : `${n}`);

/** sweepChartSvg draws every sweep in `results` as two panels, CPU s/GiB and MiB/s, per row. */
export function sweepChartSvg(results: ScenarioResult[], caption: string): string | null {
  const sweeps = results.filter(isSweep);
  if (sweeps.length === 0) return null;
  const panelW = 440;
  const panelH = 260;
  const left = 70;
  const top = 80;
  const rowH = panelH + 80;
  const width = left + 2 * (panelW + left);
  const height = top + sweeps.length * rowH + 20;
  const servers = SERVER_ORDER.filter((id) => sweeps.some((r) => r.runs.has(id)));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">Chunk-size sweep: server CPU per GiB and throughput against chunk size (medians, log scales)</text>`,
    `<text x="${left}" y="38" fill="#444">${esc(caption)}</text>`,
  ];
  servers.forEach((id, i) => {
    const x = left + i * 150;
    out.push(`<rect x="${x}" y="48" width="12" height="12" fill="${colorOf(id)}"/><text x="${x + 16}" y="58">${esc(SERVER_LABELS[id]!)}</text>`);
  });
  sweeps.forEach((r, row) => {
    const sizes = sweepSizes(r);
    const panel = (col: number, prefix: string, unit: string, better: string): void => {
      const x0 = left + col * (panelW + left);
      const y0 = top + row * rowH + 20;
      const medians = servers.map((id) => sizes.map((size) => summarize(series(r, id, `${prefix}@${size}`)).median));
      const finite = medians.flat().filter((v) => Number.isFinite(v) && v > 0);
      if (finite.length === 0) return;
      const lo = Math.floor(Math.log10(Math.min(...finite)));
      const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...finite))));
      const x = (i: number): number => x0 + (i / Math.max(1, sizes.length - 1)) * panelW;
      const y = (v: number): number => y0 + panelH - ((Math.log10(v) - lo) / (hi - lo)) * panelH;
      out.push(`<text x="${x0}" y="${y0 - 6}" font-weight="bold">${esc(r.id)}: ${esc(unit)} (${better})</text>`);
      for (let e = lo; e <= hi; e++) {
        const gy = y(10 ** e).toFixed(1);
        out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${gy}" y2="${gy}" stroke="#ddd"/>`);
        out.push(`<text x="${x0 - 6}" y="${Number(gy) + 4}" text-anchor="end">${fmt(10 ** e)}</text>`);
      }
      sizes.forEach((size, i) => {
        out.push(`<text x="${x(i).toFixed(1)}" y="${y0 + panelH + 16}" text-anchor="middle">${sizeText(size)}</text>`);
      });
      out.push(`<text x="${x0 + panelW / 2}" y="${y0 + panelH + 32}" text-anchor="middle" fill="#444">chunk size, bytes</text>`);
      servers.forEach((id, s) => {
        const points = medians[s]!.map((v, i) => (Number.isFinite(v) && v > 0 ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : null)).filter((p) => p !== null);
        if (points.length === 0) return;
        out.push(`<polyline fill="none" stroke="${colorOf(id)}" stroke-width="2" points="${points.join(' ')}"/>`);
        medians[s]!.forEach((v, i) => {
          if (!Number.isFinite(v) || v <= 0) return;
          out.push(`<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${colorOf(id)}"><title>${esc(SERVER_LABELS[id]!)}, ${sizeText(sizes[i]!)} B chunks: ${fmt(v)} ${esc(unit)}</title></circle>`);
        });
      });
    };
    panel(0, 'cpu', 'server CPU s/GiB', 'lower is better');
    panel(1, 'mibps', 'MiB/s', 'higher is better');
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
