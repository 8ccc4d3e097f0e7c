/**
 * errors: what an app's failure looks like to the client, before and after the head is sent.
 *
 * `/` starts a `200 OK`, then fails while building its body, before the first chunk. Nothing has
 * left the server yet, because the head goes out with the first chunk. So the app catches the
 * error and calls `startResponse` again with the error as `excInfo`: the new status and headers
 * replace the old ones, and the client gets a proper `500` HTML page. This is WSGI's exc_info path.
 *
 * `/late` fails after its first chunk. The head and that chunk are on the wire, so there is no
 * taking them back: `startResponse` with `excInfo` rethrows the error, and the server ends the
 * connection without the terminating chunk. The client sees a `200` whose body is cut short, and
 * knows it is truncated (curl: "transfer closed with outstanding read data remaining").
 *
 *   node bin/nsgi.js examples/errors.ts
 *   curl -i http://127.0.0.1:8000/
 *   curl -i http://127.0.0.1:8000/late
 */

import type { App, Environ, StartResponse } from '../protocol/nsgi.ts';

/** app fails on purpose: before its first chunk on `/`, after it on `/late`. */
export const app: App = (environ, startResponse) => {
  if (environ.PATH_INFO === '/late') return failLate(startResponse);

  startResponse('200 OK', [['Content-Type', 'text/html; charset=utf-8']]);
  try {
    return [renderReport(environ)];
  } catch (err) {
    environ['nsgi.errors'].write(`errors example: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    const page = errorPage(err);
    startResponse(
      '500 Internal Server Error',
      [
        ['Content-Type', 'text/html; charset=utf-8'],
        ['Content-Length', String(Buffer.byteLength(page))],
        ['Cache-Control', 'no-store'],
      ],
      err,
    );
    return [page];
  }
};

/** renderReport stands for the real work of a page; here it always fails. */
function renderReport(environ: Environ): string {
  throw new Error(`the report for ${environ.PATH_INFO || '/'} could not be built: the database is unreachable`);
}

/** errorPage is the HTML the client gets instead of the report. */
function errorPage(err: unknown): string {
  // A real app would not show the message to the client; the example does, to make the path visible.
  const message = err instanceof Error ? err.message : String(err);
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8"><title>500 Internal Server Error</title></head>',
    '<body>',
    '<h1>500 Internal Server Error</h1>',
    `<p>Something went wrong: ${escapeHtml(message)}.</p>`,
    '<p>The app had already called <code>startResponse(\'200 OK\', ...)</code>; because no chunk had been sent,',
    'calling it again with the error as <code>excInfo</code> replaced the status.</p>',
    '</body></html>',
    '',
  ].join('\n');
}

/** failLate sends one chunk, then fails; the client gets a truncated body. */
function* failLate(startResponse: StartResponse): Generator<string> {
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  yield 'This line is sent. The next one fails, after the head has left.\n';
  try {
    throw new Error('the second line could not be built');
  } catch (err) {
    // The head is on the wire, so this rethrows err; the server then cuts the connection.
    startResponse('500 Internal Server Error', [['Content-Type', 'text/plain; charset=utf-8']], err);
  }
}

/** escapeHtml makes text safe to put between HTML tags. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export default app;
