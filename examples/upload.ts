/**
 * upload: hashes the request body with SHA-256 as it streams in, and answers JSON
 * `{ "bytes": N, "sha256": "..." }`. The body is never held in memory: each chunk of
 * `environ['nsgi.input']` is hashed and dropped, and the server reads the socket only as fast as
 * the loop pulls. The first read is what answers `Expect: 100-continue`, so a client that waits
 * for it (curl does for large bodies) starts sending only once the app wants the body. GET shows
 * how to use it.
 *
 *   node bin/nsgi.js examples/upload.ts
 *   curl -T some-file http://127.0.0.1:8000/                     (PUT, sends Expect: 100-continue)
 *   curl --data-binary @some-file http://127.0.0.1:8000/         (POST)
 *   sha256sum some-file                                          (the same hash)
 */

import { createHash } from 'node:crypto';
import type { App, StartResponse } from '../protocol/nsgi.ts';

/** app hashes a POST or PUT body; GET and HEAD get a usage hint; other methods a 405. */
export const app: App = async (environ, startResponse) => {
  const method = environ.REQUEST_METHOD;
  if (method === 'GET' || method === 'HEAD') {
    const host = environ.HTTP_HOST ?? `${environ.SERVER_NAME}:${environ.SERVER_PORT}`;
    const url = `${environ['nsgi.url_scheme']}://${host}${environ.SCRIPT_NAME + environ.PATH_INFO || '/'}`;
    return text(startResponse, '200 OK', [
      'POST or PUT a body here and get back its size and SHA-256, hashed as it streams in:',
      `  curl -T some-file ${url}`,
      `  curl --data-binary @some-file ${url}`,
      '',
    ].join('\n'));
  }
  if (method !== 'POST' && method !== 'PUT') {
    return text(startResponse, '405 Method Not Allowed', `${method} is not allowed here; use POST or PUT\n`, [
      ['Allow', 'GET, HEAD, POST, PUT'],
    ]);
  }

  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of environ['nsgi.input']) {
    hash.update(chunk);
    bytes += chunk.byteLength;
  }
  const json = `${JSON.stringify({ bytes, sha256: hash.digest('hex') })}\n`;
  startResponse('200 OK', [
    ['Content-Type', 'application/json'],
    ['Content-Length', String(Buffer.byteLength(json))],
  ]);
  return [json];
};

/** text answers `status` with a plain-text body and a Content-Length. */
function text(startResponse: StartResponse, status: string, body: string, extra: Array<[string, string]> = []): string[] {
  startResponse(status, [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(body))],
    ...extra,
  ]);
  return [body];
}

export default app;
