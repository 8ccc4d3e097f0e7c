/**
 * The chunk-size sweep: `/stream` downloaded in chunks from 16 bytes to 1 MiB, for each server,
 * the server's CPU seconds per GiB and the MiB/s at every size. Large chunks measure the kernel's
 * copies, the same for every server; the differences between servers live at the small sizes,
 * where the cost per chunk (a framing, a write, a generator step) dominates.
 *
 * Each size's figure sums back-to-back downloads until about a second (a fifth in a quick run) of
 * wall time has passed, so the 10 ms CPU ticks of /proc are a percent of the figure or less at
 * every size; each download is checked for status and byte count before it counts.
 */
import { download } from './lib/clients.ts';
import type { Metric } from './lib/model.ts';
import { cpuSeconds, type RunningServer } from './lib/proc.ts';
import { fmt } from './lib/stats.ts';
import { throughput, type Scenario } from './scenarios.ts';

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

/** SWEEP_SIZES are the chunk sizes of the sweep, 16 B to 1 MiB by factors of four. */
export const SWEEP_SIZES = [16, 64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB];
/** SWEEP_DOWNLOAD_CHUNKS sets one download's size: this many chunks, within SWEEP_DOWNLOAD_MIN and _MAX bytes. */
const SWEEP_DOWNLOAD_CHUNKS = 1024;
const SWEEP_DOWNLOAD_MIN = MIB;
const SWEEP_DOWNLOAD_MAX = 64 * MIB;
/** SWEEP_MAX_DOWNLOADS bounds the downloads per figure whatever the speed. */
const SWEEP_MAX_DOWNLOADS = 64;
/** DOWNLOAD_TIMEOUT_MS bounds one download. */
const DOWNLOAD_TIMEOUT_MS = 120_000;

/** sizeLabel prints a chunk size as `16 B`, `4 KiB` or `1 MiB`. */
export function sizeLabel(size: number): string {
  return size >= MIB ? `${size / MIB} MiB` : size >= KIB ? `${size / KIB} KiB` : `${size} B`;
}

/** sweepMetrics are a sweep's figures: `cpu@SIZE` and `mibps@SIZE` for every size. */
function sweepMetrics(): Metric[] {
  return SWEEP_SIZES.flatMap((size): Metric[] => [
    { key: `cpu@${size}`, unit: `server CPU s/GiB, ${sizeLabel(size)} chunks`, better: 'lower' },
    { key: `mibps@${size}`, unit: `MiB/s, ${sizeLabel(size)} chunks`, better: 'higher' },
  ]);
}

/** measureSize downloads `/stream` in `size`-byte chunks for about `seconds` and returns the figures. */
async function measureSize(server: RunningServer, size: number, mode: 'sync' | 'async', seconds: number): Promise<{ cpu: number; mibps: number }> {
  const each = Math.min(SWEEP_DOWNLOAD_MAX, Math.max(SWEEP_DOWNLOAD_MIN, size * SWEEP_DOWNLOAD_CHUNKS));
  let cpu = 0;
  let bytes = 0;
  let wall = 0;
  for (let i = 0; i < SWEEP_MAX_DOWNLOADS && wall < seconds; i++) {
    let before = 0;
    const r = await download(server.port, `/stream?size=${each}&chunk=${size}&mode=${mode}`, DOWNLOAD_TIMEOUT_MS, () => {
      before = cpuSeconds(server.pid);
    });
    cpu += cpuSeconds(server.pid) - before;
    if (r.bodyBytes !== each) throw new Error(`${sizeLabel(size)} chunks: got ${r.bodyBytes} body bytes, expected ${each}`);
    bytes += r.bodyBytes;
    wall += r.seconds;
  }
  return { cpu: cpu / (bytes / GIB), mibps: bytes / MIB / wall };
}

/** sweepScenario is the sweep with a sync or an async generator (for nsgi and Bun; node:http and the ceiling have one loop). */
export function sweepScenario(mode: 'sync' | 'async'): Scenario {
  return {
    id: `sweep-${mode}`,
    title: `chunk-size sweep, ${mode} generator, 16 B to 1 MiB`,
    metrics: sweepMetrics(),
    needsWrk: false,
    route: 'stream',
    optIn: true,
    async run(ctx, result) {
      const seconds = ctx.quick ? 0.2 : 1;
      await throughput(
        ctx,
        result,
        (server) => download(server.port, `/stream?size=${4 * MIB}&chunk=${KIB}&mode=${mode}`, DOWNLOAD_TIMEOUT_MS),
        async (server) => {
          const figures: Record<string, number> = {};
          for (const size of SWEEP_SIZES) {
            const f = await measureSize(server, size, mode, seconds);
            figures[`cpu@${size}`] = f.cpu;
            figures[`mibps@${size}`] = f.mibps;
          }
          return figures;
        },
        (f) => SWEEP_SIZES.map((size) => `${sizeLabel(size)} ${fmt(f[`cpu@${size}`]!)}`).join(', ') + ' CPU s/GiB',
      );
    },
  };
}
