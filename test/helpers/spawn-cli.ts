/**
 * Runs the real `nsgi` command (`node bin/nsgi.js ...`) as a child process for the CLI tests.
 *
 * Every wait has a deadline, so a CLI that hangs fails its test instead of stalling the run, and
 * every process started through {@link startCli} is remembered until {@link killAllClis} ends it,
 * which the tests call in `afterEach` so nothing outlives a failing test.
 */

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** REPO_ROOT is the project's root directory, the working directory the CLI is run in. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** BIN_PATH is the `nsgi` executable script. */
export const BIN_PATH = fileURLToPath(new URL('../../bin/nsgi.js', import.meta.url));

/** START_TIMEOUT_MS bounds how long the CLI may take to print its listening line (tsx compiles first). */
export const START_TIMEOUT_MS = 20_000;

/** CliResult is how a finished CLI process ended and everything it printed. */
export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** CliProcess is one running `nsgi` process, with its output collected as it arrives. */
export class CliProcess {
  /** The child process. */
  readonly child: ChildProcess;
  /** Resolves once the process has exited and its output streams are closed. */
  readonly exited: Promise<CliResult>;
  private out = '';
  private err = '';
  private readonly listeners = new Set<() => void>();

  constructor(args: readonly string[], cwd: string = REPO_ROOT) {
    this.child = spawn(process.execPath, [BIN_PATH, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      this.out += text;
      this.notify();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      this.err += text;
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.notify();
        resolve({ code, signal, stdout: this.out, stderr: this.err });
      });
    });
  }

  /** Everything the process has written to stdout so far. */
  get stdout(): string {
    return this.out;
  }

  /** Everything the process has written to stderr so far. */
  get stderr(): string {
    return this.err;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * waitForStdout resolves with the first match of `pattern` in stdout, and rejects if the process
   * exits first or `timeoutMs` passes; the rejection quotes both streams.
   */
  waitForStdout(pattern: RegExp, timeoutMs: number = START_TIMEOUT_MS): Promise<RegExpMatchArray> {
    return this.waitFor(() => this.out.match(pattern), `stdout to match ${pattern}`, timeoutMs);
  }

  /** waitForExit resolves once the process has exited, or rejects after `timeoutMs`. */
  waitForExit(timeoutMs: number = START_TIMEOUT_MS): Promise<CliResult> {
    return withTimeout(this.exited, timeoutMs, () => `nsgi did not exit within ${timeoutMs} ms; ${this.describe()}`);
  }

  /** kill sends `signal` if the process is still running. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  private waitFor<T>(check: () => T | null | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const listener = (): void => {
        const found = check();
        if (found !== null && found !== undefined) {
          done();
          resolve(found);
        } else if (!this.running) {
          done();
          reject(new Error(`nsgi exited (code ${this.child.exitCode}) before ${what}; ${this.describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.describe()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      listener();
    });
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private describe(): string {
    return `stdout: ${JSON.stringify(this.out)}, stderr: ${JSON.stringify(this.err)}`;
  }
}

/** withTimeout settles like `promise`, or rejects with `message()` after `ms` milliseconds. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const started = new Set<CliProcess>();

/** RunningCli is a CLI that has printed its listening line. */
export interface RunningCli {
  readonly cli: CliProcess;
  /** The base URL from the listening line, `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
}

/**
 * startCli runs `nsgi ...args` and resolves once it prints `nsgi: listening on http://HOST:PORT`.
 * The process is killed by {@link killAllClis}.
 */
export async function startCli(args: readonly string[], cwd?: string): Promise<RunningCli> {
  const cli = new CliProcess(args, cwd);
  started.add(cli);
  const match = await cli.waitForStdout(/^nsgi: listening on (http:\/\/(?:\[[^\]]+\]|[^:\s]+):(\d+))\n/);
  return { cli, url: match[1] as string, port: Number(match[2]) };
}

/**
 * trackCli hands a process started some other way (one whose listening line is not plain HTTP,
 * say) to {@link killAllClis}, so it is ended after the test like those {@link startCli} starts.
 */
export function trackCli(cli: CliProcess): CliProcess {
  started.add(cli);
  return cli;
}

/** runCli runs `nsgi ...args` to completion; the process is killed if it outlives `timeoutMs`. */
export async function runCli(args: readonly string[], timeoutMs: number = START_TIMEOUT_MS, cwd?: string): Promise<CliResult> {
  const cli = new CliProcess(args, cwd);
  try {
    return await cli.waitForExit(timeoutMs);
  } finally {
    cli.kill();
  }
}

/** killAllClis kills every process {@link startCli} started and waits until each has exited. */
export async function killAllClis(): Promise<void> {
  const all = [...started];
  started.clear();
  for (const cli of all) cli.kill();
  await Promise.all(all.map((cli) => cli.exited));
}
