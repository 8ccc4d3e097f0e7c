/**
 * The `nsgi` command run end to end: {@link main} parses the command line, then either hands it to
 * the primary of a worker pool (src/cluster.ts) or loads the app and serves it from this process
 * until a signal stops it, and turns every {@link CliError} into one line on stderr and an exit
 * code.
 */

import path from 'node:path';
import type { App } from '../../protocol/nsgi.ts';
// The server alone, not the public API in index.ts: the CLI must not load what it does not use
// (the WebSocket helper and ws, the adapters, the validator) into every server process.
import { serve } from '../server.ts';
import { BrokerError } from '../broker/types.ts';
import { askToBeReplaced, isWorker, prepareWorker, requestBudget, runWorkers } from '../cluster.ts';
import { INTERFACE_NAMES } from '../adapters/interface.ts';
import { setSocketMode } from '../listeners.ts';
import { createLogger, type Logger } from '../log.ts';
import { CliError, EXIT_FAILURE, describeError } from './errors.ts';
import { parseCliArgs, type ServeCommand } from './options.ts';
import { helpText, version } from './help.ts';
import { loadInterface, parseAppTarget, type AppTarget } from './load.ts';
import { clearSocket, describeListenError, describeListener, loadTls, serveOptions, systemdFd, tlsFilesOf, unixPaths } from './listen.ts';
import { ListenFailure, describeTarget } from '../listen-all.ts';
import { handleOtherSignals, waitForStop } from './signals.ts';

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
    // Written to below (NSGI_FD), so typed as the process's environment it defaults to.
    const env: NodeJS.ProcessEnv = io.env ?? process.env;
    // A socket-activated service's socket wins over any address; its workers inherit the
    // descriptor and find it as NSGI_FD, since LISTEN_PID names this process only.
    const activated = isWorker() ? undefined : systemdFd(env);
    if (activated !== undefined) env.NSGI_FD = String(activated);
    let command = parseCliArgs(argv, env);
    // The socket systemd passed wins over --bind, as over every other address.
    if (activated !== undefined && command.command === 'serve' && command.binds !== undefined) {
      const { binds: _replaced, ...rest } = command;
      command = { ...rest, fd: activated };
    }
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
    if (!isWorker()) for (const socketPath of unixPaths(command)) await clearSocket(socketPath);
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
        listeners: command.binds?.length ?? 1,
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
      if (command.udsMode !== undefined) for (const socketPath of unixPaths(command)) await setSocketMode(socketPath, command.udsMode);
    } catch (err) {
      stopped.cancel();
      if (err instanceof BrokerError) throw new CliError(`cannot start the stream broker: ${err.message}`, EXIT_FAILURE);
      if (err instanceof ListenFailure) throw new CliError(`cannot listen on ${describeTarget(err.target)}: ${describeListenError(err.cause)}`, EXIT_FAILURE);
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

/** countRequests wraps `app` to call `onSpent` once, when the `budget`-th request arrives. */
function countRequests(app: App, budget: number, onSpent: () => void): App {
  let served = 0;
  return (environ, startResponse) => {
    if (++served === budget) onSpent();
    return app(environ, startResponse);
  };
}
