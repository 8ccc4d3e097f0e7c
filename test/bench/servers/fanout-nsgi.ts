/**
 * The fan-out server on nsgi: `GET /sse` streams the broker topic `fanout` (`sseTopic`), `POST
 * /publish` publishes its body to it. argv: `<port> memory|cluster|redis://...`. With `cluster`
 * this process is the primary: it keeps the log (startBrokerRelay), forks two workers that share
 * the port, and announces the port once both listen.
 */
import cluster from 'node:cluster';
import type { App } from '../../../protocol/nsgi.ts';
import { defaultBroker, serve, sseTopic, startBrokerRelay } from '../../../src/index.ts';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

/** FANOUT_WORKERS is how many workers the cluster variant runs. */
const FANOUT_WORKERS = 2;

const backend = process.argv[3] ?? 'memory';
const events = sseTopic('fanout', { heartbeatMs: 0 });

const app: App = async (environ, startResponse) => {
  if (environ.PATH_INFO === '/sse') return events(environ, startResponse);
  let body = '';
  for await (const part of environ['nsgi.input']) body += Buffer.from(part).toString('utf8');
  await defaultBroker().publish('fanout', body);
  startResponse('204 No Content', []);
  return [];
};

exitOnSignals();
if (backend === 'cluster' && cluster.isPrimary) {
  startBrokerRelay();
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    if (++listening === FANOUT_WORKERS) announce('nsgi-cluster', address.port);
  });
  for (let i = 0; i < FANOUT_WORKERS; i++) cluster.fork();
} else {
  const server = await serve(app, { host: '127.0.0.1', port: portFromArgv(), ...(backend.startsWith('redis') && { broker: backend }) });
  if (cluster.isPrimary) announce(`nsgi-${backend.startsWith('redis') ? 'redis' : backend}`, server.port);
}
