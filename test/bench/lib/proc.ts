/**
 * Processes: starting a server under test pinned to its core, waiting for its ready line,
 * stopping it, and reading its CPU time and memory from /proc.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** CLOCK_TICKS is the unit of utime/stime in /proc/PID/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** READY_TIMEOUT_MS bounds how long a server may take to print its ready line. */
const READY_TIMEOUT_MS = 20_000;
/** STOP_TIMEOUT_MS is how long a server gets to exit on SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 5_000;

/** Pinning says which cores the servers and the load generator run on, if any. */
export interface Pinning {
  server: string | null;
  client: string | null;
  note: string;
}

/** decidePinning pins servers to core 0 and the load generator to core 1 when it can. */
export function decidePinning(): Pinning {
  const cores = os.availableParallelism();
  const taskset = spawnSync('taskset', ['--version']).status === 0;
  if (cores >= 2 && taskset) return { server: '0', client: '1', note: `servers on core 0, load generator on core 1 (taskset)` };
  if (!taskset) return { server: null, client: null, note: `not pinned: taskset not found (apt-get install util-linux)` };
  return { server: null, client: null, note: `not pinned: only ${cores} core` };
}

/** pinSelf moves this process (every thread) to `cpu`, so in-process clients run beside wrk. */
export function pinSelf(cpu: string | null): void {
  if (cpu === null) return;
  spawnSync('taskset', ['-a', '-cp', cpu, String(process.pid)], { stdio: 'ignore' });
}

/** pinned prefixes a command with `taskset -c cpu` when pinning is on. */
export function pinned(cpu: string | null, command: string, args: string[]): [string, string[]] {
  return cpu === null ? [command, args] : ['taskset', ['-c', cpu, command, ...args]];
}

/** RunningServer is a server under test that printed its ready line. */
export interface RunningServer {
  name: string;
  pid: number;
  port: number;
  child: ChildProcess;
  /** stderr so far, to show when something fails. */
  stderr(): string;
  stop(): Promise<void>;
  /** kill ends the server at once (SIGKILL), when the suite itself is exiting. */
  kill(): void;
}

/** startServer runs `command args` and resolves once it prints `READY <name> pid=N port=N`. */
export function startServer(name: string, command: string, args: string[], cwd: string, fdLimit: number | null): Promise<RunningServer> {
  // A raised open-file limit is applied by a shell that then execs the server, so the pid stays.
  const child =
    fdLimit === null
      ? spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('sh', ['-c', `ulimit -n ${fdLimit} && exec "$@"`, 'sh', command, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    err = (err + s).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} printed no ready line within ${READY_TIMEOUT_MS} ms\n${err}`));
    }, READY_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready\n${err}`));
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      out += s;
      const m = /READY (\S+) pid=(\d+) port=(\d+)/.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.stdout!.removeAllListeners('data');
      child.stdout!.resume();
      const exited = new Promise<void>((done) => child.once('exit', () => done()));
      resolve({
        name,
        pid: Number(m[2]),
        port: Number(m[3]),
        child,
        stderr: () => err,
        kill: () => child.kill('SIGKILL'),
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(killer);
        },
      });
    });
  });
}

/**
 * treePids is `pid` and its descendants, from each process's `children` file in /proc: a server
 * added with `--server` may be a shell, a package manager or a cluster primary with workers, and
 * its figures are those of the whole tree. A process that just exited is left out.
 */
export function treePids(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    const p = all[i]!;
    let children = '';
    try {
      children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.split(' ')) if (c !== '' && c !== '\n') all.push(Number(c));
  }
  return all;
}

/** readOr is a /proc file's text, or '' when the process has gone. */
function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** cpuSeconds is the user plus system CPU time so far of a process and its descendants, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of treePids(pid)) {
    const stat = readOr(`/proc/${p}/stat`);
    if (stat === '') continue;
    // Fields after the command name (which may hold spaces), counted from field 3 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS;
}

/** rssBytes is the resident set size now of a process and its descendants, from VmRSS in /proc/PID/status. */
export function rssBytes(pid: number): number {
  let kib = 0;
  for (const p of treePids(pid)) {
    const m = /VmRSS:\s+(\d+) kB/.exec(readOr(`/proc/${p}/status`));
    if (m === null) {
      if (p === pid) throw new Error(`no VmRSS for pid ${pid}`);
      continue;
    }
    kib += Number(m[1]);
  }
  return kib * 1024;
}

/** openFileLimit is this process's [soft, hard] RLIMIT_NOFILE, from /proc/self/limits. */
export function openFileLimit(): [number, number] {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const m = /Max open files\s+(\S+)\s+(\S+)/.exec(limits);
  const parse = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? Infinity : Number(s));
  return [parse(m?.[1]), parse(m?.[2])];
}

/** sleep resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
