/**
 * Redraws the charts from a raw-samples file: `node --import tsx test/bench/chart.ts FILE [OUT]`
 * writes OUT.svg (ratios to node:http per scenario) and, when the run had a chunk-size sweep,
 * OUT-sweep.svg; OUT defaults to FILE without its `.json`. The figures come from the file alone.
 */
import { writeFileSync } from 'node:fs';
import { loadRecord } from './lib/record.ts';
import { chartSvg } from './lib/report.ts';
import { sweepChartSvg } from './lib/sweep-chart.ts';

const [file, out = file?.replace(/\.json$/, '')] = process.argv.slice(2);
if (file === undefined || out === undefined) {
  console.error('usage: node --import tsx test/bench/chart.ts RAW-SAMPLES.json [OUT]');
  process.exit(2);
}
const { record, results } = loadRecord(file);
const caption = `${record.quick ? 'quick' : 'full'} run, ${record.when}, median of ${record.runsPerFigure} runs; load average before ${record.load.before.map((x) => x.toFixed(2)).join(' / ')}`;
writeFileSync(`${out}.svg`, chartSvg(results, caption));
const sweep = sweepChartSvg(results, caption);
if (sweep !== null) writeFileSync(`${out}-sweep.svg`, sweep);
console.log(`wrote ${out}.svg${sweep === null ? '' : ` and ${out}-sweep.svg`}`);
