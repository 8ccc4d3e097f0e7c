/**
 * The check every server passes on a route before any figure of it counts: the right status, the
 * right framing and the right bytes, once, with no load. A server that answers a route wrongly is
 * left out of that route's scenarios (with the reason in the report) instead of being measured
 * fast at being wrong. Under load, each client goes on checking what it can afford to (wrk counts
 * non-2xx answers; the download, event-stream and echo clients check framing and byte counts).
 */
import { closeAbruptly, download, openEventStreams } from './clients.ts';
import { CHECK_FILE } from './file-set.ts';
import { runEcho } from './ws-client.ts';
import { HELLO } from '../servers/routes.ts';

/** Route is a route of the suite that a scenario uses. */
export type Route = 'hello' | 'stream' | 'sse' | 'ws' | 'file';

/** PREFLIGHT_TIMEOUT_MS bounds each check. */
const PREFLIGHT_TIMEOUT_MS = 10_000;
/** An odd size and chunk, so a server that ignores either, or drops the last short chunk, fails. */
const CHECK_SIZE = 100_003;
const CHECK_CHUNK = 1000;

/** checkRoute resolves with why `route` is answered wrongly on 127.0.0.1:`port`, or null when it is right. */
export async function checkRoute(port: number, route: Route): Promise<string | null> {
  try {
    if (route === 'hello') {
      const res = await fetch(`http://127.0.0.1:${port}/hello`, { signal: AbortSignal.timeout(PREFLIGHT_TIMEOUT_MS) });
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200) return `GET /hello answered ${res.status}, not 200`;
      if (!body.equals(HELLO)) return `GET /hello sent ${JSON.stringify(body.toString('latin1').slice(0, 40))}, not ${JSON.stringify(HELLO.toString())}`;
    } else if (route === 'stream') {
      for (const mode of ['sync', 'async']) {
        const r = await download(port, `/stream?size=${CHECK_SIZE}&chunk=${CHECK_CHUNK}&mode=${mode}`, PREFLIGHT_TIMEOUT_MS);
        if (r.bodyBytes !== CHECK_SIZE) return `GET /stream (mode=${mode}) sent ${r.bodyBytes} body bytes, not ${CHECK_SIZE}`;
      }
    } else if (route === 'file') {
      const r = await download(port, `/file/${CHECK_FILE.name}`, PREFLIGHT_TIMEOUT_MS);
      if (r.bodyBytes !== CHECK_FILE.size) return `GET /file/${CHECK_FILE.name} sent ${r.bodyBytes} body bytes, not ${CHECK_FILE.size}`;
    } else if (route === 'sse') {
      closeAbruptly(await openEventStreams(port, 1, 1, PREFLIGHT_TIMEOUT_MS));
    } else {
      await runEcho({ port, path: '/ws', connections: 1, batch: 16, size: 32, warmupSeconds: 0, seconds: 0.2 });
    }
    return null;
  } catch (err) {
    return err instanceof Error ? err.message.split('\n')[0]! : String(err);
  }
}
