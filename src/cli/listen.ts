/**
 * From a parsed command line to a listening socket: the options for `serve`, the TLS files read
 * and checked, the unix socket and systemd descriptor prepared, where the server listens said as
 * a URL, and why binding failed said in words a user can act on.
 */

import path from 'node:path';
import tls from 'node:tls';
import type { serve } from '../server.ts';
import { loadTlsFiles, type TlsFiles, type TlsOptions } from '../tls.ts';
import { ListenerError, clearStaleSocket, systemdListenFd } from '../listeners.ts';
import type { BoundAddress } from '../listen-all.ts';
import { CliError, EXIT_FAILURE, describeError, errorCode } from './errors.ts';
import type { ServeCommand } from './options.ts';
import type { TextSink } from './main.ts';

/** ServeOptions is the options argument of `serve`, named here for the CLI's own use. */
type ServeOptions = NonNullable<Parameters<typeof serve>[1]>;

/** describeListenError says why binding failed in words a user can act on. */
export function describeListenError(err: unknown): string {
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
export function serveOptions(command: ServeCommand, stdout: TextSink): ServeOptions {
  const options: ServeOptions =
    command.binds !== undefined ? { listen: command.binds }
    : command.fd !== undefined ? { fd: command.fd }
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
  if (command.minBodyRate !== undefined) options.minBodyRate = command.minBodyRate;
  if (command.maxConnections !== undefined) options.maxConnections = command.maxConnections;
  if (command.broker !== undefined) options.broker = command.broker;
  if (command.forwardedAllowIps.length > 0) options.forwardedAllowIps = command.forwardedAllowIps;
  if (command.forwardedHeaders !== undefined) options.forwardedHeaders = command.forwardedHeaders;
  if (command.workers > 1) options.multiprocess = true;
  if (command.noHttp2 === true) options.http2 = false;
  return options;
}

/**
 * describeListener names where the server listens: `unix:PATH` for a unix socket, else the URL of
 * the address (for an inherited socket, the address it turned out to have); every address, comma
 * separated, for several `--bind`.
 */
export function describeListener(command: ServeCommand, bound?: { host: string; port: number; addresses?: readonly BoundAddress[] }): string {
  const scheme = command.certfile === undefined ? 'http' : 'https';
  if (command.binds !== undefined) {
    if (bound?.addresses !== undefined) return bound.addresses.map((a) => describeBound(a, scheme)).join(', ');
    return command.binds.map((t) => ('path' in t ? `unix:${t.path}` : 'fd' in t ? `fd ${t.fd}` : formatUrl(t.host, t.port, scheme))).join(', ');
  }
  if (command.uds !== undefined) return `unix:${command.uds}`;
  if (bound === undefined) return command.fd !== undefined ? `fd ${command.fd}` : formatUrl(command.host, command.port, scheme);
  return describeBound(bound, scheme);
}

/** unixPaths are the unix sockets the command listens on: `--uds`, or each `--bind unix:PATH`. */
export function unixPaths(command: ServeCommand): string[] {
  if (command.binds === undefined) return command.uds === undefined ? [] : [command.uds];
  return command.binds.flatMap((t) => ('path' in t ? [t.path] : []));
}

/** describeBound names one bound address; an inherited socket may be a unix one, whose address is its path. */
function describeBound(bound: { host: string; port: number }, scheme: string): string {
  return bound.host.startsWith('/') ? `unix:${bound.host}` : formatUrl(bound.host, bound.port, scheme);
}

/** tlsFilesOf is the command's TLS files resolved against `cwd`, or undefined without TLS. */
export function tlsFilesOf(command: ServeCommand, cwd: string): TlsFiles | undefined {
  if (command.certfile === undefined || command.keyfile === undefined) return undefined;
  return {
    certfile: path.resolve(cwd, command.certfile),
    keyfile: path.resolve(cwd, command.keyfile),
    ...(command.caCerts !== undefined && { caCerts: path.resolve(cwd, command.caCerts) }),
  };
}

/** loadTls reads the TLS files and checks they make a usable context, as a {@link CliError} if not. */
export async function loadTls(files: TlsFiles): Promise<TlsOptions> {
  try {
    const options = await loadTlsFiles(files);
    tls.createSecureContext(options);
    return options;
  } catch (err) {
    throw new CliError(`TLS: ${describeError(err)}`);
  }
}

/** systemdFd reads systemd's socket activation variables, as a {@link CliError} when unusable. */
export function systemdFd(env: NodeJS.ProcessEnv): number | undefined {
  try {
    return systemdListenFd(env, process.pid);
  } catch (err) {
    if (!(err instanceof ListenerError)) throw err;
    throw new CliError(err.message, EXIT_FAILURE);
  }
}

/** clearSocket clears a stale unix socket before listening, as a {@link CliError} when it cannot. */
export async function clearSocket(path: string): Promise<void> {
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
