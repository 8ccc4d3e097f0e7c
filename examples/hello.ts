/**
 * hello: the app the seed article ends with, in TypeScript. It reads the method and the path from
 * the environ, starts a `200 OK` response and returns its body as a one-element array: the
 * smallest complete nsgi app.
 *
 *   node bin/nsgi.js examples/hello.ts
 *   curl http://127.0.0.1:8000/user/1
 *   -> Request GET /user/1 has been processed
 */

import type { App } from '../protocol/nsgi.ts';

/** app answers `Request METHOD PATH has been processed` as plain text. */
export const app: App = (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  return [`Request ${environ.REQUEST_METHOD} ${environ.PATH_INFO} has been processed\n`];
};

export default app;
