/**
 * The signals a serving process answers: SIGINT and SIGTERM (and the primary's loss, for a worker)
 * stop it gracefully; SIGHUP, SIGTTIN and SIGTTOU, which mean something only to a primary with
 * workers, never end it.
 */

import { isWorker } from '../cluster.ts';
import type { Logger } from '../log.ts';
import { describeError } from './errors.ts';

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
export function handleOtherSignals(log: Logger, worker: boolean, reloader: () => (() => Promise<void>) | null): { remove(): void } {
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

/**
 * waitForStop resolves with the reason once SIGINT, SIGTERM or `signal` asks the server to stop.
 * Its handlers are removed as soon as one fires, so a second Ctrl-C during a slow shutdown falls
 * through to Node's default and ends the process at once.
 */
export function waitForStop(signal: AbortSignal | undefined): { promise: Promise<string>; cancel(): void } {
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
