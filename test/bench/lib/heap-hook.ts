/**
 * Loaded with `--import` into a server under test by `memory.ts`. On SIGUSR2 it runs a full
 * garbage collection (the server runs with `--expose-gc`), writes a heap snapshot into
 * HEAP_SNAPSHOT_DIR and prints `SNAPSHOT <path>` on stdout.
 */
import v8 from 'node:v8';

let taken = 0;
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
  const path = v8.writeHeapSnapshot(`${process.env['HEAP_SNAPSHOT_DIR'] ?? '.'}/snapshot-${process.pid}-${taken++}.heapsnapshot`);
  process.stdout.write(`SNAPSHOT ${path}\n`);
});
