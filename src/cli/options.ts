/**
 * The command line: the option table ({@link OPTIONS}, which the parser and `--help` both read)
 * and {@link parseCliArgs}, which turns argv and the environment into a {@link CliCommand} and
 * touches nothing else. Each value is checked by a parser in ./values.ts; an option left off the
 * command line is looked up as ./environment.ts says.
 */

import { SERVER_DEFAULTS } from '../server.ts';
import { INTERFACES, type AppInterface } from '../adapters/interface.ts';
import { FORWARDED_HEADERS, type ForwardedHeaders } from '../forwarded.ts';
import { ACCESS_LOG_FORMATS, type AccessLogFormat } from '../access-log.ts';
import { DEFAULT_LOG_LEVEL, LOG_LEVELS, isLogLevel, type LogLevel } from '../log.ts';
import { CliError } from './errors.ts';
import { fromEnvironment, parseFlag } from './environment.ts';
import { ADDRESS_OPTIONS, bindTargets } from './bind.ts';
import type { ListenTarget } from '../listen-all.ts';
import { parseBroker, parseByteCount, parseCount, parsePort, parseRootPath, parseSeconds, parseWhole } from './values.ts';

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
  { name: 'bind', short: 'b', value: 'ADDRESS', help: 'listen on ADDRESS: HOST:PORT, [::1]:PORT, unix:PATH or fd://N; give it once per address (NSGI_BIND: comma- or space-separated), in place of the host, port, uds and fd options' },
  { name: 'host', value: 'HOST', help: `interface to bind (default ${DEFAULT_HOST}; 0.0.0.0 or :: for all)` },
  { name: 'port', value: 'PORT', help: `TCP port to bind (default ${DEFAULT_PORT}; 0 picks any free port)` },
  { name: 'uds', value: 'PATH', help: 'listen on a unix socket at PATH instead (a stale socket there is replaced)' },
  { name: 'uds-mode', value: 'MODE', help: 'permissions of the --uds socket in octal, such as 660 (default: from the umask)' },
  { name: 'fd', value: 'N', help: 'accept on the inherited listening socket N instead (systemd socket activation sets it itself)' },
  { name: 'certfile', value: 'FILE', help: 'serve HTTPS with this PEM certificate chain and the key file below; both reread on SIGHUP' },
  { name: 'keyfile', value: 'FILE', help: 'the PEM private key for --certfile' },
  { name: 'ca-certs', value: 'FILE', help: 'PEM CA certificates: ask clients for a certificate verified against them (optional for the client)' },
  { name: 'no-http2', help: 'with --certfile: offer only HTTP/1.1 by ALPN (default: h2 too, one connection for many streams, under the same timeouts and proxy trust)' },
  { name: 'access-log', help: 'print one line per response to stdout: combined log format plus the time taken' },
  { name: 'access-log-format', value: 'FORMAT', help: `access log lines as ${ACCESS_LOG_FORMATS.join(' or ')} (JSON: one object per line); implies the access log` },
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
  { name: 'max-body-size', value: 'BYTES', help: 'answer 413 to a request body larger than BYTES; K, M, G suffixes count in 1024s (default: no limit)' },
  { name: 'broker', value: 'URL', help: 'stream broker: memory, cluster or redis://host:port/db (default: cluster with --workers, else memory)' },
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
  /** Every address `--bind` (or `NSGI_BIND`) names, in place of host, port, uds and fd, when given. */
  readonly binds?: readonly ListenTarget[];
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
  /** The stream broker, when given: `memory`, `cluster` or a `redis://` URL. */
  readonly broker?: string;
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
export const USAGE = 'nsgi [options] path/to/module.ts[:export]';

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
  const binds: string[] = [];
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
    } else if (eq !== -1 || (i + 1 < argv.length && i + 1 !== end)) {
      const value = eq !== -1 ? arg.slice(eq + 1) : (argv[++i] as string);
      // --bind is given once per address; every other option's last value wins.
      if (spec.name === 'bind') binds.push(value);
      else values.set(spec.name, value);
    } else {
      throw new CliError(`--${spec.name} needs a value (${spec.value})`);
    }
  }

  const sources = new Map<string, string>();
  for (const option of OPTIONS) {
    if (values.has(option.name) || option.name === 'help' || option.name === 'version' || (option.name === 'bind' && binds.length > 0)) continue;
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
  const minBodyRate = values.get('min-body-rate');
  const maxConnections = values.get('max-connections');
  const graceful = values.get('graceful-timeout');
  const iface = values.get('interface') ?? 'auto';
  if (!(INTERFACES as readonly string[]).includes(iface)) {
    throw new CliError(`${label('interface')} must be one of ${INTERFACES.join(', ')}, got ${JSON.stringify(iface)}`);
  }
  const broker = values.get('broker');
  if (broker !== undefined) parseBroker(label('broker'), broker);
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
  const forwardedHeaders = values.get('forwarded-headers');
  if (forwardedHeaders !== undefined && !(FORWARDED_HEADERS as readonly string[]).includes(forwardedHeaders)) {
    throw new CliError(`${label('forwarded-headers')} must be one of ${FORWARDED_HEADERS.join(', ')}, got ${JSON.stringify(forwardedHeaders)}`);
  }
  const bound = bindTargets(
    binds,
    values.has('bind') ? { label: label('bind'), text: values.get('bind')! } : undefined,
    ADDRESS_OPTIONS.filter((name) => values.has(name) && !sources.has(name)),
    DEFAULT_PORT,
  );
  if (bound !== undefined) for (const name of ADDRESS_OPTIONS) values.delete(name);
  const uds = values.get('uds');
  const udsMode = values.get('uds-mode');
  const fd = values.get('fd');
  if (uds === '') throw new CliError(`${label('uds')} needs a non-empty path`);
  if (uds !== undefined && fd !== undefined) throw new CliError(`${label('uds')} and ${label('fd')} each name the one socket to listen on; give one`);
  if (udsMode !== undefined && uds === undefined && !(bound ?? []).some((t) => 'path' in t)) throw new CliError(`${label('uds-mode')} needs --uds or a --bind unix:PATH`);
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
    ...(minBodyRate !== undefined && { minBodyRate: parseByteCount(label('min-body-rate'), minBodyRate) }),
    ...(maxConnections !== undefined && { maxConnections: parseCount(label('max-connections'), maxConnections) }),
    ...(bound !== undefined && { binds: bound }),
    ...(uds !== undefined && { uds }),
    ...(udsMode !== undefined && { udsMode: parseInt(udsMode, 8) }),
    ...(fd !== undefined && { fd: parseWhole(label('fd'), fd) }),
    ...(certfile !== undefined && { certfile }),
    ...(keyfile !== undefined && { keyfile }),
    ...(caCerts !== undefined && { caCerts }),
    ...(values.has('no-http2') && { noHttp2: true }),
    ...(broker !== undefined && { broker }),
    ...(maxRequests !== undefined && { maxRequests: parseCount(label('max-requests'), maxRequests) }),
    ...(jitter !== undefined && { maxRequestsJitter: parseWhole(label('max-requests-jitter'), jitter) }),
    ...(iface !== 'auto' && { interface: iface as AppInterface }),
    workers,
    forwardedAllowIps: forwarded,
    ...(forwardedHeaders !== undefined && { forwardedHeaders: forwardedHeaders as ForwardedHeaders }),
    gracefulTimeout: graceful === undefined ? SHUTDOWN_TIMEOUT_MS : parseSeconds(label('graceful-timeout'), graceful),
    ...(logLevel !== undefined && { logLevel }),
    ...(values.has('reload') && { reload: true }),
    ...(reloadDir !== undefined && { reloadDir }),
  };
}

/** findOption looks an option up by how it was written: `--name` or `-x`. */
function findOption(written: string): OptionSpec | undefined {
  if (written.startsWith('--')) return OPTIONS.find((o) => o.name === written.slice(2));
  return written.length === 2 ? OPTIONS.find((o) => o.short === written.slice(1)) : undefined;
}
