/**
 * files: a download server. A listing of a directory at `/`, and every file under `/files/`,
 * with what a download needs: Range requests so an interrupted download resumes (`curl -C -`,
 * a browser's resume button), ETag and Last-Modified so a repeat visit gets a 304, HEAD, media
 * types, precompressed `.br`/`.gz` siblings, and compression on the fly for the listing.
 *
 * The directory is `NSGI_FILES_ROOT`, or this examples folder when it is unset. Paths that
 * try to leave it (`..`, encoded slashes, symbolic links pointing out) are refused, never served.
 *
 *   NSGI_FILES_ROOT=$HOME/Downloads node bin/nsgi.js examples/files.ts
 *   curl -O http://127.0.0.1:8000/files/big.iso            (Ctrl-C it, then resume:)
 *   curl -C - -O http://127.0.0.1:8000/files/big.iso
 *   curl -r 0-99 http://127.0.0.1:8000/files/big.iso | xxd | head
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from '../protocol/nsgi.ts';
import { compress } from '../src/helpers/compress.ts';
import { mount } from '../src/helpers/mount.ts';
import { staticFiles } from '../src/helpers/static-files.ts';

/** DEFAULT_ROOT is the directory served when NSGI_FILES_ROOT is unset: the examples folder. */
export const DEFAULT_ROOT = fileURLToPath(new URL('.', import.meta.url));

/** escapeHtml makes text safe inside HTML elements and attribute values. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * listing answers `/` with an HTML list of the regular files in `root` (dot files left out),
 * each linked below `/files/` relative to the app's own mount point (SCRIPT_NAME).
 */
function listing(root: string): App {
  return async (environ, startResponse) => {
    if (environ.PATH_INFO !== '/' && environ.PATH_INFO !== '') {
      startResponse('404 Not Found', [['Content-Type', 'text/plain; charset=utf-8']]);
      return ['Not Found\n'];
    }
    const rows: string[] = [];
    for (const name of (await readdir(root)).sort()) {
      if (name.startsWith('.')) continue;
      const info = await stat(join(root, name)).catch(() => undefined);
      if (info?.isFile() !== true) continue;
      const href = `${environ.SCRIPT_NAME}/files/${encodeURIComponent(name)}`;
      rows.push(`<li><a href="${escapeHtml(href)}" download>${escapeHtml(name)}</a> (${info.size.toLocaleString('en')} bytes)</li>`);
    }
    const page = `<!doctype html>\n<meta charset="utf-8">\n<title>Files</title>\n<h1>Files</h1>\n<ul>\n${rows.join('\n')}\n</ul>\n`;
    startResponse('200 OK', [['Content-Type', 'text/html; charset=utf-8'], ['Cache-Control', 'no-cache']]);
    return [page];
  };
}

/** createFilesApp is the download server for the files in `root`. */
export function createFilesApp(root: string): App {
  return mount({
    '/files': staticFiles(root, { cacheControl: 'public, max-age=60' }),
    '/': compress(listing(root)),
  });
}

/** app serves NSGI_FILES_ROOT, or the examples folder. */
export const app: App = createFilesApp(process.env.NSGI_FILES_ROOT ?? DEFAULT_ROOT);

export default app;
