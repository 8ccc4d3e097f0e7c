/**
 * staticFiles: an app that serves a directory tree, each file through {@link sendFile}.
 *
 * PATH_INFO is decoded and not normalized (SPEC §2.2, ENV-20), so mapping it onto the file
 * system is this file's job, and it refuses rather than repairs anything that could leave the
 * root (RFC 3986 §5.2.4's dot-segment removal is for clients; a server that "fixes" such paths
 * is the classic traversal hole):
 *
 * - 400 for a NUL, a backslash, a `.` or `..` segment (however it was encoded: PATH_INFO is
 *   already decoded), and an encoded slash or backslash (`%2F`, `%5C`) in the raw target, which
 *   would otherwise make one segment look like two;
 * - 404 for a segment starting with `.` (dot files such as `.env` or `.git` are not published),
 *   for anything missing, and for a path whose real location, symbolic links followed, is
 *   outside the root's: such a file is never opened.
 *
 * A directory is served through its index file when the path ends with `/`, and redirected
 * (301) to the path with `/` otherwise, so that relative links in the index resolve.
 */
import { realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { App, Body, Environ, StartResponse } from '../../protocol/nsgi.ts';
import { sendFile, textResponse, type SendFileOptions } from './send-file.ts';

/** StaticFilesOptions configures {@link staticFiles}; the {@link SendFileOptions} apply to every file. */
export interface StaticFilesOptions extends Omit<SendFileOptions, 'contentType'> {
  /** File names tried, in order, for a path ending with `/`; default `['index.html']`. */
  index?: readonly string[];
  /** The app that answers paths with no file; default a plain 404. */
  fallback?: App;
}

/** ENCODED_SEPARATOR finds `%2F` or `%5C`, in either case, in a raw request target. */
const ENCODED_SEPARATOR = /%(?:2f|5c)/i;

/**
 * staticFiles returns an app serving the files under `root` at their paths below the app's mount
 * point, with precompressed siblings on by default. See the file comment for what is refused.
 */
export function staticFiles(root: string, options: StaticFilesOptions = {}): App {
  const index = options.index ?? ['index.html'];
  const sendOptions: SendFileOptions = { ...options, precompressed: options.precompressed ?? true };
  // The root's real path, found once: symbolic links inside the tree are checked against it.
  let realRoot: Promise<string> | undefined;
  const notFound: App = options.fallback ?? ((environ, startResponse) => textResponse(environ, startResponse, '404 Not Found'));

  return async (environ, startResponse) => {
    const method = environ.REQUEST_METHOD;
    if (method !== 'GET' && method !== 'HEAD') {
      return textResponse(environ, startResponse, '405 Method Not Allowed', undefined, [['Allow', 'GET, HEAD']]);
    }
    const problem = unsafePath(environ);
    if (problem !== undefined) return textResponse(environ, startResponse, '400 Bad Request', `Bad Request: ${problem}`);
    const path = environ.PATH_INFO === '' ? '/' : environ.PATH_INFO;
    const segments = path.split('/').slice(1);
    if (segments.some((segment) => segment.startsWith('.'))) return notFound(environ, startResponse);

    realRoot ??= realpath(root);
    const base = await realRoot;
    const candidate = await inside(base, join(base, ...segments));
    if (candidate === undefined) return notFound(environ, startResponse);
    const found = await stat(candidate).catch(() => undefined);
    if (found === undefined) return notFound(environ, startResponse);
    if (found.isDirectory()) {
      if (!path.endsWith('/')) return redirectToSlash(environ, startResponse);
      for (const name of index) {
        const file = await inside(base, join(candidate, name));
        if (file !== undefined && (await stat(file).catch(() => undefined))?.isFile() === true) {
          return sendFile(environ, startResponse, file, sendOptions);
        }
      }
      return notFound(environ, startResponse);
    }
    // `file.txt/` names a directory that does not exist (RFC 3986 §3.3 keeps the slash).
    if (path.endsWith('/') || !found.isFile()) return notFound(environ, startResponse);
    return sendFile(environ, startResponse, candidate, sendOptions);
  };
}

/** unsafePath names what makes a request's path unfit to map onto files, or gives undefined. */
function unsafePath(environ: Environ): string | undefined {
  const path = environ.PATH_INFO;
  if (path.includes('\0')) return 'NUL in path';
  if (path.includes('\\')) return 'backslash in path';
  const raw = environ.REQUEST_URI.split('?', 1)[0]!;
  if (ENCODED_SEPARATOR.test(raw)) return 'encoded slash or backslash in path';
  if (path !== '' && !path.startsWith('/')) return 'path does not start with /';
  for (const segment of path.split('/')) if (segment === '.' || segment === '..') return 'dot segment in path';
  return undefined;
}

/**
 * inside resolves symbolic links in `path` and gives its real path if that lies under `base`
 * (itself real), else undefined; a path that does not exist also gives undefined.
 */
async function inside(base: string, path: string): Promise<string | undefined> {
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined) return undefined;
  return real === base || real.startsWith(base.endsWith(sep) ? base : base + sep) ? real : undefined;
}

/** redirectToSlash sends a directory's path without its final slash to the path with one. */
function redirectToSlash(environ: Environ, startResponse: StartResponse): Body {
  const query = environ.QUERY_STRING === '' ? '' : `?${environ.QUERY_STRING}`;
  // Re-encode the decoded path so that the Location is a valid URI reference (RFC 9110 §10.2.2).
  const location = encodeURI(`${environ.SCRIPT_NAME}${environ.PATH_INFO}/`) + query;
  return textResponse(environ, startResponse, '301 Moved Permanently', `Moved to ${location}`, [['Location', location]]);
}
