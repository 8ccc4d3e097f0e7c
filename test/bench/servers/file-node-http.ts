/**
 * The baseline for files: node:http with `fs.createReadStream(path).pipe(res)`, as most node:http
 * file servers do underneath (Content-Length from a stat, default 64 KiB reads).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { announce, exitOnSignals, portFromArgv } from './ready.ts';

exitOnSignals();
const root = process.env['BENCH_FILE_ROOT'];
if (root === undefined) throw new Error('BENCH_FILE_ROOT must name the folder to serve');
const server = http.createServer((req, res) => {
  // The benchmark asks for one known name; nothing else is served.
  if (req.url !== '/data.bin') {
    res.writeHead(404).end();
    return;
  }
  const path = join(root, 'data.bin');
  stat(path).then(
    (info) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': info.size });
      createReadStream(path).pipe(res);
    },
    () => res.writeHead(500).end(),
  );
});
server.listen(portFromArgv(), '127.0.0.1', () => {
  const address = server.address();
  announce('node-http', typeof address === 'object' && address !== null ? address.port : 0);
});
