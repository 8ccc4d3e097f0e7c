/**
 * The same nsgi app served by node:http through the adapter `toNodeListener`, when
 * `src/adapters/node-http.ts` exists (the suite checks before it starts this server).
 */
import http from 'node:http';
import type { App } from '../../../protocol/nsgi.ts';
import { app } from './app.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

type ToNodeListener = (app: App) => http.RequestListener;

exitOnSignals();
// A computed specifier, so the typecheck passes whether or not the adapter has landed.
const adapterUrl = new URL('../../../src/adapters/node-http.ts', import.meta.url).href;
const adapter = (await import(adapterUrl)) as { toNodeListener?: ToNodeListener };
if (typeof adapter.toNodeListener !== 'function') {
  process.stderr.write('src/adapters/node-http.ts does not export toNodeListener\n');
  process.exit(2);
}
const server = http.createServer(adapter.toNodeListener(app));
server.listen(portFromArgv(), '127.0.0.1', () => {
  announce('nsgi-node-http', (server.address() as { port: number }).port);
});
