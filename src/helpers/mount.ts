/**
 * mount: one app made of several, each at its own path prefix, as werkzeug's
 * DispatcherMiddleware does for WSGI.
 *
 * ```ts
 * export const app = mount({ '/api': api, '/static': staticFiles('public'), '/': site });
 * ```
 *
 * A request goes to the app with the longest prefix that matches whole path segments (`/api`
 * matches `/api` and `/api/users`, never `/apix`). The prefix moves from the start of PATH_INFO to
 * the end of SCRIPT_NAME (SPEC §2.2), so the mounted app sees the paths it would see served
 * alone, and builds links to itself from SCRIPT_NAME. `'/'` catches what no other prefix does;
 * without it such requests get a 404.
 */
import type { App } from '../../protocol/nsgi.ts';
import { textResponse } from './send-file.ts';

/** notFound answers a path that no mounted app claims. */
const notFound: App = (environ, startResponse) => textResponse(environ, startResponse, '404 Not Found', `Not Found: ${environ.PATH_INFO}`);

/**
 * mount returns an app dispatching on PATH_INFO to the apps in `routes` by prefix. Each prefix
 * must start with `/` and, except `'/'` itself, not end with one; anything else is a TypeError.
 */
export function mount(routes: Readonly<Record<string, App>>): App {
  const table: Array<[string, App]> = [];
  let fallback = notFound;
  for (const [prefix, app] of Object.entries(routes)) {
    if (typeof app !== 'function') throw new TypeError(`mount(): the app at ${JSON.stringify(prefix)} is ${typeof app}, not a function`);
    if (prefix === '/') fallback = app;
    else if (!prefix.startsWith('/') || prefix.endsWith('/')) {
      // SCRIPT_NAME never ends with `/` (ENV-19), so neither may a prefix added to it.
      throw new TypeError(`mount(): a prefix must start with "/" and not end with one, got ${JSON.stringify(prefix)}`);
    } else table.push([prefix, app]);
  }
  table.sort(([a], [b]) => b.length - a.length);
  return (environ, startResponse) => {
    const path = environ.PATH_INFO;
    for (const [prefix, app] of table) {
      if (path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 0x2f /* / */)) {
        return app({ ...environ, SCRIPT_NAME: environ.SCRIPT_NAME + prefix, PATH_INFO: path.slice(prefix.length) }, startResponse);
      }
    }
    return fallback(environ, startResponse);
  };
}
