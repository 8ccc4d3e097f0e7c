/** nsgi serving the bench app on its own node:net server. */
import { serve } from '../../../src/index.ts';
import { app } from './app.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

exitOnSignals();
const server = await serve(app, { host: '127.0.0.1', port: portFromArgv() });
announce('nsgi', server.port);
