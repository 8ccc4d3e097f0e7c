/**
 * `npm run fuzz -- --inputs N --seed S [--concurrency C]`: a longer run of the mutation fuzzer
 * (test/server/fuzzer.ts) than the slice in `npm test`. It prints progress after each batch and
 * a summary, lists every anomaly with the input number that replays it, and exits 1 if there was
 * any. Record the last long run in docs/FUZZING.md.
 */
import { parseArgs } from 'node:util';
import { runFuzz } from './fuzzer.ts';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '2000' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    concurrency: { type: 'string', default: '8' },
  },
});
const inputs = Number(values.inputs);
const seed = Number(values.seed);
const concurrency = Number(values.concurrency);
for (const [name, n] of [['inputs', inputs], ['seed', seed], ['concurrency', concurrency]] as const) {
  if (!Number.isSafeInteger(n) || n < 0 || (name !== 'seed' && n === 0)) {
    console.error(`fuzz: --${name} must be a whole number, got ${JSON.stringify(values[name])}`);
    process.exit(2);
  }
}
const unexpected: string[] = [];
process.on('uncaughtException', (err) => void unexpected.push(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => void unexpected.push(`unhandled rejection: ${String(err)}`));

console.log(`fuzz: ${inputs} inputs, seed ${seed}, ${concurrency} at once`);
const report = await runFuzz({
  inputs,
  seed,
  concurrency,
  progress: (done, anomalies) => process.stdout.write(`\r${done}/${inputs} inputs, ${anomalies} anomalies`),
});
process.stdout.write('\n');
console.log(`done in ${(report.ms / 1000).toFixed(1)} s; endings ${JSON.stringify(report.endings)}; statuses ${JSON.stringify(report.statuses)}`);
for (const a of report.anomalies) console.log(`anomaly ${a.kind} (input ${a.input}): ${a.detail}`);
for (const line of unexpected) console.log(line);
const failed = report.anomalies.length + unexpected.length;
console.log(failed === 0 ? 'no anomalies' : `${failed} anomalies`);
process.exit(failed === 0 ? 0 : 1);
