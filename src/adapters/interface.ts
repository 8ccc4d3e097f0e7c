/**
 * What kind of thing a module exports, for a command line that serves whatever it is given (as
 * uvicorn's `--interface` does): an nsgi app, a fetch handler, or a node:http listener, each
 * turned into an nsgi app by its adapter.
 */
import type { App } from '../../protocol/nsgi.ts';
import type { FetchHandler } from './fetch-to-nsgi.ts';
import type { NodeRequestListener } from './node-listener.ts';

/** AppInterface names the calling conventions the command line can serve. */
export type AppInterface = 'nsgi' | 'fetch' | 'node';

/** INTERFACES lists the values of `--interface`, `auto` first. */
export const INTERFACES = ['auto', 'nsgi', 'fetch', 'node'] as const;

/** INTERFACE_NAMES describes each interface in the line the command line prints at start. */
export const INTERFACE_NAMES: Readonly<Record<AppInterface, string>> = {
  nsgi: 'an nsgi app',
  fetch: 'a fetch handler (Request -> Response)',
  node: 'a node:http listener (req, res)',
};

/**
 * detectInterface guesses how `value` wants to be called, or gives undefined when it is none of
 * the three. A function is an nsgi app, unless it carries Express's or Connect's `handle` and
 * `use`; an object is an nsgi app when it has `call`, a fetch handler when it has `fetch` (Hono,
 * Elysia, and the `export default { fetch }` of Bun and Deno), and a Koa app when it has
 * `callback` and `use`. A bare `(req, res)` function cannot be told from an nsgi app by looking;
 * it needs `--interface node`.
 */
export function detectInterface(value: unknown): AppInterface | undefined {
  if (typeof value === 'function') {
    const fn = value as { handle?: unknown; use?: unknown };
    return typeof fn.handle === 'function' && typeof fn.use === 'function' ? 'node' : 'nsgi';
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const object = value as { call?: unknown; fetch?: unknown; callback?: unknown; use?: unknown };
  if (typeof object.call === 'function') return 'nsgi';
  if (typeof object.fetch === 'function') return 'fetch';
  if (typeof object.callback === 'function' && typeof object.use === 'function') return 'node';
  return undefined;
}

/**
 * adaptInterface makes an nsgi app of `value` called as `kind`, or gives undefined when `value`
 * has no shape that interface can call. An nsgi `value` is left to the caller, which owns the
 * rules (and the messages) for what an app may be. The adapter is imported only when it is
 * used, so a server process serving an nsgi app loads neither.
 */
export async function adaptInterface(value: unknown, kind: Exclude<AppInterface, 'nsgi'>): Promise<App | undefined> {
  if (kind === 'fetch') {
    const { fromFetch } = await import('./fetch-to-nsgi.ts');
    if (typeof value === 'function') return fromFetch(value as FetchHandler);
    const object = value as { fetch?: unknown } | null;
    if (typeof object === 'object' && object !== null && typeof object.fetch === 'function') {
      // Hono's fetch is an arrow function, but others read `this`.
      return fromFetch((object.fetch as FetchHandler).bind(object));
    }
    return undefined;
  }
  const { fromNodeListener } = await import('./node-listener.ts');
  if (typeof value === 'function') return fromNodeListener(value as NodeRequestListener);
  const koa = value as { callback?: unknown } | null;
  if (typeof koa === 'object' && koa !== null && typeof koa.callback === 'function') {
    return fromNodeListener((koa.callback as () => NodeRequestListener).call(koa));
  }
  return undefined;
}
