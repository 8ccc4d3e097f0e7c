/**
 * Open-loop load: requests (or event streams) started at a fixed rate whatever the server does,
 * each one's latency measured from the moment it was meant to start, not from when it was sent.
 * A closed-loop client (wrk, or any client that waits for an answer before it asks again) sends
 * less while the server stalls, so the stall shows in one sample instead of in every request that
 * should have gone out meanwhile: the coordinated omission that wrk2 and HdrHistogram correct the
 * same way. A request whose connection is still busy waits for it, and that wait counts.
 *
 * The clients share a core with the rest of the suite and their timers fire about every
 * millisecond, so latencies under a millisecond or two are the client's resolution, not the
 * server's; the percentiles above that are what this mode is for.
 */
import net from 'node:net';
import { BodyCounter, closeAbruptly } from './clients.ts';

/** TICK_MS is how often the schedule is checked for requests that are due. */
const TICK_MS = 1;
/** SLACK_SECONDS is how long past the schedule the client waits for the last answers. */
const SLACK_SECONDS = 15;
/** START_DELAY_MS leaves the connections time to open before the first request is due. */
const START_DELAY_MS = 100;

/** Histogram keeps latencies in buckets 2% wide (HdrHistogram's idea, simplified), for the raw-samples file. */
export interface Histogram {
  /** Bucket i holds latencies in [BASE^i, BASE^(i+1)) microseconds. */
  base: number;
  counts: Record<number, number>;
}

/** HISTOGRAM_BASE is the ratio between neighbouring buckets' bounds. */
const HISTOGRAM_BASE = 1.02;

/** histogram buckets latencies given in milliseconds. */
export function histogram(latenciesMs: number[]): Histogram {
  const counts: Record<number, number> = {};
  for (const ms of latenciesMs) {
    const i = Math.floor(Math.log(Math.max(1, ms * 1000)) / Math.log(HISTOGRAM_BASE));
    counts[i] = (counts[i] ?? 0) + 1;
  }
  return { base: HISTOGRAM_BASE, counts };
}

/** percentile is the p-th percentile (0 to 100) of `sorted`, by nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** RequestLoadOptions describes an open-loop run of GET requests over keep-alive connections. */
export interface RequestLoadOptions {
  port: number;
  path: string;
  connections: number;
  /** Requests per second over all connections. */
  rate: number;
  seconds: number;
  /** check throws when a response is not what the route must send. */
  check(status: number, bodyBytes: number): void;
}

/** RequestLoadResult is every request's latency in ms, from its intended start to its last byte. */
export interface RequestLoadResult {
  latenciesMs: number[];
  /** Requests still unanswered when the slack ran out: counted with their latency so far. */
  unfinished: number;
}

/** requestLoad runs GET `path` at `rate` per second for `seconds` over `connections` connections. */
export function requestLoad(options: RequestLoadOptions): Promise<RequestLoadResult> {
  const total = Math.round(options.rate * options.seconds);
  const interval = 1000 / options.rate;
  const request = Buffer.from(`GET ${options.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    let t0 = 0;
    let scheduled = 0;
    let done = 0;
    let ticker: NodeJS.Timeout | null = null;
    let settled = false;
    const conns: Array<{ socket: net.Socket; pending: number[]; intended: number; counter: BodyCounter | null }> = [];
    const finish = (err: Error | null, unfinished = 0): void => {
      if (settled) return;
      settled = true;
      if (ticker !== null) clearTimeout(ticker);
      clearTimeout(guard);
      const now = performance.now();
      if (err === null) {
        // Unanswered requests count with the latency they have reached: a lower bound.
        for (const c of conns) {
          if (c.counter !== null) latencies.push(now - c.intended);
          for (const t of c.pending) latencies.push(now - t);
        }
        for (let j = scheduled; j < total; j++) latencies.push(now - (t0 + j * interval));
      }
      closeAbruptly(conns.map((c) => c.socket));
      if (err !== null) reject(err);
      else resolve({ latenciesMs: latencies, unfinished });
    };
    const guard = setTimeout(() => finish(null, total - done), (options.seconds + SLACK_SECONDS) * 1000 + START_DELAY_MS);
    const send = (c: (typeof conns)[number]): void => {
      if (c.counter !== null || c.pending.length === 0) return;
      c.intended = c.pending.shift()!;
      c.counter = new BodyCounter();
      c.socket.write(request);
    };
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
      for (; scheduled < due; scheduled++) {
        const c = conns[scheduled % conns.length]!;
        c.pending.push(t0 + scheduled * interval);
        send(c);
      }
      ticker = scheduled < total ? setTimeout(tick, TICK_MS) : null;
    };
    let open = 0;
    for (let i = 0; i < options.connections; i++) {
      const socket = net.connect({ port: options.port, host: '127.0.0.1', noDelay: true });
      const c = { socket, pending: [] as number[], intended: 0, counter: null as BodyCounter | null };
      conns.push(c);
      socket.on('connect', () => {
        if (++open < options.connections) return;
        t0 = performance.now() + START_DELAY_MS;
        ticker = setTimeout(tick, START_DELAY_MS);
      });
      socket.on('data', (buf: Buffer) => {
        const counter = c.counter;
        if (counter === null) return finish(new Error(`${options.path}: ${buf.length} bytes arrived with no request in flight`));
        try {
          counter.feed(buf);
          if (!counter.done) return;
          options.check(counter.status, counter.bodyBytes);
        } catch (err) {
          return finish(err as Error);
        }
        latencies.push(performance.now() - c.intended);
        c.counter = null;
        if (++done === total) return finish(null);
        send(c);
      });
      socket.on('error', (err) => finish(err));
      socket.on('close', () => {
        if (done < total) finish(new Error(`${options.path}: the server closed a connection after ${done} of ${total} responses`));
      });
    }
  });
}

/** StreamLoadOptions describes an open-loop run of event streams, each on its own connection. */
export interface StreamLoadOptions {
  port: number;
  /** Streams started per second. */
  rate: number;
  seconds: number;
  /** Events per stream and the interval the server is asked to keep between them. */
  count: number;
  every: number;
}

/** StreamLoadResult is each stream's time to first byte and every gap between two events, in ms. */
export interface StreamLoadResult {
  ttfbMs: number[];
  gapsMs: number[];
}

/** LF is the line feed: two in a row (a blank line) end an event, and chunk framing never has two in a row. */
const LF = 0x0a;

/**
 * streamLoad opens `/sse?count=N&every=MS` streams at `rate` per second for `seconds`, each on a
 * new connection, and checks that each ends after exactly N events with a 200.
 */
export function streamLoad(options: StreamLoadOptions): Promise<StreamLoadResult> {
  const total = Math.max(1, Math.round(options.rate * options.seconds));
  const interval = 1000 / options.rate;
  const request = Buffer.from(`GET /sse?count=${options.count}&every=${options.every} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
  const ttfb: number[] = [];
  const gaps: number[] = [];
  const sockets = new Set<net.Socket>();
  return new Promise((resolve, reject) => {
    const t0 = performance.now() + START_DELAY_MS;
    let started = 0;
    let ended = 0;
    let settled = false;
    let ticker: NodeJS.Timeout | null = null;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      if (ticker !== null) clearTimeout(ticker);
      clearTimeout(guard);
      closeAbruptly([...sockets]);
      if (err !== null) reject(err);
      else resolve({ ttfbMs: ttfb, gapsMs: gaps });
    };
    const limit = options.seconds + (options.count * options.every) / 1000 + SLACK_SECONDS;
    const guard = setTimeout(() => finish(new Error(`event streams: ${total - ended} of ${total} not finished ${limit} s after the first`)), limit * 1000);
    const start = (intended: number): void => {
      const socket = net.connect({ port: options.port, host: '127.0.0.1', noDelay: true });
      sockets.add(socket);
      const counter = new BodyCounter();
      let first = true;
      let lastByteLf = false;
      let events = 0;
      let lastEvent = 0;
      socket.on('connect', () => socket.write(request));
      socket.on('data', (buf: Buffer) => {
        const now = performance.now();
        if (first) {
          first = false;
          ttfb.push(now - intended);
        }
        try {
          counter.feed(buf);
        } catch (err) {
          return finish(err as Error);
        }
        // Events end with a blank line; one read may end several, and a read may split one.
        for (let i = 0; i < buf.length; i++) {
          const lf = buf[i] === LF;
          if (lf && lastByteLf) {
            if (events > 0) gaps.push(now - lastEvent);
            events++;
            lastEvent = now;
          }
          lastByteLf = lf;
        }
        if (!counter.done) return;
        if (counter.status !== 200) return finish(new Error(`/sse answered ${counter.status}`));
        if (events !== options.count) return finish(new Error(`/sse sent ${events} events, not ${options.count}`));
        sockets.delete(socket);
        closeAbruptly([socket]);
        if (++ended === total) finish(null);
      });
      socket.on('error', (err) => finish(err));
      socket.on('close', () => {
        if (sockets.has(socket)) finish(new Error(`/sse: the server closed a stream after ${events} of ${options.count} events`));
      });
    };
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
      for (; started < due; started++) start(t0 + started * interval);
      ticker = started < total ? setTimeout(tick, TICK_MS) : null;
    };
    ticker = setTimeout(tick, START_DELAY_MS);
  });
}
