/**
 * Looking at processes from /proc, for the worker tests: which pids a primary has forked, and
 * whether a pid is still running; a free port for a process the test starts to listen on, and
 * whether something listens on a port yet.
 */
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

/** isAlive tells whether a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** childPids lists the live pids whose parent is `pid`. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}

/**
 * workerPids lists the live children of `primary` that run the `nsgi` command: its workers, and not
 * the esbuild service tsx may start beside them.
 */
export function workerPids(primary: number): number[] {
  return childPids(primary).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nsgi.js');
    } catch {
      return false;
    }
  });
}

/** freePort finds a loopback port nothing listens on right now, for a process told to listen there. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** accepts tells whether something accepts a connection on 127.0.0.1:`port`. */
export function accepts(port: number): Promise<boolean> {
  return connects({ port, host: '127.0.0.1' });
}

/** connects tells whether something accepts a connection at `target`: a TCP host and port, or a unix socket path. */
export function connects(target: { host: string; port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
