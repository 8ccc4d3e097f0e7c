/**
 * clock: an async generator that yields the time once a second, for `?n=` ticks (default 10, at
 * most 3600), as text/plain.
 *
 * Three things to see. `write.flushHead()` sends the status line and headers at once, so the
 * client knows the request was accepted a whole second before the first tick exists (without it
 * the head would wait for the first chunk). `environ['nsgi.signal']` aborts the wait between ticks
 * the moment the client leaves, instead of at the next tick. And the generator's `finally` runs
 * however the response ends, so cleanup has one place.
 *
 *   node bin/nsgi.js examples/clock.ts
 *   curl -N 'http://127.0.0.1:8000/?n=5'      (-N: print each tick as it arrives; Ctrl-C to leave early)
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { App, ErrorStream } from '../protocol/nsgi.ts';

/** DEFAULT_TICKS is how many ticks a request without `?n=` gets. */
export const DEFAULT_TICKS = 10;

/** MAX_TICKS caps `?n=` at an hour. */
export const MAX_TICKS = 3600;

/** TICK_MS is the time between ticks; the first tick comes one interval after the head. */
export const TICK_MS = 1000;

/** app streams `?n=` lines, each an ISO 8601 timestamp, one per second. */
export const app: App = (environ, startResponse) => {
  const asked = new URLSearchParams(environ.QUERY_STRING).get('n') ?? String(DEFAULT_TICKS);
  if (!/^\d+$/.test(asked)) {
    const message = `n must be a whole number of ticks, got ${JSON.stringify(asked)}\n`;
    startResponse('400 Bad Request', [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(Buffer.byteLength(message))],
    ]);
    return [message];
  }
  const write = startResponse('200 OK', [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Cache-Control', 'no-store'],
    // Asks nginx not to buffer the response, so each tick reaches the client when it is made.
    ['X-Accel-Buffering', 'no'],
  ]);
  write.flushHead();
  return ticks(Math.min(Number(asked), MAX_TICKS), environ['nsgi.signal'], environ['nsgi.errors']);
};

/** ticks yields the time `count` times, TICK_MS apart, and stops at once when `signal` aborts. */
async function* ticks(count: number, signal: AbortSignal, errors: ErrorStream): AsyncGenerator<string> {
  let sent = 0;
  try {
    while (sent < count) {
      // Rejects with an AbortError when the client leaves, which ends the generator here.
      await sleep(TICK_MS, undefined, { signal });
      yield `${new Date().toISOString()}\n`;
      sent++;
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    // The reason says who stopped it: the client leaving, or the server shutting down.
    const why = signal.aborted ? `, stopped: ${(signal.reason as Error).message}` : '';
    errors.write(`clock: ${sent} of ${count} ticks sent${why}`);
  }
}

export default app;
