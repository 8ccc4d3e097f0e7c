/**
 * The hand-written baseline of the fan-out scenario: node:http keeping every `GET /sse` response
 * in a set, and `POST /publish` writing its body as one event to each of them in a loop.
 */
import http from 'node:http';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

const clients = new Set<http.ServerResponse>();
const server = http.createServer((req, res) => {
  if (req.url === '/sse') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  let body = '';
  req.setEncoding('utf8').on('data', (text: string) => (body += text));
  req.on('end', () => {
    const event = `data: ${body}\n\n`;
    for (const client of clients) client.write(event);
    res.writeHead(204).end();
  });
});
server.keepAliveTimeout = 5000;
exitOnSignals();
server.listen(portFromArgv(), '127.0.0.1', () => announce('node-http-fanout', (server.address() as { port: number }).port));
