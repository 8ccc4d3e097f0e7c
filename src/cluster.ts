/**
 * Workers on node:cluster: `nsgi --workers N` runs N processes that share the listening socket.
 *
 * The primary process only supervises; it never imports the app. It forks one worker first, which loads
 * the app and listens, on every `--bind` address, so a bad app or address is reported once; then the
 * rest. It announces the addresses once, replaces a worker that dies (with a backoff, so a crash loop
 * does not spin), and passes SIGTERM/SIGINT on so every worker shuts down gracefully before it exits.
 *
 * Replacing a live worker is always done the same way, whether for SIGHUP (a reload: every worker, one
 * at a time, each new process importing the app afresh), for `--max-requests` (the worker asks by
 * message) or for TTOU/TTIN (remove or add one): the new worker listens before the old one is told to
 * drain, so the shared socket never lacks a worker to hand connections to. A new worker that exits
 * before listening (an app that no longer imports) ends the reload and the old workers keep serving.
 *
 * A worker that loses its primary (even to `kill -9`) stops accepting and drains within the
 * graceful timeout instead of exiting at once as node:cluster would ({@link prepareWorker}).
 *
 * The primary also keeps the stream log the workers share (the cluster broker,
 * `src/broker/cluster.ts`), so topics, SSE feeds and WebSocket rooms see one order across workers,
 * and a worker started after a crash or a reload finds the log as it was.
 *
 * For development, `--reload` watches directories with Node's own recursive `fs.watch` and
 * reloads on a change exactly as SIGHUP does.
 */
import cluster, { type Worker } from 'node:cluster';
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from './log.ts';
import { startBrokerRelay } from './broker/cluster.ts';
// The exit codes a worker uses for mistakes in the command line or the app module.
import { EXIT_FAILURE, EXIT_USAGE } from './cli/errors.ts';

/** isWorker tells whether this process is a worker forked by {@link runWorkers}. */
export function isWorker(): boolean {
  return cluster.isWorker;
}

/** WORKER_MESSAGES are the IPC messages a worker sends its primary, by name. */
export const WORKER_MESSAGES = Object.freeze({
  /** The worker served its `--max-requests` and asks to be replaced. */
  recycle: 'nsgi:worker:recycle',
});

/** WorkerOptions configures {@link runWorkers}. */
export interface WorkerOptions {
  /** How many workers to keep running. */
  workers: number;
  /** How long a graceful shutdown may take, in ms; the primary kills stragglers a little after. */
  gracefulTimeout: number;
  /** Where the listening line goes. */
  stdout: { write(text: string): unknown };
  /** Where supervision messages go. */
  log: Logger;
  /** Renders the line announcing the address, printed once when the first worker listens. */
  listeningLine(address: { address: string; port: number }): string;
  /** How many addresses each worker listens on (`--bind`): it is listening once on all; default 1. */
  listeners?: number;
  /** Stops the workers when aborted, as a signal does. */
  signal?: AbortSignal;
  /** Directories whose changes reload the workers, for development (`--reload`): a change is a SIGHUP, so an edit that breaks the app leaves the last good version serving. */
  watch?: readonly string[];
}

/** The first restart waits this long; each quick crash doubles it, up to MAX_BACKOFF_MS. */
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
/** A worker that lived this long was healthy: its death resets the backoff. */
const HEALTHY_UPTIME_MS = 10_000;
/** Extra time past the graceful timeout before the primary kills a worker that has not exited. */
const KILL_GRACE_MS = 2_000;
/** Changes this close together make one reload: an editor's save is several writes and renames. */
const WATCH_DEBOUNCE_MS = 100;
/** Paths under a watched directory whose changes never reload: dependencies, VCS data, dotfiles. */
const WATCH_IGNORED = /(^|[\/])(node_modules|\.[^\/]*)([\/]|$)/;
/**
 * The files whose changes reload: modules and JSON, as uvicorn watches only `*.py` by default. An
 * app that writes its own logs or database beside its code must not reload itself in a loop.
 */
const WATCH_EXTENSIONS = /\.(?:[cm]?[jt]s|[jt]sx|json)$/;

/** What the primary knows of one worker. */
interface WorkerState {
  readonly born: number;
  listening: boolean;
  /** How many of its addresses it listens on so far. */
  heard: number;
  /** Told to drain; its exit is expected and not replaced. */
  retiring: boolean;
  /** A successor is starting; the worker no longer counts towards the target. */
  replaced: boolean;
  /** Started as a successor: if it exits before listening, {@link Supervisor.replace} reports it. */
  readonly successor: boolean;
}

/**
 * runWorkers supervises the workers until SIGTERM, SIGINT or `signal`, then shuts them down and
 * resolves with the exit code: 0 after a clean shutdown; the first worker's own 2 or 1 when it
 * failed to start (bad app, port in use), since restarting cannot fix that. SIGHUP reloads every
 * worker, SIGTTIN adds one, SIGTTOU removes one.
 */
export function runWorkers(options: WorkerOptions): Promise<number> {
  return new Promise<number>((resolve) => new Supervisor(options, resolve).start());
}

/** Supervisor is the primary's bookkeeping: which workers run, and what each is doing. */
class Supervisor {
  private readonly workers = new Map<Worker, WorkerState>();
  private target: number;
  private announced = false;
  private stopping = false;
  private exitCode = 0;
  private backoff = MIN_BACKOFF_MS;
  private topUpTimer: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  private reloading = false;
  private reloadAgain = false;
  private readonly watchers: FSWatcher[] = [];
  private watchTimer: NodeJS.Timeout | null = null;
  private readonly log: Logger;
  private stopRelay: (() => void) | null = null;

  constructor(
    private readonly options: WorkerOptions,
    private readonly resolve: (code: number) => void,
  ) {
    this.target = options.workers;
    this.log = options.log;
  }

  start(): void {
    // Every worker accepts from the one listening socket itself, rather than the primary accepting
    // and handing each connection over (node:cluster's round-robin default): a connection handed
    // to a worker as it exits would be lost, and a reload retires workers all the time. Connections
    // wait in the kernel's queue for whichever worker accepts next.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    this.stopRelay = startBrokerRelay();
    cluster.on('listening', this.onListening);
    cluster.on('exit', this.onExit);
    cluster.on('message', this.onMessage);
    process.on('SIGINT', this.onStopSignal);
    process.on('SIGTERM', this.onStopSignal);
    process.on('SIGHUP', this.onReloadSignal);
    process.on('SIGTTIN', this.onTtin);
    process.on('SIGTTOU', this.onTtou);
    this.options.signal?.addEventListener('abort', this.onAbort, { once: true });
    for (const dir of this.options.watch ?? []) this.watchers.push(watch(dir, { recursive: true }, this.onChange));
    if (this.options.signal?.aborted) return this.stop();
    // One worker first: it checks the app, and only once it listens do the others start.
    this.fork();
  }

  // ---- events -------------------------------------------------------------------------------

  private readonly onListening = (worker: Worker, address: { address: string; port: number }): void => {
    const state = this.workers.get(worker);
    if (state === undefined || state.listening || ++state.heard < (this.options.listeners ?? 1)) return;
    state.listening = true;
    this.log.debug(`worker ${worker.process.pid} listening`);
    if (this.announced) return;
    this.announced = true;
    this.options.stdout.write(this.options.listeningLine(address));
    this.log.info(`${this.target} workers (primary ${process.pid})`);
    this.topUp();
  };

  private readonly onExit = (worker: Worker, code: number | null, signal: string | null): void => {
    const state = this.workers.get(worker);
    this.workers.delete(worker);
    if (state === undefined) return;
    if (this.stopping) {
      if (this.workers.size === 0) this.finish();
      return;
    }
    if (state.retiring) {
      this.log.debug(`worker ${worker.process.pid} stopped`);
      return;
    }
    if (!this.announced && (code === EXIT_USAGE || code === EXIT_FAILURE)) {
      // The worker already printed why; every other worker would fail the same way.
      this.exitCode = code;
      this.stop();
      return;
    }
    if (state.replaced) return; // its successor is already starting
    if (state.successor && !state.listening) return; // replace() reports it
    this.backoff = Date.now() - state.born >= HEALTHY_UPTIME_MS ? MIN_BACKOFF_MS : Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    const how = signal !== null ? `signal ${signal}` : `code ${code}`;
    this.log.warning(`worker ${worker.process.pid} died (${how}); starting a new one in ${this.backoff} ms`);
    this.scheduleTopUp(this.backoff);
  };

  private readonly onMessage = (worker: Worker, message: unknown): void => {
    if ((message as { type?: unknown } | null)?.type !== WORKER_MESSAGES.recycle) return;
    const state = this.workers.get(worker);
    if (state === undefined || state.retiring || state.replaced || this.stopping) return;
    this.log.info(`worker ${worker.process.pid} reached --max-requests; replacing it`);
    void this.replace(worker, 'recycling');
  };

  private readonly onStopSignal = (name: NodeJS.Signals): void => {
    this.log.info(`received ${name}, stopping ${this.workers.size} workers`);
    this.stop();
  };

  private readonly onAbort = (): void => this.stop();

  private readonly onReloadSignal = (): void => {
    if (this.stopping) return;
    this.log.info(`received SIGHUP, reloading ${this.staying().length} workers one at a time`);
    void this.reload();
  };

  private readonly onChange = (_event: string, file: string | null): void => {
    if (this.stopping || file === null || WATCH_IGNORED.test(file) || !WATCH_EXTENSIONS.test(file)) return;
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => {
      this.watchTimer = null;
      this.log.info(`${file} changed, reloading`);
      void this.reload();
    }, WATCH_DEBOUNCE_MS);
  };

  /** TTIN adds a worker, as gunicorn's does. */
  private readonly onTtin = (): void => {
    if (this.stopping) return;
    this.target++;
    this.log.info(`received SIGTTIN, now ${this.target} workers`);
    this.topUp();
  };

  /** TTOU removes a worker, the oldest, never the last one. */
  private readonly onTtou = (): void => {
    if (this.stopping) return;
    if (this.target <= 1) {
      this.log.warning('received SIGTTOU, but one worker is the fewest; keeping it');
      return;
    }
    this.target--;
    this.log.info(`received SIGTTOU, now ${this.target} workers`);
    const oldest = this.staying()[0];
    if (oldest !== undefined) this.retire(oldest);
  };

  // ---- actions ------------------------------------------------------------------------------

  private fork(successor = false): Worker {
    const worker = cluster.fork();
    this.workers.set(worker, { born: Date.now(), listening: false, heard: 0, retiring: false, replaced: false, successor });
    return worker;
  }

  /** staying lists the workers that count towards the target, oldest first. */
  private staying(): Worker[] {
    return [...this.workers].filter(([, s]) => !s.retiring && !s.replaced).map(([w]) => w);
  }

  /** topUp forks workers until as many stay as the target asks (once the first one listens). */
  private topUp(): void {
    if (this.stopping) return;
    const missing = this.announced ? this.target - this.staying().length : this.workers.size === 0 ? 1 : 0;
    for (let i = 0; i < missing; i++) this.fork();
  }

  private scheduleTopUp(ms: number): void {
    if (this.topUpTimer !== null) return;
    this.topUpTimer = setTimeout(() => {
      this.topUpTimer = null;
      this.topUp();
    }, ms);
    this.topUpTimer.unref();
  }

  /** retire tells a worker to drain and exit; it is killed if it outlives the graceful timeout. */
  private retire(worker: Worker): void {
    const state = this.workers.get(worker);
    if (state === undefined || state.retiring) return;
    state.retiring = true;
    worker.process.kill('SIGTERM');
    setTimeout(() => {
      if (!this.workers.has(worker)) return;
      this.log.warning(`worker ${worker.process.pid} did not stop in time; killing it`);
      worker.process.kill('SIGKILL');
    }, this.options.gracefulTimeout + KILL_GRACE_MS).unref();
  }

  /** replace starts a successor to `old` and, once it listens, retires `old`; resolves whether it did. A successor that exits first leaves `old` serving. */
  private async replace(old: Worker, why: string): Promise<boolean> {
    const state = this.workers.get(old);
    if (state === undefined) return true;
    state.replaced = true;
    const successor = this.fork(true);
    let heard = 0;
    const outcome = await new Promise<{ code: number | null; signal: string | null } | null>((settle) => {
      const onListening = (): void => {
        if (++heard < (this.options.listeners ?? 1)) return;
        successor.off('listening', onListening).off('exit', onExit);
        settle(null);
      };
      const onExit = (code: number | null, signal: string | null): void => {
        successor.off('listening', onListening);
        settle({ code, signal });
      };
      successor.on('listening', onListening);
      successor.once('exit', onExit);
    });
    if (outcome === null) {
      this.retire(old);
      return true;
    }
    const how = outcome.signal !== null ? `signal ${outcome.signal}` : `code ${outcome.code}`;
    // Stopping ends successors too; that is no failure to report.
    if (this.workers.has(old) && !this.stopping) {
      state.replaced = false;
      this.log.error(`${why} failed: the new worker ${successor.process.pid} exited (${how}) before listening; worker ${old.process.pid} keeps serving`);
    }
    return false;
  }

  /** reload replaces every worker, one at a time; a second SIGHUP meanwhile reloads once more after. */
  private async reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    let replaced = 0;
    const old = this.staying();
    for (const worker of old) {
      if (this.stopping) break;
      const state = this.workers.get(worker);
      if (state === undefined || state.retiring || state.replaced) continue;
      if (!(await this.replace(worker, 'reload'))) break;
      replaced++;
    }
    this.reloading = false;
    if (!this.stopping) this.log.info(`reload done: ${replaced} of ${old.length} workers replaced`);
    if (this.reloadAgain && !this.stopping) {
      this.reloadAgain = false;
      await this.reload();
    }
  }

  private stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.topUpTimer !== null) clearTimeout(this.topUpTimer);
    for (const worker of this.workers.keys()) worker.process.kill('SIGTERM');
    if (this.workers.size === 0) return this.finish();
    this.killTimer = setTimeout(() => {
      for (const worker of this.workers.keys()) {
        this.log.warning(`worker ${worker.process.pid} did not stop in time; killing it`);
        worker.process.kill('SIGKILL');
      }
    }, this.options.gracefulTimeout + KILL_GRACE_MS);
  }

  private finish(): void {
    if (this.killTimer !== null) clearTimeout(this.killTimer);
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    for (const watcher of this.watchers) watcher.close();
    this.stopRelay?.();
    cluster.off('listening', this.onListening);
    cluster.off('exit', this.onExit);
    cluster.off('message', this.onMessage);
    process.off('SIGINT', this.onStopSignal);
    process.off('SIGTERM', this.onStopSignal);
    process.off('SIGHUP', this.onReloadSignal);
    process.off('SIGTTIN', this.onTtin);
    process.off('SIGTTOU', this.onTtou);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.resolve(this.exitCode);
  }
}

/**
 * prepareWorker readies a worker process: node:cluster makes a worker whose primary vanished exit
 * at once, cutting every response in flight; marking the worker as one that expects the
 * disconnect lets it drain instead (the CLI stops its server on the process's `disconnect`).
 */
export function prepareWorker(): void {
  const worker = cluster.worker;
  if (worker !== undefined) worker.exitedAfterDisconnect = true;
}

/** askToBeReplaced tells the primary this worker has served its `--max-requests`. */
export function askToBeReplaced(): void {
  if (process.connected && process.send !== undefined) process.send({ type: WORKER_MESSAGES.recycle });
}

/**
 * requestBudget is how many requests a worker serves before asking to be replaced: `maxRequests`
 * plus a random share of `jitter`, so that workers started together do not all restart together.
 */
export function requestBudget(maxRequests: number, jitter: number): number {
  return maxRequests + Math.floor(Math.random() * (jitter + 1));
}
