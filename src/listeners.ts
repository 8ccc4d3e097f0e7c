/**
 * Where the CLI listens besides a TCP host and port: a unix socket (`--uds`), with a stale socket
 * left by a killed server cleared and the permissions set; an inherited file descriptor (`--fd`);
 * and the sockets systemd passes to a socket-activated service (`LISTEN_FDS`, `LISTEN_PID`, as
 * sd_listen_fds(3) describes them).
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';

/** SD_LISTEN_FDS_START is the first descriptor systemd passes: 3, right after stdin/out/err. */
export const SD_LISTEN_FDS_START = 3;

/** ListenerError is a listener that cannot be used, with a message saying why. */
export class ListenerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenerError';
  }
}

/**
 * systemdListenFd is the socket systemd passed this process, or undefined when it passed none.
 * The variables are for this very process only (`LISTEN_PID`), so they are removed from `env`
 * once read, as sd_listen_fds(1) does; the caller hands the descriptor on to its workers itself.
 * nsgi serves one socket: more than one is refused rather than some silently left unused.
 */
export function systemdListenFd(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const fds = env.LISTEN_FDS;
  const forPid = env.LISTEN_PID;
  if (fds === undefined || forPid === undefined) return undefined;
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (forPid !== String(pid)) return undefined;
  const count = Number(fds);
  if (!Number.isInteger(count) || count < 1) return undefined;
  if (count > 1) throw new ListenerError(`systemd passed ${count} sockets (LISTEN_FDS=${fds}); nsgi serves one, so give the .socket unit one ListenStream`);
  return SD_LISTEN_FDS_START;
}

/** STALE_PROBE_MS bounds the connection attempt that tells a live socket from a stale one. */
const STALE_PROBE_MS = 1000;

/**
 * clearStaleSocket removes a unix socket left at `path` by a server that no longer runs (one that
 * refuses connections), so that listening there succeeds. A socket something still answers on is
 * in use and stays; a path that is not a socket is never removed.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return;
    throw err;
  }
  if (!info.isSocket()) throw new ListenerError(`${path} exists and is not a socket; not replacing it`);
  if (await answers(path)) throw new ListenerError(`${path} is in use by a running server`);
  await unlink(path);
}

/** answers tells whether something accepts connections on the unix socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(STALE_PROBE_MS, () => done(true));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** setSocketMode sets the unix socket's permissions once it exists (it is made under the umask). */
export async function setSocketMode(path: string, mode: number): Promise<void> {
  await chmod(path, mode);
}
