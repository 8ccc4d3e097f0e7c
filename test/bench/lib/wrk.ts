/** wrk: finding it, running it pinned, and reading its summary. */
import { spawn, spawnSync } from 'node:child_process';
import { pinned } from './proc.ts';

/** wrkVersion is `wrk -v`'s first line, or null when wrk is not installed. */
export function wrkVersion(): string | null {
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (r.error !== undefined) return null;
  const line = `${r.stdout}${r.stderr}`.split('\n')[0] ?? '';
  return line.replace(/\s*Copyright.*$/, '').trim();
}

/** WrkResult is what one wrk run measured. */
export interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  latencyP99: string;
}

/** WrkOptions describes one wrk run. */
export interface WrkOptions {
  url: string;
  connections: number;
  seconds: number;
  script?: string;
  env?: Record<string, string>;
  cpu: string | null;
}

/** runWrk runs `wrk -t1 -cN -dS --latency [-s script] url` and parses its summary. */
export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--timeout', '5s', '--latency'];
  if (options.script !== undefined) args.push('-s', options.script);
  args.push(options.url);
  const [command, argv] = pinned(options.cpu, 'wrk', args);
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    // wrk stops itself after -d; this only guards against a hung server.
    const guard = setTimeout(() => child.kill('SIGKILL'), (options.seconds + 15) * 1000);
    child.on('exit', (code) => {
      clearTimeout(guard);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const total = /(\d+) requests in/.exec(out);
      if (code !== 0 || rps === null || total === null) {
        reject(new Error(`wrk failed (exit ${code}):\n${out}`));
        return;
      }
      const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const p99 = /\s99%\s+(\S+)/.exec(out);
      resolve({
        requestsPerSecond: Number(rps[1]),
        requests: Number(total[1]),
        non2xx: non2xx === null ? 0 : Number(non2xx[1]),
        socketErrors: sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0),
        latencyP99: p99?.[1] ?? '?',
      });
    });
  });
}
