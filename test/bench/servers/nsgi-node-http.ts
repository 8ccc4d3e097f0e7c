/**
 * The same nsgi app served by node:http through the adapter: `createNodeServer`, which wires
 * `toNodeListener` for requests and `toNodeUpgradeListener` for `/ws`.
 */
import { createNodeServer } from '../../../src/adapters/node-http.ts';
import { app } from './app.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

exitOnSignals();
const server = createNodeServer(app);
server.listen(portFromArgv(), '127.0.0.1', () => {
  announce('nsgi-node-http', (server.address() as { port: number }).port);
});
