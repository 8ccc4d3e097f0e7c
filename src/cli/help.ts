/**
 * What `nsgi --help` and `nsgi --version` print: the help text built from the option table, and
 * the version read from the package.
 */

import { existsSync, readFileSync } from 'node:fs';
import { OPTIONS, USAGE } from './options.ts';

/** helpText is what `nsgi --help` prints: the usage line, then every option in {@link OPTIONS}. */
export function helpText(): string {
  const rows = OPTIONS.map((o) => {
    const names = (o.short !== undefined ? `-${o.short}, ` : '    ') + `--${o.name}` + (o.value ? ` ${o.value}` : '');
    return `  ${names.padEnd(34)} ${o.help}`;
  });
  return [
    `Usage: ${USAGE}`,
    '',
    'Serves an nsgi app over HTTP/1.1. The app is the module\'s default export, or the export',
    'named after the colon; a function, or an object with a call(environ, startResponse) method.',
    'By default an object with fetch() (Hono) is served as a fetch handler and an Express or',
    'Koa app as a node:http listener; the interface option below names the kind outright.',
    'TypeScript (.ts), .js and .mjs modules load without a build step.',
    '',
    'Options:',
    ...rows,
    '',
    'Examples:',
    '  nsgi examples/hello.ts',
    '  nsgi --port 8080 --access-log examples/demo.ts:app',
    '  nsgi -b 127.0.0.1:8000 -b [::1]:8000 -b unix:/run/app.sock --workers 4 app.ts',
    '',
    'Every option can also be set in the environment as NSGI_ and its name in capitals',
    '(NSGI_PORT, NSGI_MAX_BODY_SIZE, NSGI_ACCESS_LOG=1; NSGI_APP for the app), then as PORT, HOST',
    'and WEB_CONCURRENCY; the command line wins.',
    '',
    'SIGINT or SIGTERM stops accepting, closes idle connections, fires nsgi.signal so that',
    'event streams and long polls end, lets in-flight responses finish for up to the',
    'graceful timeout, and exits 0. With --workers: SIGHUP replaces the workers one at a time',
    '(each new one imports the app afresh and listens before the old one drains), SIGTTIN adds',
    'a worker, SIGTTOU removes one, and a worker that crashes is replaced. Without workers,',
    'SIGHUP is logged and ignored. Bad arguments exit 2; an address that cannot be bound exits 1,',
    'naming it, with none of the others left listening.',
    '',
  ].join('\n');
}

/**
 * version reads nsgi's version from its package.json, the nearest one above this file: two
 * directories up from the sources (`src/cli/help.ts`), three from the compiled package
 * (`dist/src/cli/help.js`).
 */
export function version(): string {
  let dir = new URL('.', import.meta.url);
  while (!existsSync(new URL('package.json', dir))) {
    const parent = new URL('..', dir);
    if (parent.href === dir.href) return 'unknown';
    dir = parent;
  }
  const pkg: unknown = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8'));
  const v = (pkg as { version?: unknown }).version;
  return typeof v === 'string' ? v : 'unknown';
}
