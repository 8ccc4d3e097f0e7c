/**
 * The `nsgi` command: `nsgi [options] path/to/module.ts[:export]`, in the manner of gunicorn and
 * uvicorn.
 *
 * Three steps, each a function of its own so each can be tested alone, data flowing one way:
 *
 *   argv --parseCliArgs--> CliCommand --loadApp--> App --main: serve--> running until a signal
 *
 * `parseCliArgs` touches nothing but its argument; `loadApp` imports the module and picks the app
 * out of it; `main` wires them to `serve` and to SIGINT/SIGTERM. Every failure the user can cause
 * is a {@link CliError}: `main` prints it as one line on stderr starting with `nsgi: ` and returns
 * its exit code (2 for bad input, 1 when the server cannot start), never a stack trace, because the
 * person reading it needs to know what to fix, not where in nsgi the check lives.
 *
 * TypeScript apps load without a build: `loadApp` registers a TypeScript loader
 * (src/typescript-loader.ts) before it imports a TypeScript or JSX module, and only then, so a
 * JavaScript app runs with Node's own loader alone.
 */

import { existsSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { App, Body, Environ, StartResponse } from '../protocol/nsgi.ts';
// The server alone, not the public API in index.ts: the CLI must not load what it does not use
// (the WebSocket helper and ws, the adapters, the validator) into every server process.
import { SERVER_DEFAULTS, serve } from './server.ts';
import { isWorker, runWorkers } from './cluster.ts';
import { INTERFACES, INTERFACE_NAMES, adaptInterface, detectInterface, type AppInterface } from './adapters/interface.ts';
import { FORWARDED_HEADERS, type ForwardedHeaders } from './forwarded.ts';
import { isTypeScriptModule, registerTypeScriptLoader } from './typescript-loader.ts';

/** ServeOptions is the options argument of `serve`, named here for the CLI's own use. */
type ServeOptions = NonNullable<Parameters<typeof serve>[1]>;

/** EXIT_USAGE is the exit code for bad input: arguments, module file, export (as getopt tools use). */
export const EXIT_USAGE = 2;

/** EXIT_FAILURE is the exit code when the server cannot start (the port is taken) or fails to stop. */
export const EXIT_FAILURE = 1;

/** DEFAULT_HOST is the interface bound without `--host`: loopback, so nothing is exposed by accident. */
export const DEFAULT_HOST = SERVER_DEFAULTS.host;

/** DEFAULT_PORT is the port bound without `--port`, the same as gunicorn's and uvicorn's. */
export const DEFAULT_PORT = SERVER_DEFAULTS.port;

/**
 * SHUTDOWN_TIMEOUT_MS is how long in-flight responses may take to finish after SIGINT or SIGTERM
 * before their connections are cut; shorter than the 30 s that systemd and Kubernetes allow
 * before they send SIGKILL.
 */
export const SHUTDOWN_TIMEOUT_MS = 10_000;

/** CliError is a failure the user caused or can fix; `main` prints its message after `nsgi: `. */
export class CliError extends Error {
  /** The process exit code: {@link EXIT_USAGE} or {@link EXIT_FAILURE}. */
  readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT_USAGE) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** OptionSpec describes one command-line option; the parser and the help text both read it. */
export interface OptionSpec {
  /** The long name without dashes: `port` for `--port`. */
  readonly name: string;
  /** The one-letter alias without its dash, if any. */
  readonly short?: string;
  /** The placeholder of the option's value in the help text; absent for a flag. */
  readonly value?: string;
  /** One line for the help text, default included. */
  readonly help: string;
}

/** OPTIONS lists every option `nsgi` accepts, in the order `--help` shows them. */
export const OPTIONS: readonly OptionSpec[] = [
  { name: 'host', value: 'HOST', help: `interface to bind (default ${DEFAULT_HOST}; 0.0.0.0 or :: for all)` },
  { name: 'port', value: 'PORT', help: `TCP port to bind (default ${DEFAULT_PORT}; 0 picks any free port)` },
  { name: 'access-log', help: 'print one line per response to stdout: combined log format plus the time taken' },
  { name: 'root-path', value: 'PATH', help: 'path the app is mounted under, given to it as SCRIPT_NAME (e.g. /api)' },
  { name: 'interface', value: 'KIND', help: 'what the export is: auto (default), nsgi, fetch (a Request -> Response handler, or an object with fetch), node (a (req, res) listener such as Express)' },
  { name: 'workers', short: 'w', value: 'N', help: 'run N worker processes sharing the port (default 1: no workers)' },
  { name: 'forwarded-allow-ips', value: 'LIST', help: 'comma-separated proxy IPs/subnets (or *) whose Forwarded/X-Forwarded-* are believed (default: none)' },
  { name: 'forwarded-headers', value: 'WHICH', help: 'fields a trusted proxy is read from: forwarded, x-forwarded, or auto (default: Forwarded when present)' },
  { name: 'keep-alive-timeout', value: 'SECONDS', help: `close a keep-alive connection idle this long (default ${SERVER_DEFAULTS.keepAliveTimeout / 1000})` },
  { name: 'headers-timeout', value: 'SECONDS', help: `answer 408 and close if a request head takes longer (default ${SERVER_DEFAULTS.headersTimeout / 1000})` },
  { name: 'body-timeout', value: 'SECONDS', help: `fail a request body with 408 after this long without a byte (default ${SERVER_DEFAULTS.bodyTimeout / 1000})` },
  { name: 'min-body-rate', value: 'BYTES', help: `fail a request body with 408 if it averages under BYTES per second after ${SERVER_DEFAULTS.minBodyRateGrace / 1000} s (default ${SERVER_DEFAULTS.minBodyRate}; 0: off)` },
  { name: 'send-timeout', value: 'SECONDS', help: `drop a client that reads nothing of its response this long (default ${SERVER_DEFAULTS.sendTimeout / 1000})` },
  { name: 'graceful-timeout', value: 'SECONDS', help: `on SIGTERM/SIGINT, let in-flight responses finish this long (default ${SHUTDOWN_TIMEOUT_MS / 1000})` },
  { name: 'max-connections', value: 'N', help: `answer 503 to connections beyond N open at once (default ${SERVER_DEFAULTS.maxConnections})` },
  { name: 'max-body-size', value: 'BYTES', help: 'answer 413 to a request body larger than BYTES (default: no limit)' },
  { name: 'help', short: 'h', help: 'show this help and exit' },
  { name: 'version', help: 'print the version and exit' },
];

/** ServeCommand is a parsed command line that asks to serve an app. */
export interface ServeCommand {
  readonly command: 'serve';
  /** The app argument as given: `path/to/module.ts` or `path/to/module.ts:export`. */
  readonly target: string;
  /** The interface to bind. */
  readonly host: string;
  /** The port to bind; 0 for any free one. */
  readonly port: number;
  /** Whether to print an access-log line per response. */
  readonly accessLog: boolean;
  /** The mount path without a trailing slash, `''` at the root. */
  readonly rootPath: string;
  /** The keep-alive idle timeout in milliseconds, when given. */
  readonly keepAliveTimeout?: number;
  /** The request-head timeout in milliseconds, when given. */
  readonly headersTimeout?: number;
  /** The largest request body in bytes, when given. */
  readonly maxBodySize?: number;
  /** The interface named by `--interface`; absent for `auto`, which detects it. */
  readonly interface?: AppInterface;
  /** How many worker processes; 1 serves from this process. */
  readonly workers: number;
  /** Proxy addresses whose forwarding fields are believed. */
  readonly forwardedAllowIps: readonly string[];
  /** Which forwarding fields a trusted proxy is read from, when given. */
  readonly forwardedHeaders?: ForwardedHeaders;
  /** The body inactivity timeout in milliseconds, when given. */
  readonly bodyTimeout?: number;
  /** The slowest average request body rate in bytes per second, when given. */
  readonly minBodyRate?: number;
  /** The send stall timeout in milliseconds, when given. */
  readonly sendTimeout?: number;
  /** The most connections open at once, when given. */
  readonly maxConnections?: number;
  /** How long a graceful shutdown waits for in-flight responses, in milliseconds. */
  readonly gracefulTimeout: number;
}

/** CliCommand is what a command line asks for: help, the version, or serving an app. */
export type CliCommand = { readonly command: 'help' } | { readonly command: 'version' } | ServeCommand;

/** USAGE is the synopsis line, shared by the help text and the missing-argument error. */
const USAGE = 'nsgi [options] path/to/module.ts[:export]';

/**
 * parseCliArgs turns the arguments after `nsgi` into a {@link CliCommand}, or throws a
 * {@link CliError} naming the bad argument. `--help` and `--version` win over everything else, so
 * they work even on a command line that is otherwise wrong. Options take their value as the next
 * argument or after `=`; `--` ends the options.
 */
export function parseCliArgs(argv: readonly string[]): CliCommand {
  const end = argv.indexOf('--');
  const flags = end === -1 ? argv : argv.slice(0, end);
  if (flags.includes('--help') || flags.includes('-h')) return { command: 'help' };
  if (flags.includes('--version')) return { command: 'version' };

  const values = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (i === end) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const written = eq === -1 ? arg : arg.slice(0, eq);
    const spec = findOption(written);
    if (spec === undefined) throw new CliError(`unknown option ${written} (see nsgi --help)`);
    if (spec.value === undefined) {
      if (eq !== -1) throw new CliError(`--${spec.name} takes no value, got ${JSON.stringify(arg.slice(eq + 1))}`);
      values.set(spec.name, '');
    } else if (eq !== -1) {
      values.set(spec.name, arg.slice(eq + 1));
    } else if (i + 1 < argv.length && i + 1 !== end) {
      values.set(spec.name, argv[++i] as string);
    } else {
      throw new CliError(`--${spec.name} needs a value (${spec.value})`);
    }
  }

  if (positionals.length === 0) throw new CliError(`missing the app to serve; usage: ${USAGE}`);
  if (positionals.length > 1) {
    throw new CliError(`expected one app to serve, got ${positionals.length}: ${positionals.join(' ')}`);
  }

  const host = values.get('host') ?? DEFAULT_HOST;
  if (host === '') throw new CliError('--host needs a non-empty value');
  const port = values.has('port') ? parsePort(values.get('port') as string) : DEFAULT_PORT;
  const keepAlive = values.get('keep-alive-timeout');
  const headers = values.get('headers-timeout');
  const maxBody = values.get('max-body-size');
  const bodyTimeout = values.get('body-timeout');
  const sendTimeout = values.get('send-timeout');
  const minBodyRate = values.get('min-body-rate');
  const maxConnections = values.get('max-connections');
  const graceful = values.get('graceful-timeout');
  const iface = values.get('interface') ?? 'auto';
  if (!(INTERFACES as readonly string[]).includes(iface)) {
    throw new CliError(`--interface must be one of ${INTERFACES.join(', ')}, got ${JSON.stringify(iface)}`);
  }
  const workers = values.has('workers') ? parseCount('workers', values.get('workers') as string) : 1;
  const forwarded = (values.get('forwarded-allow-ips') ?? '').split(',').map((a) => a.trim()).filter((a) => a !== '');
  for (const entry of forwarded) {
    if (entry !== '*' && !/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(entry)) {
      throw new CliError(`--forwarded-allow-ips: ${JSON.stringify(entry)} is not an IP address, a subnet or *`);
    }
  }
  const forwardedHeaders = values.get('forwarded-headers');
  if (forwardedHeaders !== undefined && !(FORWARDED_HEADERS as readonly string[]).includes(forwardedHeaders)) {
    throw new CliError(`--forwarded-headers: must be one of ${FORWARDED_HEADERS.join(', ')}, got ${JSON.stringify(forwardedHeaders)}`);
  }
  return {
    command: 'serve',
    target: positionals[0] as string,
    host,
    port,
    accessLog: values.has('access-log'),
    rootPath: parseRootPath(values.get('root-path') ?? ''),
    ...(keepAlive !== undefined && { keepAliveTimeout: parseSeconds('keep-alive-timeout', keepAlive) }),
    ...(headers !== undefined && { headersTimeout: parseSeconds('headers-timeout', headers) }),
    ...(maxBody !== undefined && { maxBodySize: parseByteCount('max-body-size', maxBody) }),
    ...(bodyTimeout !== undefined && { bodyTimeout: parseSeconds('body-timeout', bodyTimeout) }),
    ...(sendTimeout !== undefined && { sendTimeout: parseSeconds('send-timeout', sendTimeout) }),
    ...(minBodyRate !== undefined && { minBodyRate: parseByteCount('min-body-rate', minBodyRate) }),
    ...(maxConnections !== undefined && { maxConnections: parseCount('max-connections', maxConnections) }),
    ...(iface !== 'auto' && { interface: iface as AppInterface }),
    workers,
    forwardedAllowIps: forwarded,
    ...(forwardedHeaders !== undefined && { forwardedHeaders: forwardedHeaders as ForwardedHeaders }),
    gracefulTimeout: graceful === undefined ? SHUTDOWN_TIMEOUT_MS : parseSeconds('graceful-timeout', graceful),
  };
}

/** findOption looks an option up by how it was written: `--name` or `-x`. */
function findOption(written: string): OptionSpec | undefined {
  if (written.startsWith('--')) return OPTIONS.find((o) => o.name === written.slice(2));
  return written.length === 2 ? OPTIONS.find((o) => o.short === written.slice(1)) : undefined;
}

/** parsePort accepts a decimal integer from 0 to 65535. */
function parsePort(text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`--port must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  const port = Number(text);
  if (port > 65535) throw new CliError(`--port must be from 0 to 65535, got ${text}`);
  return port;
}

/** parseSeconds accepts a non-negative decimal number of seconds and returns milliseconds. */
function parseSeconds(name: string, text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) {
    throw new CliError(`--${name} must be a number of seconds such as 5 or 0.5, got ${JSON.stringify(text)}`);
  }
  const ms = Math.round(Number(text) * 1000);
  if (!Number.isSafeInteger(ms)) throw new CliError(`--${name} is too large: ${text}`);
  return ms;
}

/** parseByteCount accepts a non-negative decimal integer. */
function parseByteCount(name: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`--${name} must be a whole number of bytes, got ${JSON.stringify(text)}`);
  const bytes = Number(text);
  if (!Number.isSafeInteger(bytes)) throw new CliError(`--${name} is too large: ${text}`);
  return bytes;
}

/** parseCount accepts a whole number of at least 1. */
function parseCount(name: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new CliError(`--${name} must be a whole number of at least 1, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new CliError(`--${name} is too large: ${text}`);
  return n;
}

/**
 * parseRootPath checks a mount path and drops its trailing slashes, because SCRIPT_NAME never
 * ends with `/` (SPEC §2.2): `/api/` becomes `/api`, `/` becomes `''`.
 */
function parseRootPath(text: string): string {
  if (text === '') return '';
  if (!text.startsWith('/')) throw new CliError(`--root-path must start with /, got ${JSON.stringify(text)}`);
  if (/[?#\s]/.test(text)) throw new CliError(`--root-path must be a plain path, got ${JSON.stringify(text)}`);
  return text.replace(/\/+$/, '');
}

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
    '',
    'SIGINT or SIGTERM stops accepting, closes idle connections, fires nsgi.signal so that',
    'event streams and long polls end, lets in-flight responses finish for up to the',
    `graceful timeout, and exits 0. With --workers, the signal reaches every worker and a worker`,
    'that crashes is replaced. Bad arguments exit 2; a port that cannot be bound exits 1.',
    '',
  ].join('\n');
}

/**
 * version reads nsgi's version from its package.json, the nearest one above this file: one
 * directory up from the sources (`src/cli.ts`), two from the compiled package (`dist/src/cli.js`).
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

/** AppTarget is the app argument split into the module file and the export to use. */
export interface AppTarget {
  /** The module path as given, relative to the working directory or absolute. */
  readonly file: string;
  /** The export's name; `default` when the argument names none. */
  readonly exportName: string;
}

/**
 * parseAppTarget splits `path/to/module.ts:export` at its last colon. A colon followed by a path
 * separator belongs to the path (a Windows drive, `C:\app.ts`), so only a plain name after the
 * last colon is taken as the export.
 */
export function parseAppTarget(target: string): AppTarget {
  const colon = target.lastIndexOf(':');
  const after = target.slice(colon + 1);
  if (colon === -1 || after.includes('/') || after.includes('\\')) return { file: target, exportName: 'default' };
  const file = target.slice(0, colon);
  if (file === '') throw new CliError(`missing the module path before ":${after}"`);
  if (after === '') throw new CliError(`missing the export name after the colon in ${JSON.stringify(target)}`);
  if (!/^[A-Za-z_$][\w$]*$/.test(after)) {
    throw new CliError(`${JSON.stringify(after)} is not an export name (in ${JSON.stringify(target)})`);
  }
  return { file, exportName: after };
}

/** LoadedApp is the export the command line serves, as an nsgi app, and how it is called. */
export interface LoadedApp {
  readonly app: App;
  readonly kind: AppInterface;
}

/**
 * loadApp imports the module `target.file` (resolved against `cwd`) and returns the app exported
 * as `target.exportName`. A TypeScript module gets a TypeScript loader registered first; any
 * other module is imported by Node alone. It throws a {@link CliError} when the file is missing,
 * when no TypeScript loader is available for it, when importing it fails (with the error's message
 * on one line), when the export is missing (listing the exports there are), or when the export is
 * not an app.
 */
export async function loadApp(target: AppTarget, cwd: string = process.cwd()): Promise<App> {
  return (await loadInterface(target, cwd, 'nsgi')).app;
}

/**
 * loadInterface is {@link loadApp} for any interface: the export is called as `iface` says, or,
 * for `auto`, as {@link detectInterface} finds; an export no interface can call gets the same
 * error as an export that is not an app.
 */
export async function loadInterface(target: AppTarget, cwd: string, iface: 'auto' | AppInterface): Promise<LoadedApp> {
  const file = path.resolve(cwd, target.file);
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new CliError(`${target.file} is not a file`);
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (errorCode(err) === 'ENOENT') throw new CliError(`no such file: ${target.file}`);
    throw new CliError(`cannot read ${target.file}: ${describeError(err)}`);
  }

  if (isTypeScriptModule(file)) {
    try {
      await registerTypeScriptLoader();
    } catch (err) {
      throw new CliError(`cannot load ${target.file}: ${describeError(err)}`);
    }
  }
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    const where = appFrame(err);
    throw new CliError(`cannot load ${target.file}: ${describeError(err)}${where === undefined ? '' : ` (at ${where})`}`);
  }

  const name = target.exportName;
  if (!Object.prototype.hasOwnProperty.call(exports, name)) {
    const names = Object.keys(exports);
    const what = name === 'default' ? 'no default export' : `no export named ${JSON.stringify(name)}`;
    const has = names.length === 0 ? 'it exports nothing' : `its exports are: ${names.join(', ')}`;
    throw new CliError(`${target.file} has ${what}; ${has}`);
  }
  const label = name === 'default' ? `the default export of ${target.file}` : `export ${JSON.stringify(name)} of ${target.file}`;
  const value = exports[name];
  const kind = iface === 'auto' ? (detectInterface(value) ?? 'nsgi') : iface;
  if (kind === 'nsgi') return { app: toApp(value, label), kind };
  const app = await adaptInterface(value, kind);
  if (app === undefined) {
    const shape = kind === 'fetch' ? 'a function or an object with a fetch() method' : 'a (req, res) function or a Koa app';
    throw new CliError(`${label} is ${describeValue(value)}, not ${shape} (--interface ${kind})`);
  }
  return { app, kind };
}

/**
 * toApp returns `value` as an {@link App}: a function as it is, an object with a
 * `call(environ, startResponse)` method wrapped in a function that calls it (the method keeps its
 * `this`). Anything else throws a {@link CliError} saying what `label` is instead.
 */
export function toApp(value: unknown, label: string): App {
  if (typeof value === 'function') {
    if (/^class\b/.test(Function.prototype.toString.call(value))) {
      throw new CliError(`${label} is a class, not an app function; export an instance with a call() method`);
    }
    return value as App;
  }
  if (typeof value === 'object' && value !== null && typeof (value as { call?: unknown }).call === 'function') {
    const callable = value as { call(environ: Environ, startResponse: StartResponse): Body | Promise<Body> };
    return (environ, startResponse) => callable.call(environ, startResponse);
  }
  throw new CliError(`${label} is ${describeValue(value)}, not an app function`);
}

/** describeValue names what kind of value something is, for "X is a string, not an app function". */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Promise) return 'a promise (export the app itself, not a promise of it)';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'object': {
      const ctor = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
      const kind = typeof ctor === 'string' && ctor !== '' && ctor !== 'Object' ? `an instance of ${ctor}` : 'an object';
      return `${kind} without a call() method`;
    }
    case 'bigint':
      return 'a bigint';
    default:
      return `a ${typeof value}`;
  }
}

/** describeError renders a thrown value as one line: its name (unless plain `Error`) and message. */
function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) {
    text = err.name && err.name !== 'Error' && !err.message.startsWith(err.name) ? `${err.name}: ${err.message}` : err.message;
  } else {
    text = String(err);
  }
  const line = text.replace(/\s*\n\s*/g, ' ').trim();
  return line.length > 500 ? line.slice(0, 500) + '...' : line;
}

/**
 * appFrame is where in the app's own code an error was thrown (`lib.ts:3:15`, relative to the
 * working directory): the first frame of its stack outside node_modules and Node itself, or
 * undefined when there is none, as for a syntax error, whose message already says where.
 */
function appFrame(err: unknown): string | undefined {
  if (!(err instanceof Error) || typeof err.stack !== 'string') return undefined;
  for (const line of err.stack.split('\n').slice(1)) {
    const m = /(?:\(|at )(?:file:\/\/)?(\/[^()\s]+:\d+:\d+)\)?\s*$/.exec(line);
    if (m === null || m[1]!.includes('/node_modules/')) continue;
    const relative = path.relative(process.cwd(), m[1]!);
    return relative.startsWith('..') ? m[1] : relative;
  }
  return undefined;
}

/** errorCode reads a Node system error's `code`, such as `ENOENT`. */
function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** describeListenError says why binding failed in words a user can act on. */
function describeListenError(err: unknown): string {
  switch (errorCode(err)) {
    case 'EADDRINUSE':
      return 'the address is already in use (is another server running there?)';
    case 'EACCES':
      return 'permission denied (ports below 1024 need privileges)';
    case 'EADDRNOTAVAIL':
      return 'the address is not one of this machine\'s';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    default:
      return describeError(err);
  }
}

/** serveOptions turns a parsed command line into the options for `serve`. */
function serveOptions(command: ServeCommand, stdout: TextSink): ServeOptions {
  const options: ServeOptions = { host: command.host, port: command.port };
  if (command.accessLog) options.accessLog = (line) => stdout.write(line.endsWith('\n') ? line : `${line}\n`);
  if (command.rootPath !== '') options.scriptName = command.rootPath;
  if (command.keepAliveTimeout !== undefined) options.keepAliveTimeout = command.keepAliveTimeout;
  if (command.headersTimeout !== undefined) options.headersTimeout = command.headersTimeout;
  if (command.maxBodySize !== undefined) options.maxBodySize = command.maxBodySize;
  if (command.bodyTimeout !== undefined) options.bodyTimeout = command.bodyTimeout;
  if (command.sendTimeout !== undefined) options.sendTimeout = command.sendTimeout;
  if (command.minBodyRate !== undefined) options.minBodyRate = command.minBodyRate;
  if (command.maxConnections !== undefined) options.maxConnections = command.maxConnections;
  if (command.forwardedAllowIps.length > 0) options.forwardedAllowIps = command.forwardedAllowIps;
  if (command.forwardedHeaders !== undefined) options.forwardedHeaders = command.forwardedHeaders;
  if (command.workers > 1) options.multiprocess = true;
  return options;
}

/** formatUrl renders the bound address as a URL, bracketing an IPv6 host. */
function formatUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** TextSink is anywhere the CLI writes text: process.stdout, process.stderr, or a test's buffer. */
export interface TextSink {
  write(text: string): unknown;
}

/** CliIo is what `main` talks to; each part defaults to the real process's. */
export interface CliIo {
  /** Receives the listening line, help, version and access-log lines. */
  readonly stdout: TextSink;
  /** Receives the one-line errors and shutdown notices. */
  readonly stderr: TextSink;
  /** The directory the app argument is resolved against. */
  readonly cwd: string;
  /**
   * Stops the server when aborted, as SIGINT or SIGTERM does; lets a test run `main` in-process.
   * Signals are listened to either way.
   */
  readonly signal?: AbortSignal;
}

/**
 * main runs the `nsgi` command with `argv` (the arguments after `nsgi`) and resolves to the exit
 * code: 0 after `--help`, `--version`, or a clean shutdown on SIGINT/SIGTERM; 2 for bad input; 1
 * when the server cannot listen. Once listening it prints exactly one line to stdout,
 * `nsgi: listening on http://HOST:PORT`. Errors the user can fix are printed as one line on stderr;
 * anything else (a bug in nsgi) is rethrown.
 */
export async function main(argv: readonly string[], io: Partial<CliIo> = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  try {
    const command = parseCliArgs(argv);
    if (command.command === 'help') {
      stdout.write(helpText());
      return 0;
    }
    if (command.command === 'version') {
      stdout.write(`nsgi ${version()}\n`);
      return 0;
    }

    const target = parseAppTarget(command.target);
    const { app, kind } = await loadInterface(target, io.cwd ?? process.cwd(), command.interface ?? 'auto');
    // On stderr, with the other diagnostics: stdout carries the listening line and the access log.
    const chosen = `nsgi: serving ${command.target} as ${INTERFACE_NAMES[kind]} (--interface ${kind})\n`;
    if (command.workers > 1 && !isWorker()) {
      stderr.write(chosen);
      // The primary loaded the app only to report a bad one once rather than once per worker;
      // it supervises, and each worker loads the app again and serves (src/cluster.ts).
      return await runWorkers({
        workers: command.workers,
        gracefulTimeout: command.gracefulTimeout,
        stdout,
        stderr,
        ...(io.signal !== undefined && { signal: io.signal }),
        listeningLine: (port) => `nsgi: listening on ${formatUrl(command.host, port)}\n`,
      });
    }
    if (isWorker()) {
      // A terminal's Ctrl-C reaches the workers as well as the primary, which then sends SIGTERM:
      // the second signal must not kill a worker that is already draining. The primary's kill
      // timer is the backstop.
      process.on('SIGINT', ignoreSignal);
      process.on('SIGTERM', ignoreSignal);
    }
    const stopped = waitForStop(io.signal);
    let server: Awaited<ReturnType<typeof serve>>;
    try {
      server = await serve(app, serveOptions(command, stdout));
    } catch (err) {
      stopped.cancel();
      throw new CliError(`cannot listen on ${formatUrl(command.host, command.port)}: ${describeListenError(err)}`, EXIT_FAILURE);
    }
    // In a worker the primary announces the address once for all of them.
    if (!isWorker()) {
      stdout.write(`nsgi: listening on ${formatUrl(server.host, server.port)}\n`);
      stderr.write(chosen);
    }

    const reason = await stopped.promise;
    stderr.write(`nsgi: ${isWorker() ? `worker ${process.pid}: ` : ''}${reason}, closing (in-flight responses get up to ${command.gracefulTimeout / 1000} s)\n`);
    try {
      await server.close({ timeout: command.gracefulTimeout });
    } catch (err) {
      throw new CliError(`error while closing: ${describeError(err)}`, EXIT_FAILURE);
    }
    return 0;
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    stderr.write(`nsgi: ${err.message}\n`);
    return err.exitCode;
  }
}

function ignoreSignal(): void {}

/**
 * waitForStop resolves with the reason once SIGINT, SIGTERM or `signal` asks the server to stop.
 * Its handlers are removed as soon as one fires, so a second Ctrl-C during a slow shutdown falls
 * through to Node's default and ends the process at once.
 */
function waitForStop(signal: AbortSignal | undefined): { promise: Promise<string>; cancel(): void } {
  let cleanup = (): void => {};
  const promise = new Promise<string>((resolve) => {
    const onSignal = (name: NodeJS.Signals): void => {
      cleanup();
      resolve(`received ${name}`);
    };
    const onAbort = (): void => {
      cleanup();
      resolve('asked to stop');
    };
    const onDisconnect = (): void => {
      cleanup();
      resolve('lost the primary process');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (isWorker()) process.on('disconnect', onDisconnect);
    signal?.addEventListener('abort', onAbort, { once: true });
    cleanup = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('disconnect', onDisconnect);
      signal?.removeEventListener('abort', onAbort);
    };
    if (signal?.aborted) onAbort();
  });
  return { promise, cancel: () => cleanup() };
}
