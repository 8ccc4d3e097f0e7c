/**
 * Workers on node:cluster: `nsgi --workers N` runs N processes that share the listening socket.
 * The primary process only supervises: it forks the workers (each re-runs the same command line,
 * loads the app and serves), announces the address once, replaces a worker that dies (with a
 * backoff, so a crash loop does not spin), and passes SIGTERM/SIGINT on so every worker shuts down
 * gracefully before the primary exits. It also keeps the stream log the workers share (the cluster
 * broker, `src/broker/cluster.ts`), so topics, SSE feeds and WebSocket rooms see one order across
 * workers; a worker restarted after a crash finds the log as it was.
 */
import cluster, { type Worker } from 'node:cluster';
import { startBrokerRelay } from './broker/cluster.ts';

/** isWorker tells whether this process is a worker forked by {@link runWorkers}. */
export function isWorker(): boolean {
  return cluster.isWorker;
}

/** WorkerOptions configures {@link runWorkers}. */
export interface WorkerOptions {
  /** How many workers to keep running. */
  workers: number;
  /** How long a graceful shutdown may take, in ms; the primary kills stragglers a little after. */
  gracefulTimeout: number;
  /** Where the listening line goes. */
  stdout: { write(text: string): unknown };
  /** Where supervision messages go. */
  stderr: { write(text: string): unknown };
  /** Renders the line announcing the port, printed once when the first worker listens. */
  listeningLine(port: number): string;
  /** Stops the workers when aborted, as a signal does. */
  signal?: AbortSignal;
}

/** The first restart waits this long; each quick crash doubles it, up to MAX_BACKOFF_MS. */
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
/** A worker that lived this long was healthy: its death resets the backoff. */
const HEALTHY_UPTIME_MS = 10_000;
/** Extra time past the graceful timeout before the primary kills a worker that has not exited. */
const KILL_GRACE_MS = 2_000;

/** Exit codes a worker uses for mistakes in the command line or the app module (src/cli.ts). */
const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

/**
 * runWorkers supervises the workers until SIGTERM, SIGINT or `signal`, then shuts them down and
 * resolves with the exit code: 0 after a clean shutdown; a worker's own 2 or 1 when it failed to
 * start (bad app, port in use) before any worker listened, since restarting cannot fix that.
 */
export function runWorkers(options: WorkerOptions): Promise<number> {
  return new Promise<number>((resolve) => {
    const started = new Map<Worker, number>();
    let listening = false;
    let stopping = false;
    let exitCode = 0;
    let backoff = MIN_BACKOFF_MS;
    let killTimer: NodeJS.Timeout | null = null;
    const stopRelay = startBrokerRelay();

    const fork = (): void => {
      if (stopping) return;
      started.set(cluster.fork(), Date.now());
    };

    const onListening = (_worker: Worker, address: { port: number }): void => {
      if (listening) return;
      listening = true;
      options.stdout.write(options.listeningLine(address.port));
      options.stderr.write(`nsgi: ${options.workers} workers (primary ${process.pid})\n`);
    };

    const onExit = (worker: Worker, code: number | null, signal: string | null): void => {
      const born = started.get(worker) ?? Date.now();
      started.delete(worker);
      if (stopping) {
        if (started.size === 0) finish();
        return;
      }
      if (!listening && (code === EXIT_USAGE || code === EXIT_FAILURE)) {
        // The worker already printed why; every other worker would fail the same way.
        exitCode = code;
        stop();
        return;
      }
      backoff = Date.now() - born >= HEALTHY_UPTIME_MS ? MIN_BACKOFF_MS : Math.min(backoff * 2, MAX_BACKOFF_MS);
      const how = signal !== null ? `signal ${signal}` : `code ${code}`;
      options.stderr.write(`nsgi: worker ${worker.process.pid} died (${how}); starting a new one in ${backoff} ms\n`);
      setTimeout(fork, backoff).unref();
    };

    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      for (const worker of started.keys()) worker.process.kill('SIGTERM');
      if (started.size === 0) return finish();
      killTimer = setTimeout(() => {
        for (const worker of started.keys()) {
          options.stderr.write(`nsgi: worker ${worker.process.pid} did not stop in time; killing it\n`);
          worker.process.kill('SIGKILL');
        }
      }, options.gracefulTimeout + KILL_GRACE_MS);
    };

    const onSignal = (name: NodeJS.Signals): void => {
      options.stderr.write(`nsgi: received ${name}, stopping ${started.size} workers\n`);
      stop();
    };
    const onAbort = (): void => stop();

    const finish = (): void => {
      if (killTimer !== null) clearTimeout(killTimer);
      stopRelay();
      cluster.off('listening', onListening);
      cluster.off('exit', onExit);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(exitCode);
    };

    cluster.on('listening', onListening);
    cluster.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    for (let i = 0; i < options.workers; i++) fork();
  });
}
