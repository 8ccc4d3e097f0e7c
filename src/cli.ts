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
import tls from 'node:tls';
import { pathToFileURL } from 'node:url';
import type { App, Body, Environ, StartResponse } from '../protocol/nsgi.ts';
// The server alone, not the public API in index.ts: the CLI must not load what it does not use
// (the WebSocket helper and ws, the adapters, the validator) into every server process.
import { SERVER_DEFAULTS, serve } from './server.ts';
import { askToBeReplaced, isWorker, prepareWorker, requestBudget, runWorkers } from './cluster.ts';
import { INTERFACES, INTERFACE_NAMES, adaptInterface, detectInterface, type AppInterface } from './adapters/interface.ts';
import { isTypeScriptModule, registerTypeScriptLoader } from './typescript-loader.ts';
import { ACCESS_LOG_FORMATS, type AccessLogFormat } from './access-log.ts';
import { loadTlsFiles, type TlsFiles, type TlsOptions } from './tls.ts';
import { ListenerError, clearStaleSocket, setSocketMode, systemdListenFd } from './listeners.ts';
import { DEFAULT_LOG_LEVEL, LOG_LEVELS, createLogger, isLogLevel, type LogLevel, type Logger } from './log.ts';

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
  { name: 'uds', value: 'PATH', help: 'listen on a unix socket at PATH instead (a stale socket there is replaced)' },
  { name: 'uds-mode', value: 'MODE', help: 'permissions of the --uds socket in octal, such as 660 (default: from the umask)' },
  { name: 'fd', value: 'N', help: 'accept on the inherited listening socket N instead (systemd socket activation sets it itself)' },
  { name: 'certfile', value: 'FILE', help: 'serve HTTPS with this PEM certificate chain and the key file below; both reread on SIGHUP' },
  { name: 'keyfile', value: 'FILE', help: 'the PEM private key for --certfile' },
  { name: 'ca-certs', value: 'FILE', help: 'PEM CA certificates: ask clients for a certificate verified against them (optional for the client)' },
  { name: 'no-http2', help: 'with --certfile: offer only HTTP/1.1 by ALPN (default: h2 too, one connection for many streams)' },
  { name: 'access-log', help: 'print one line per response to stdout: combined log format plus the time taken' },
  { name: 'access-log-format', value: 'FORMAT', help: `access log lines as ${ACCESS_LOG_FORMATS.join(' or ')} (JSON: one object per line); implies the access log` },
  { name: 'root-path', value: 'PATH', help: 'path the app is mounted under, given to it as SCRIPT_NAME (e.g. /api)' },
  { name: 'interface', value: 'KIND', help: 'what the export is: auto (default), nsgi, fetch (a Request -> Response handler, or an object with fetch), node (a (req, res) listener such as Express)' },
  { name: 'workers', short: 'w', value: 'N', help: 'run N worker processes sharing the port (default 1: no workers)' },
  { name: 'forwarded-allow-ips', value: 'LIST', help: 'comma-separated proxy IPs/subnets (or *) whose Forwarded/X-Forwarded-* are believed (default: none)' },
  { name: 'keep-alive-timeout', value: 'SECONDS', help: `close a keep-alive connection idle this long (default ${SERVER_DEFAULTS.keepAliveTimeout / 1000})` },
  { name: 'headers-timeout', value: 'SECONDS', help: `answer 408 and close if a request head takes longer (default ${SERVER_DEFAULTS.headersTimeout / 1000})` },
  { name: 'body-timeout', value: 'SECONDS', help: `fail a request body with 408 after this long without a byte (default ${SERVER_DEFAULTS.bodyTimeout / 1000})` },
  { name: 'send-timeout', value: 'SECONDS', help: `drop a client that reads nothing of its response this long (default ${SERVER_DEFAULTS.sendTimeout / 1000})` },
  { name: 'graceful-timeout', value: 'SECONDS', help: `on SIGTERM/SIGINT, let in-flight responses finish this long (default ${SHUTDOWN_TIMEOUT_MS / 1000})` },
  { name: 'max-connections', value: 'N', help: `answer 503 to connections beyond N open at once (default ${SERVER_DEFAULTS.maxConnections})` },
  { name: 'max-body-size', value: 'BYTES', help: 'answer 413 to a request body larger than BYTES; K, M, G suffixes count in 1024s (default: no limit)' },
  { name: 'max-requests', value: 'N', help: 'with workers: replace a worker after it has served N requests (default: never)' },
  { name: 'max-requests-jitter', value: 'N', help: 'add a random 0..N to --max-requests per worker, so workers do not restart together' },
  { name: 'reload', help: 'development only: reload the app when a module under its directory (or the one given next) changes' },
  { name: 'reload-dir', value: 'DIR', help: 'with --reload: the directory to watch instead (default: the app module\'s)' },
  { name: 'log-level', value: 'LEVEL', help: `nsgi's own messages shown: ${LOG_LEVELS.join(', ')} (default ${DEFAULT_LOG_LEVEL})` },
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
  /** The unix socket to listen on instead of host and port, when given. */
  readonly uds?: string;
  /** The unix socket's permissions, when given. */
  readonly udsMode?: number;
  /** The inherited listening socket to accept on instead, when given. */
  readonly fd?: number;
  /** True when `--no-http2` turns HTTP/2 off on the TLS listener. */
  readonly noHttp2?: boolean;
  /** The TLS certificate chain file, when serving HTTPS. */
  readonly certfile?: string;
  /** The TLS private key file, when serving HTTPS. */
  readonly keyfile?: string;
  /** The CA certificates file client certificates are checked against, when given. */
  readonly caCerts?: string;
  /** Whether to print an access-log line per response. */
  readonly accessLog: boolean;
  /** The access log's format, when given. */
  readonly accessLogFormat?: AccessLogFormat;
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
  /** The body inactivity timeout in milliseconds, when given. */
  readonly bodyTimeout?: number;
  /** The send stall timeout in milliseconds, when given. */
  readonly sendTimeout?: number;
  /** The most connections open at once, when given. */
  readonly maxConnections?: number;
  /** How long a graceful shutdown waits for in-flight responses, in milliseconds. */
  readonly gracefulTimeout: number;
  /** How many requests a worker serves before it is replaced, when given. */
  readonly maxRequests?: number;
  /** The most extra requests added at random to `maxRequests`, when given. */
  readonly maxRequestsJitter?: number;
  /** Whether to reload the app on file changes (development), when given. */
  readonly reload?: boolean;
  /** The directory --reload watches, when given. */
  readonly reloadDir?: string;
  /** Which of nsgi's own messages are shown, when given. */
  readonly logLevel?: LogLevel;
}

/** CliCommand is what a command line asks for: help, the version, or serving an app. */
export type CliCommand = { readonly command: 'help' } | { readonly command: 'version' } | ServeCommand;

/** USAGE is the synopsis line, shared by the help text and the missing-argument error. */
const USAGE = 'nsgi [options] path/to/module.ts[:export]';

/**
 * parseCliArgs turns the arguments after `nsgi` into a {@link CliCommand}, or throws a
 * {@link CliError} naming the bad argument. `--help` and `--version` win over everything else, so
 * they work even on a command line that is otherwise wrong. Options take their value as the next
 * argument or after `=`; `--` ends the options. An option the command line leaves out is read from
 * `env`: `NSGI_PORT` for `--port` (see {@link environmentName}), then `PORT`, `HOST` and
 * `WEB_CONCURRENCY`; `NSGI_APP` names the app. The command line always wins.
 */
export function parseCliArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): CliCommand {
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

  const sources = new Map<string, string>();
  for (const option of OPTIONS) {
    if (values.has(option.name) || option.name === 'help' || option.name === 'version') continue;
    const found = fromEnvironment(option, env);
    if (found === undefined) continue;
    sources.set(option.name, `${found.variable} (environment)`);
    if (option.value !== undefined) values.set(option.name, found.value);
    else if (parseFlag(found.variable, found.value)) values.set(option.name, '');
  }
  if (positionals.length === 0 && env.NSGI_APP !== undefined && env.NSGI_APP !== '') positionals.push(env.NSGI_APP);

  if (positionals.length === 0) throw new CliError(`missing the app to serve; usage: ${USAGE}`);
  if (positionals.length > 1) {
    throw new CliError(`expected one app to serve, got ${positionals.length}: ${positionals.join(' ')}`);
  }

  // Each value is checked under the name it was given as: `--port` or `NSGI_PORT (environment)`.
  const label = (name: string): string => sources.get(name) ?? `--${name}`;
  const host = values.get('host') ?? DEFAULT_HOST;
  if (host === '') throw new CliError(`${label('host')} needs a non-empty value`);
  const port = values.has('port') ? parsePort(label('port'), values.get('port') as string) : DEFAULT_PORT;
  const keepAlive = values.get('keep-alive-timeout');
  const headers = values.get('headers-timeout');
  const maxBody = values.get('max-body-size');
  const bodyTimeout = values.get('body-timeout');
  const sendTimeout = values.get('send-timeout');
  const maxConnections = values.get('max-connections');
  const graceful = values.get('graceful-timeout');
  const iface = values.get('interface') ?? 'auto';
  if (!(INTERFACES as readonly string[]).includes(iface)) {
    throw new CliError(`${label('interface')} must be one of ${INTERFACES.join(', ')}, got ${JSON.stringify(iface)}`);
  }
  const maxRequests = values.get('max-requests');
  const jitter = values.get('max-requests-jitter');
  const workers = values.has('workers') ? parseCount(label('workers'), values.get('workers') as string) : 1;
  const logLevel = values.get('log-level');
  if (logLevel !== undefined && !isLogLevel(logLevel)) {
    throw new CliError(`${label('log-level')} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const forwarded = (values.get('forwarded-allow-ips') ?? '').split(',').map((a) => a.trim()).filter((a) => a !== '');
  for (const entry of forwarded) {
    if (entry !== '*' && !/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(entry)) {
      throw new CliError(`${label('forwarded-allow-ips')}: ${JSON.stringify(entry)} is not an IP address, a subnet or *`);
    }
  }
  const uds = values.get('uds');
  const udsMode = values.get('uds-mode');
  const fd = values.get('fd');
  if (uds === '') throw new CliError(`${label('uds')} needs a non-empty path`);
  if (uds !== undefined && fd !== undefined) throw new CliError(`${label('uds')} and ${label('fd')} each name the one socket to listen on; give one`);
  if (udsMode !== undefined && uds === undefined) throw new CliError(`${label('uds-mode')} needs --uds`);
  if (udsMode !== undefined && !/^0?[0-7]{3}$/.test(udsMode)) {
    throw new CliError(`${label('uds-mode')} must be an octal mode such as 660, got ${JSON.stringify(udsMode)}`);
  }
  const certfile = values.get('certfile');
  const keyfile = values.get('keyfile');
  const caCerts = values.get('ca-certs');
  if ((certfile === undefined) !== (keyfile === undefined)) {
    throw new CliError(certfile === undefined ? `${label('keyfile')} needs --certfile` : `${label('certfile')} needs --keyfile`);
  }
  if (values.has('no-http2') && certfile === undefined) throw new CliError(`${label('no-http2')} needs --certfile and --keyfile: HTTP/2 is only offered over TLS`);
  if (caCerts !== undefined && certfile === undefined) throw new CliError(`${label('ca-certs')} needs --certfile and --keyfile`);
  const accessLogFormat = values.get('access-log-format');
  if (accessLogFormat !== undefined && !(ACCESS_LOG_FORMATS as readonly string[]).includes(accessLogFormat)) {
    throw new CliError(`${label('access-log-format')} must be one of ${ACCESS_LOG_FORMATS.join(', ')}, got ${JSON.stringify(accessLogFormat)}`);
  }
  const reloadDir = values.get('reload-dir');
  if (reloadDir !== undefined && !values.has('reload')) throw new CliError(`${label('reload-dir')} needs --reload`);
  if (jitter !== undefined && maxRequests === undefined) {
    throw new CliError(`${label('max-requests-jitter')} needs --max-requests`);
  }
  return {
    command: 'serve',
    target: positionals[0] as string,
    host,
    port,
    accessLog: values.has('access-log') || accessLogFormat !== undefined,
    ...(accessLogFormat !== undefined && { accessLogFormat: accessLogFormat as AccessLogFormat }),
    rootPath: parseRootPath(label('root-path'), values.get('root-path') ?? ''),
    ...(keepAlive !== undefined && { keepAliveTimeout: parseSeconds(label('keep-alive-timeout'), keepAlive) }),
    ...(headers !== undefined && { headersTimeout: parseSeconds(label('headers-timeout'), headers) }),
    ...(maxBody !== undefined && { maxBodySize: parseByteCount(label('max-body-size'), maxBody) }),
    ...(bodyTimeout !== undefined && { bodyTimeout: parseSeconds(label('body-timeout'), bodyTimeout) }),
    ...(sendTimeout !== undefined && { sendTimeout: parseSeconds(label('send-timeout'), sendTimeout) }),
    ...(maxConnections !== undefined && { maxConnections: parseCount(label('max-connections'), maxConnections) }),
    ...(uds !== undefined && { uds }),
    ...(udsMode !== undefined && { udsMode: parseInt(udsMode, 8) }),
    ...(fd !== undefined && { fd: parseWhole(label('fd'), fd) }),
    ...(certfile !== undefined && { certfile }),
    ...(keyfile !== undefined && { keyfile }),
    ...(caCerts !== undefined && { caCerts }),
    ...(values.has('no-http2') && { noHttp2: true }),
    ...(maxRequests !== undefined && { maxRequests: parseCount(label('max-requests'), maxRequests) }),
    ...(jitter !== undefined && { maxRequestsJitter: parseWhole(label('max-requests-jitter'), jitter) }),
    ...(iface !== 'auto' && { interface: iface as AppInterface }),
    workers,
    forwardedAllowIps: forwarded,
    gracefulTimeout: graceful === undefined ? SHUTDOWN_TIMEOUT_MS : parseSeconds(label('graceful-timeout'), graceful),
    ...(logLevel !== undefined && { logLevel }),
    ...(values.has('reload') && { reload: true }),
    ...(reloadDir !== undefined && { reloadDir }),
  };
}

/**
 * ENVIRONMENT_ALIASES are the plain variables read after `NSGI_*`: `PORT` and `HOST` as Heroku,
 * Cloud Run and most platforms set them, and `WEB_CONCURRENCY` for the worker count as gunicorn
 * reads it.
 */
const ENVIRONMENT_ALIASES: Readonly<Record<string, string>> = { port: 'PORT', host: 'HOST', workers: 'WEB_CONCURRENCY' };

/** environmentName is the variable an option is read from: `NSGI_MAX_BODY_SIZE` for `--max-body-size`. */
export function environmentName(option: string): string {
  return `NSGI_${option.toUpperCase().replace(/-/g, '_')}`;
}

/** fromEnvironment finds an option's value in the environment: `NSGI_*` first, then its alias. */
function fromEnvironment(option: OptionSpec, env: Readonly<Record<string, string | undefined>>): { variable: string; value: string } | undefined {
  for (const variable of [environmentName(option.name), ENVIRONMENT_ALIASES[option.name]]) {
    if (variable === undefined) continue;
    const value = env[variable];
    if (value !== undefined && value !== '') return { variable, value };
  }
  return undefined;
}

/** parseFlag reads a flag set in the environment: 1/true/yes/on or 0/false/no/off. */
function parseFlag(variable: string, text: string): boolean {
  const lower = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  throw new CliError(`${variable} (environment) must be 1, true, yes, on, 0, false, no or off, got ${JSON.stringify(text)}`);
}

/** findOption looks an option up by how it was written: `--name` or `-x`. */
function findOption(written: string): OptionSpec | undefined {
  if (written.startsWith('--')) return OPTIONS.find((o) => o.name === written.slice(2));
  return written.length === 2 ? OPTIONS.find((o) => o.short === written.slice(1)) : undefined;
}

/** parsePort accepts a decimal integer from 0 to 65535. */
function parsePort(label: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${label} must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  const port = Number(text);
  if (port > 65535) throw new CliError(`${label} must be from 0 to 65535, got ${text}`);
  return port;
}

/** parseSeconds accepts a non-negative decimal number of seconds and returns milliseconds. */
function parseSeconds(label: string, text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) {
    throw new CliError(`${label} must be a number of seconds such as 5 or 0.5, got ${JSON.stringify(text)}`);
  }
  const ms = Math.round(Number(text) * 1000);
  if (!Number.isSafeInteger(ms)) throw new CliError(`${label} is too large: ${text}`);
  return ms;
}

/**
 * SIZE_UNITS are the suffixes a byte count may carry, in powers of 1024 as nginx's
 * `client_max_body_size` counts them: `10M` is 10 MiB, `1G` is 1 GiB.
 */
const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** parseByteCount accepts a whole number of bytes, optionally with a K, M or G suffix. */
export function parseByteCount(label: string, text: string): number {
  const m = /^(\d+)([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (m === null) {
    throw new CliError(`${label} must be a whole number of bytes, optionally with K, M or G (such as 10M), got ${JSON.stringify(text)}`);
  }
  const bytes = Number(m[1]) * (SIZE_UNITS[m[2]!.toLowerCase()] as number);
  if (!Number.isSafeInteger(bytes)) throw new CliError(`${label} is too large: ${text}`);
  return bytes;
}

/** parseCount accepts a whole number of at least 1. */
function parseCount(label: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new CliError(`${label} must be a whole number of at least 1, got ${JSON.stringify(text)}`);
  return parseWhole(label, text);
}

/** parseWhole accepts a whole number, zero included. */
function parseWhole(label: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${label} must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new CliError(`${label} is too large: ${text}`);
  return n;
}

/**
 * parseRootPath checks a mount path and drops its trailing slashes, because SCRIPT_NAME never
 * ends with `/` (SPEC §2.2): `/api/` becomes `/api`, `/` becomes `''`.
 */
function parseRootPath(label: string, text: string): string {
  if (text === '') return '';
  if (!text.startsWith('/')) throw new CliError(`${label} must start with /, got ${JSON.stringify(text)}`);
  if (/[?#\s]/.test(text)) throw new CliError(`${label} must be a plain path, got ${JSON.stringify(text)}`);
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
    'Every option can also be set in the environment as NSGI_ and its name in capitals',
    '(NSGI_PORT, NSGI_MAX_BODY_SIZE, NSGI_ACCESS_LOG=1; NSGI_APP for the app), then as PORT, HOST',
    'and WEB_CONCURRENCY; the command line wins.',
    '',
    'SIGINT or SIGTERM stops accepting, closes idle connections, fires nsgi.signal so that',
    'event streams and long polls end, lets in-flight responses finish for up to the',
    'graceful timeout, and exits 0. With --workers: SIGHUP replaces the workers one at a time',
    '(each new one imports the app afresh and listens before the old one drains), SIGTTIN adds',
    'a worker, SIGTTOU removes one, and a worker that crashes is replaced. Without workers,',
    'SIGHUP is logged and ignored. Bad arguments exit 2; a port that cannot be bound exits 1.',
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
  const options: ServeOptions =
    command.fd !== undefined ? { fd: command.fd }
    : command.uds !== undefined ? { path: command.uds }
    : { host: command.host, port: command.port };
  if (command.accessLog) options.accessLog = (line) => stdout.write(line.endsWith('\n') ? line : `${line}\n`);
  if (command.accessLogFormat !== undefined) options.accessLogFormat = command.accessLogFormat;
  if (command.rootPath !== '') options.scriptName = command.rootPath;
  if (command.keepAliveTimeout !== undefined) options.keepAliveTimeout = command.keepAliveTimeout;
  if (command.headersTimeout !== undefined) options.headersTimeout = command.headersTimeout;
  if (command.maxBodySize !== undefined) options.maxBodySize = command.maxBodySize;
  if (command.bodyTimeout !== undefined) options.bodyTimeout = command.bodyTimeout;
  if (command.sendTimeout !== undefined) options.sendTimeout = command.sendTimeout;
  if (command.maxConnections !== undefined) options.maxConnections = command.maxConnections;
  if (command.forwardedAllowIps.length > 0) options.forwardedAllowIps = command.forwardedAllowIps;
  if (command.workers > 1) options.multiprocess = true;
  if (command.noHttp2 === true) options.http2 = false;
  return options;
}

/**
 * describeListener names where the server listens: `unix:PATH` for a unix socket, else the URL of
 * the address (for an inherited socket, the address it turned out to have).
 */
function describeListener(command: ServeCommand, bound?: { host: string; port: number }): string {
  if (command.uds !== undefined) return `unix:${command.uds}`;
  const scheme = command.certfile === undefined ? 'http' : 'https';
  if (bound === undefined) return command.fd !== undefined ? `fd ${command.fd}` : formatUrl(command.host, command.port, scheme);
  // An inherited socket may be a unix one, whose address is its path.
  return bound.host.startsWith('/') ? `unix:${bound.host}` : formatUrl(bound.host, bound.port, scheme);
}

/** tlsFilesOf is the command's TLS files resolved against `cwd`, or undefined without TLS. */
function tlsFilesOf(command: ServeCommand, cwd: string): TlsFiles | undefined {
  if (command.certfile === undefined || command.keyfile === undefined) return undefined;
  return {
    certfile: path.resolve(cwd, command.certfile),
    keyfile: path.resolve(cwd, command.keyfile),
    ...(command.caCerts !== undefined && { caCerts: path.resolve(cwd, command.caCerts) }),
  };
}

/** loadTls reads the TLS files and checks they make a usable context, as a {@link CliError} if not. */
async function loadTls(files: TlsFiles): Promise<TlsOptions> {
  try {
    const options = await loadTlsFiles(files);
    tls.createSecureContext(options);
    return options;
  } catch (err) {
    throw new CliError(`TLS: ${describeError(err)}`);
  }
}

/** systemdFd reads systemd's socket activation variables, as a {@link CliError} when unusable. */
function systemdFd(env: NodeJS.ProcessEnv): number | undefined {
  try {
    return systemdListenFd(env, process.pid);
  } catch (err) {
    if (!(err instanceof ListenerError)) throw err;
    throw new CliError(err.message, EXIT_FAILURE);
  }
}

/** clearSocket clears a stale unix socket before listening, as a {@link CliError} when it cannot. */
async function clearSocket(path: string): Promise<void> {
  try {
    await clearStaleSocket(path);
  } catch (err) {
    const why = err instanceof ListenerError ? err.message : describeError(err);
    throw new CliError(`cannot listen on unix:${path}: ${why}`, EXIT_FAILURE);
  }
}

/** formatUrl renders the bound address as a URL, bracketing an IPv6 host. */
function formatUrl(host: string, port: number, scheme: string): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
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
  /** The environment options are read from when the command line leaves them out. */
  readonly env: Readonly<Record<string, string | undefined>>;
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
    const env = io.env ?? process.env;
    // A socket-activated service's socket wins over any address; its workers inherit the
    // descriptor and find it as NSGI_FD, since LISTEN_PID names this process only.
    const activated = isWorker() ? undefined : systemdFd(env);
    if (activated !== undefined) env.NSGI_FD = String(activated);
    const command = parseCliArgs(argv, env);
    if (command.command === 'help') {
      stdout.write(helpText());
      return 0;
    }
    if (command.command === 'version') {
      stdout.write(`nsgi ${version()}\n`);
      return 0;
    }
    const log = createLogger(stderr, command.logLevel);
    const target = parseAppTarget(command.target);
    if (activated !== undefined) log.info(`serving the socket systemd passed (fd ${activated})`);
    if (command.uds !== undefined && !isWorker()) await clearSocket(command.uds);
    if (supervises(command) && !isWorker()) {
      // The primary never imports the app (its side effects would run once more, in a process
      // that serves nothing); the first worker loads it and reports a bad one (src/cluster.ts).
      return await runWorkers({
        workers: command.workers,
        gracefulTimeout: command.gracefulTimeout,
        stdout,
        log,
        ...(io.signal !== undefined && { signal: io.signal }),
        ...(command.reload === true && { watch: [path.resolve(io.cwd ?? process.cwd(), command.reloadDir ?? path.dirname(target.file))] }),
        listeningLine: ({ address, port }) => `nsgi: listening on ${describeListener(command, { host: address ?? command.host, port })}\n`,
      });
    }
    return await serveApp(command, target, { stdout, log, cwd: io.cwd ?? process.cwd(), signal: io.signal });
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    stderr.write(`nsgi: ${err.message}\n`);
    return err.exitCode;
  }
}

/** supervises tells whether a command runs a primary with workers rather than serving itself. */
function supervises(command: ServeCommand): boolean {
  return command.workers > 1 || command.maxRequests !== undefined || command.reload === true;
}

/**
 * serveApp loads the app and serves it from this process (alone, or as a worker) until a signal,
 * the primary's loss or `signal` stops it.
 */
async function serveApp(
  command: ServeCommand,
  target: AppTarget,
  io: { stdout: TextSink; log: Logger; cwd: string; signal: AbortSignal | undefined },
): Promise<number> {
  const { stdout, log } = io;
  const worker = isWorker();
  let reload: (() => Promise<void>) | null = null;
  const others = handleOtherSignals(log, worker, () => reload);
  try {
    if (worker) prepareWorker();
    const loaded = await loadInterface(target, io.cwd, command.interface ?? 'auto');
    let app = loaded.app;
    const tlsFiles = tlsFilesOf(command, io.cwd);
    const tlsOptions = tlsFiles === undefined ? undefined : await loadTls(tlsFiles);
    if (worker && command.maxRequests !== undefined) {
      app = countRequests(app, requestBudget(command.maxRequests, command.maxRequestsJitter ?? 0), askToBeReplaced);
    }
    const stopped = waitForStop(io.signal);
    let server: Awaited<ReturnType<typeof serve>>;
    try {
      server = await serve(app, { ...serveOptions(command, stdout), ...(tlsOptions !== undefined && { tls: tlsOptions }) });
      if (command.uds !== undefined && command.udsMode !== undefined) await setSocketMode(command.uds, command.udsMode);
    } catch (err) {
      stopped.cancel();
      throw new CliError(`cannot listen on ${describeListener(command)}: ${describeListenError(err)}`, EXIT_FAILURE);
    }
    if (tlsFiles !== undefined) {
      const running = server;
      reload = async () => {
        running.reloadTls(await loadTls(tlsFiles));
        log.info('received SIGHUP, reloaded the TLS certificates');
      };
    }
    // In a worker the primary announces the address once for all of them.
    if (!worker) stdout.write(`nsgi: listening on ${describeListener(command, server)}\n`);
    // On stderr with the other diagnostics (stdout carries the listening line and the access log);
    // under workers once from the primary's point of view would need the app, so workers say it at debug.
    const chosen = `serving ${command.target} as ${INTERFACE_NAMES[loaded.kind]} (--interface ${loaded.kind})`;
    if (worker) log.debug(`worker ${process.pid}: ${chosen}`);
    else log.info(chosen);

    const reason = await stopped.promise;
    log.info(`${worker ? `worker ${process.pid}: ` : ''}${reason}, closing (in-flight responses get up to ${command.gracefulTimeout / 1000} s)`);
    try {
      await server.close({ timeout: command.gracefulTimeout });
    } catch (err) {
      throw new CliError(`error while closing: ${describeError(err)}`, EXIT_FAILURE);
    }
    return 0;
  } finally {
    others.remove();
  }
}

/**
 * handleOtherSignals keeps SIGHUP, SIGTTIN and SIGTTOU from ending (or, for the last two,
 * suspending) a process that has no workers to reload, add or remove: a systemd unit's
 * `ExecReload=kill -HUP $MAINPID` must never take the service down. Alone, the process rereads
 * its TLS certificates on SIGHUP (what `reloader` gives, once serving), else logs that it needs
 * `--workers` and keeps serving; a worker ignores them, since the primary acts on them.
 * A worker also ignores SIGINT and SIGTERM once they have started its shutdown: a terminal's
 * Ctrl-C reaches the workers as well as the primary, which then sends SIGTERM, and the second
 * signal must not kill a worker that is already draining (the primary's kill timer is the
 * backstop).
 */
function handleOtherSignals(log: Logger, worker: boolean, reloader: () => (() => Promise<void>) | null): { remove(): void } {
  const onSignal = (name: NodeJS.Signals): void => {
    if (worker) return log.debug(`worker ${process.pid}: ${name} is the primary's to act on; ignoring it`);
    const reload = reloader();
    if (name === 'SIGHUP' && reload !== null) {
      reload().catch((err: unknown) => log.error(`received SIGHUP, but the TLS certificates were not reloaded: ${describeError(err)}; the old ones stay`));
      return;
    }
    const what = name === 'SIGHUP' ? 'reload' : name === 'SIGTTIN' ? 'add' : 'remove';
    log.warning(`received ${name}, but without --workers there are no workers to ${what}; still serving`);
  };
  const signals: NodeJS.Signals[] = ['SIGHUP', 'SIGTTIN', 'SIGTTOU'];
  for (const name of signals) process.on(name, onSignal);
  if (worker) {
    process.on('SIGINT', ignoreSignal);
    process.on('SIGTERM', ignoreSignal);
  }
  return {
    remove() {
      for (const name of signals) process.off(name, onSignal);
      process.off('SIGINT', ignoreSignal);
      process.off('SIGTERM', ignoreSignal);
    },
  };
}

function ignoreSignal(): void {}

/** countRequests wraps `app` to call `onSpent` once, when the `budget`-th request arrives. */
function countRequests(app: App, budget: number, onSpent: () => void): App {
  let served = 0;
  return (environ, startResponse) => {
    if (++served === budget) onSpent();
    return app(environ, startResponse);
  };
}

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
