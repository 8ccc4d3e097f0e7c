/**
 * What every server under test does around its routes: take the port from argv, print the ready
 * line the suite waits for, and exit on SIGINT/SIGTERM (process.exit, so `--cpu-prof` writes its
 * profile).
 */

/** portFromArgv is the port to listen on: argv[2], else BENCH_PORT, else 0 (any free port). */
export function portFromArgv(): number {
  const raw = process.argv[2] ?? process.env['BENCH_PORT'] ?? '0';
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port ${raw}`);
  return port;
}

/** announce prints `READY <name> pid=<pid> port=<port>`, the line the suite waits for. */
export function announce(name: string, port: number): void {
  process.stdout.write(`READY ${name} pid=${process.pid} port=${port}\n`);
}

/** exitOnSignals makes SIGINT and SIGTERM end the process at once. */
export function exitOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(0));
}
