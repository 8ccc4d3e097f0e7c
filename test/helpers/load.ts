/**
 * A bounded continuous load for the restart tests: plain requests on new connections, event
 * streams and long polls, run against a server while it reloads, recycles or restarts, counting
 * every request that did not end in a complete 200 response.
 *
 * Each plain request uses a connection of its own, as a proxy retrying on a fresh connection would:
 * a request written on an idle keep-alive connection at the moment the server closes it may be
 * lost in flight, and RFC 9112 §9.3.1 leaves retrying it to the client, so it says nothing about
 * the server.
 */
import http from 'node:http';

/** LoadTarget is where the load goes: a TCP port, or a unix socket path. */
export type LoadTarget = { readonly port: number; readonly host?: string } | { readonly socketPath: string };

/** LoadReport is what a load run saw. */
export interface LoadReport {
  /** Plain requests answered 200 with their whole body. */
  ok: number;
  /** Requests that failed, each described (status, error, or a body cut short). */
  failures: string[];
  /** Event streams that ended with their closing event, and those that were cut. */
  streamsClean: number;
  /** Bodies of the plain responses, for tests that look at which process answered. */
  bodies: string[];
}

/** LoadOptions shapes a load run. */
export interface LoadOptions {
  /** Parallel loops of plain requests. */
  readonly concurrency?: number;
  /** The path plain requests ask for. */
  readonly path?: string;
  /** Parallel loops of long polls on `pollPath`, each a plain request the app holds a while. */
  readonly pollers?: number;
  /** A path answering a long poll. */
  readonly pollPath?: string;
  /** Event-stream requests kept open (each reopened when it ends), on `streamPath`. */
  readonly streams?: number;
  /** A path answering an event stream that ends with `event: bye` when the server closes. */
  readonly streamPath?: string;
  /** Whether a stream cut without its closing event counts as a failure. */
  readonly streamsMustEndCleanly?: boolean;
  /** Extra request headers (for a proxy's Host, say). */
  readonly headers?: Record<string, string>;
}

/** REQUEST_TIMEOUT_MS bounds one plain request; a request that hangs this long is a failure. */
const REQUEST_TIMEOUT_MS = 15_000;

/**
 * runLoad sends requests to `target` until `stop` aborts, then waits for those in flight and
 * reports. It is bounded by the caller's `stop`, which every test ties to a deadline.
 */
export async function runLoad(target: LoadTarget, stop: AbortSignal, options: LoadOptions = {}): Promise<LoadReport> {
  const report: LoadReport = { ok: 0, failures: [], streamsClean: 0, bodies: [] };
  const loops: Promise<void>[] = [];
  const plain = (path: string) => async (): Promise<void> => {
    while (!stop.aborted) {
      const result = await request(target, path, options.headers ?? {});
      if (result.ok) {
        report.ok++;
        report.bodies.push(result.body);
      } else report.failures.push(result.why);
    }
  };
  for (let i = 0; i < (options.concurrency ?? 4); i++) loops.push(plain(options.path ?? '/')());
  for (let i = 0; i < (options.pollers ?? 0); i++) loops.push(plain(options.pollPath ?? '/poll')());
  for (let i = 0; i < (options.streams ?? 0); i++) {
    loops.push((async () => {
      while (!stop.aborted) {
        // The load's own end closes the streams still open; that is not a failure.
        const result = await request(target, options.streamPath ?? '/stream', { ...options.headers, accept: 'text/event-stream' }, stop);
        if (stop.aborted && !(result.ok && result.body.includes('event: bye'))) break;
        const clean = result.ok && result.body.includes('event: bye');
        if (clean) report.streamsClean++;
        else if (!result.ok) report.failures.push(`stream: ${result.why}`);
        else if (options.streamsMustEndCleanly ?? true) report.failures.push(`stream ended without its closing event: ${JSON.stringify(result.body.slice(-80))}`);
      }
    })());
  }
  await Promise.all(loops);
  return report;
}

/**
 * request makes one request on a new connection and collects the whole response: a 200 with its
 * complete body is `ok`, anything else is described in `why`.
 */
export function request(
  target: LoadTarget,
  path: string,
  headers: Record<string, string>,
  cancel?: AbortSignal,
): Promise<{ ok: true; body: string } | { ok: false; why: string }> {
  return new Promise((resolve) => {
    const req = http.request({ ...target, path, agent: false, headers: { connection: 'close', ...headers }, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => resolve({ ok: false, why: `${path}: response error ${err.message}` }));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) resolve({ ok: false, why: `${path}: status ${res.statusCode} ${JSON.stringify(body.slice(0, 80))}` });
        else if (!res.complete) resolve({ ok: false, why: `${path}: body cut after ${body.length} bytes` });
        else resolve({ ok: true, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    cancel?.addEventListener('abort', () => req.destroy(new Error('load stopped')), { once: true });
    req.on('error', (err) => resolve({ ok: false, why: `${path}: ${err.message}` }));
    req.end();
  });
}
