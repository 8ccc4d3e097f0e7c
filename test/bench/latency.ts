/**
 * The open-loop latency scenarios (lib/open-loop.ts): requests or event streams started at a
 * fixed rate, each one's latency taken from when it was meant to start. `latency-hello` sends
 * `GET /hello` at a steady rate over 50 keep-alive connections and reports the 50th, 99th and
 * 99.9th percentiles; `latency-sse` opens event streams at a steady rate, each asking for 20
 * events 10 ms apart, and reports the time to each stream's first byte and the gaps between its
 * events (ideally 10 ms each). The rates are well below what every built-in server sustains, so
 * the figures show how smoothly a server answers, not where it saturates; `--rate` sets them.
 * Each run keeps a histogram of its latencies for the raw-samples file.
 */
import { HELLO } from './servers/routes.ts';
import type { ScenarioResult, ServerId } from './lib/model.ts';
import { histogram, percentile, requestLoad, streamLoad } from './lib/open-loop.ts';
import { fmt } from './lib/stats.ts';
import { throughput, type Scenario } from './scenarios.ts';

/** HELLO_RATE and SSE_RATE are the default requests and streams per second (quick, full). */
const HELLO_RATE = { quick: 2000, full: 5000 };
const SSE_RATE = { quick: 50, full: 200 };
/** SSE_COUNT events per stream, SSE_EVERY_MS apart. */
const SSE_COUNT = 20;
const SSE_EVERY_MS = 10;
/** LATENCY_CONNECTIONS is how many keep-alive connections carry `latency-hello`'s requests. */
const LATENCY_CONNECTIONS = 50;

/** keep stores one run's histograms in the result's raw samples. */
function keep(result: ScenarioResult, server: ServerId, sample: unknown): void {
  result.raw ??= new Map();
  let runs = result.raw.get(server);
  if (runs === undefined) {
    runs = [];
    result.raw.set(server, runs);
  }
  runs.push(sample);
}

/** percentiles are a latency list's p50, p99 and p99.9 as figures named `prefix` + 50, 99, 999. */
function percentiles(prefix: string, values: number[]): Record<string, number> {
  const sorted = values.slice().sort((a, b) => a - b);
  return { [`${prefix}50`]: percentile(sorted, 50), [`${prefix}99`]: percentile(sorted, 99), [`${prefix}999`]: percentile(sorted, 99.9) };
}

const helloLatency: Scenario = {
  id: 'latency-hello',
  title: `/hello, open loop at a fixed rate, ${LATENCY_CONNECTIONS} connections`,
  metrics: [
    { key: 'p50', unit: 'latency p50 ms', better: 'lower' },
    { key: 'p99', unit: 'latency p99 ms', better: 'lower' },
    { key: 'p999', unit: 'latency p99.9 ms', better: 'lower' },
  ],
  needsWrk: false,
  route: 'hello',
  optIn: true,
  async run(ctx, result) {
    const rate = ctx.rate ?? (ctx.quick ? HELLO_RATE.quick : HELLO_RATE.full);
    const seconds = ctx.quick ? 2 : 10;
    result.title = `/hello, open loop at ${rate.toLocaleString('en-US')} req/s for ${seconds} s, ${LATENCY_CONNECTIONS} connections`;
    const load = (port: number, s: number) =>
      requestLoad({
        port,
        path: '/hello',
        connections: LATENCY_CONNECTIONS,
        rate,
        seconds: s,
        check(status, bytes) {
          if (status !== 200 || bytes !== HELLO.length) throw new Error(`/hello answered ${status} with ${bytes} body bytes`);
        },
      });
    await throughput(
      ctx,
      result,
      (server) => load(server.port, 1),
      async (server) => {
        const r = await load(server.port, seconds);
        if (r.unfinished > 0) result.notes.push(`${server.name}: ${r.unfinished} requests unanswered at the end of a run, counted with their latency so far`);
        keep(result, server.name, histogram(r.latenciesMs));
        return percentiles('p', r.latenciesMs);
      },
      (f) => `p50 ${fmt(f['p50']!)} ms, p99 ${fmt(f['p99']!)} ms, p99.9 ${fmt(f['p999']!)} ms`,
    );
  },
};

const sseLatency: Scenario = {
  id: 'latency-sse',
  title: `event streams, open loop, ${SSE_COUNT} events ${SSE_EVERY_MS} ms apart each`,
  metrics: [
    { key: 'ttfb50', unit: 'time to first byte p50 ms', better: 'lower' },
    { key: 'ttfb99', unit: 'time to first byte p99 ms', better: 'lower' },
    { key: 'ttfb999', unit: 'time to first byte p99.9 ms', better: 'lower' },
    { key: 'gap50', unit: `gap between events p50 ms (asked: ${SSE_EVERY_MS})`, better: 'lower' },
    { key: 'gap99', unit: `gap between events p99 ms (asked: ${SSE_EVERY_MS})`, better: 'lower' },
    { key: 'gap999', unit: `gap between events p99.9 ms (asked: ${SSE_EVERY_MS})`, better: 'lower' },
  ],
  needsWrk: false,
  route: 'sse',
  optIn: true,
  async run(ctx, result) {
    const rate = ctx.rate ?? (ctx.quick ? SSE_RATE.quick : SSE_RATE.full);
    const seconds = ctx.quick ? 2 : 10;
    result.title = `event streams, open loop, ${rate} new streams/s for ${seconds} s, ${SSE_COUNT} events ${SSE_EVERY_MS} ms apart each`;
    const load = (port: number, s: number) => streamLoad({ port, rate, seconds: s, count: SSE_COUNT, every: SSE_EVERY_MS });
    await throughput(
      ctx,
      result,
      (server) => load(server.port, 0.5),
      async (server) => {
        const r = await load(server.port, seconds);
        keep(result, server.name, { ttfb: histogram(r.ttfbMs), gaps: histogram(r.gapsMs) });
        return { ...percentiles('ttfb', r.ttfbMs), ...percentiles('gap', r.gapsMs) };
      },
      (f) => `first byte p50 ${fmt(f['ttfb50']!)} / p99 ${fmt(f['ttfb99']!)} ms; gaps p50 ${fmt(f['gap50']!)} / p99 ${fmt(f['gap99']!)} / p99.9 ${fmt(f['gap999']!)} ms`,
    );
  },
};

/** LATENCY_SCENARIOS are the open-loop scenarios, run with `--latency` or by name with `--only`. */
export const LATENCY_SCENARIOS: Scenario[] = [helloLatency, sseLatency];
