/**
 * Servers added to a run with `--server 'label=command'`: anyone's server, in any language, that
 * answers the suite's routes (BENCHMARKS.md, "Adding your own server"). The command runs under
 * `sh -c` with `PORT` in its environment (so `$PORT` in the command is the port to listen on, on
 * 127.0.0.1), pinned to the servers' core like the built-in ones, in a process group of its own so
 * that stopping it stops everything it started. It is ready once the port accepts a connection;
 * its CPU time and memory are those of its whole process tree.
 */
import { spawn } from 'node:child_process';
import { accepts, freePort } from '../../helpers/processes.ts';
import { pinned, sleep, type RunningServer } from './proc.ts';

/** EXTERNAL_READY_TIMEOUT_MS bounds how long an added server may take to accept a connection. */
const EXTERNAL_READY_TIMEOUT_MS = 30_000;
/** READY_POLL_MS is how often the port is tried while an added server starts. */
const READY_POLL_MS = 100;
/** STOP_TIMEOUT_MS is how long an added server's process group gets to exit on SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;

/** ExternalServer is one `--server` argument: the id the suite uses, the label it prints, the command. */
export interface ExternalServer {
  id: string;
  label: string;
  command: string;
}

/**
 * parseServerSpec reads `label=command`. The id (for `--servers` and the raw samples) is the label
 * in lower case with every run of other characters than letters and digits made one `-`.
 */
export function parseServerSpec(spec: string): ExternalServer {
  const eq = spec.indexOf('=');
  const label = eq < 0 ? '' : spec.slice(0, eq).trim();
  const command = eq < 0 ? '' : spec.slice(eq + 1).trim();
  if (label === '' || command === '') {
    throw new Error(`--server needs 'label=command', for example --server 'my-server=./my-server --port $PORT'; got ${JSON.stringify(spec)}`);
  }
  const id = label.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  if (id === '') throw new Error(`--server label ${JSON.stringify(label)} needs at least one letter or digit`);
  return { id, label, command };
}

/** startExternal runs an added server on a free port and resolves once the port accepts connections. */
export async function startExternal(server: ExternalServer, cpu: string | null, cwd: string): Promise<RunningServer> {
  const port = await freePort();
  const [command, args] = pinned(cpu, 'sh', ['-c', server.command]);
  const child = spawn(command, args, {
    cwd,
    detached: true,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    err = (err + s).slice(-4000);
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const group = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group has already gone.
    }
  };
  const deadline = Date.now() + EXTERNAL_READY_TIMEOUT_MS;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${server.label} exited (${child.exitCode ?? child.signalCode}) before it accepted a connection on port ${port}\n${err}`);
    }
    if (Date.now() > deadline) {
      group('SIGKILL');
      throw new Error(`${server.label} did not accept a connection on port ${port} within ${EXTERNAL_READY_TIMEOUT_MS} ms\n${err}`);
    }
    await sleep(READY_POLL_MS);
  }
  return {
    name: server.id,
    pid: child.pid!,
    port,
    child,
    stderr: () => err,
    kill: () => group('SIGKILL'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return group('SIGKILL');
      group('SIGTERM');
      const killer = setTimeout(() => group('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(killer);
      // What the shell started may outlive it: the group goes too.
      group('SIGKILL');
    },
  };
}
