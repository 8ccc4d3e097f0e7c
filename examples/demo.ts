/**
 * demo: every example behind one server, the app `npm start` serves on port 8080.
 *
 * `/` is a plain HTML page (no framework, no build) linking each example. Each example is mounted
 * under a prefix by `mount`, a dispatcher of a dozen lines: it moves the prefix from PATH_INFO to
 * SCRIPT_NAME, as WSGI's `shift_path_info` does, so the mounted app sees the same paths as when
 * it is served alone, and can still build links to itself from SCRIPT_NAME. Anything else is a 404.
 *
 *   npm start                      (or: node bin/nsgi.js examples/demo.ts --port 8080)
 *   open http://127.0.0.1:8080/
 *   curl http://127.0.0.1:8080/hello/user/1
 */

import type { App } from '../protocol/nsgi.ts';
import { app as clock } from './clock.ts';
import { app as errors } from './errors.ts';
import { app as hello } from './hello.ts';
import { app as stream } from './stream.ts';
import { app as upload } from './upload.ts';

/**
 * mount returns an app that hands each request to the app in `routes` whose prefix matches its
 * path (a whole segment: `/hello` matches `/hello` and `/hello/x`, not `/hellox`), after moving
 * the prefix from PATH_INFO to the end of SCRIPT_NAME. Requests no prefix matches go to `fallback`.
 */
function mount(routes: Record<string, App>, fallback: App): App {
  const table = Object.entries(routes).sort(([a], [b]) => b.length - a.length);
  return (environ, startResponse) => {
    const path = environ.PATH_INFO;
    for (const [prefix, app] of table) {
      if (path === prefix || path.startsWith(`${prefix}/`)) {
        environ.SCRIPT_NAME += prefix;
        environ.PATH_INFO = path.slice(prefix.length);
        return app(environ, startResponse);
      }
    }
    return fallback(environ, startResponse);
  };
}

/** home serves the index page at `/` and a 404 for every other unmounted path. */
const home: App = (environ, startResponse) => {
  const found = environ.PATH_INFO === '/' || environ.PATH_INFO === '';
  const page = found ? indexPage(environ.SCRIPT_NAME) : `Not Found: ${environ.PATH_INFO}\n`;
  startResponse(found ? '200 OK' : '404 Not Found', [
    ['Content-Type', found ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(page))],
  ]);
  return [page];
};

/** indexPage links each example under `base`, the demo's own mount point. */
function indexPage(base: string): string {
  const at = escapeHtml(base);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nsgi examples</title>
<style>body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
code { background: #f2f2f2; padding: 0 .2em; } li { margin: .5em 0; }</style>
</head>
<body>
<h1>nsgi examples</h1>
<p>Each example is its own app in <code>examples/</code>, mounted here under a prefix.</p>
<ul>
<li><a href="${at}/hello/user/1">/hello/user/1</a>: the seed article's app, <code>Request GET /user/1 has been processed</code>.</li>
<li><a href="${at}/stream?mb=16">/stream?mb=16</a>: 16 MiB from a generator, pulled as fast as you read.</li>
<li><a href="${at}/clock?n=10">/clock?n=10</a>: one line a second; the head is sent before the first tick.</li>
<li><a href="${at}/upload">/upload</a>: POST a body, get its SHA-256, hashed as it streams in.
  <input type="file" id="file"> <button id="send" type="button">Upload</button> <output id="result"></output></li>
<li><a href="${at}/errors">/errors</a>: a failure turned into a 500 page through <code>excInfo</code>;
  <a href="${at}/errors/late">/errors/late</a>: a failure after the first chunk, so the body is cut short.</li>
</ul>
<script>
document.getElementById('send').addEventListener('click', async () => {
  const file = document.getElementById('file').files[0];
  if (!file) return;
  const res = await fetch(${JSON.stringify(`${base}/upload`).replace(/</g, '\\u003c')}, { method: 'POST', body: file });
  document.getElementById('result').textContent = await res.text();
});
</script>
</body>
</html>
`;
}

/** escapeHtml makes text safe inside an HTML attribute or between tags. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** app is the demo: the examples mounted under their prefixes, the index at `/`. */
export const app: App = mount({ '/hello': hello, '/stream': stream, '/clock': clock, '/upload': upload, '/errors': errors }, home);

export default app;
