/**
 * The file benchmark: one large file sent by nsgi (`staticFiles`, file bodies), by node:http
 * (`fs.createReadStream` piped into the response) and by nginx (`sendfile on`), each pinned to
 * core 0 while the client reads on core 1. It reports the server's CPU seconds per GiB sent and
 * MiB/s, as medians of several downloads, in rotating order.
 *
 *   node --import tsx test/bench/files.ts            1 GiB, 5 runs
 *   node --import tsx test/bench/files.ts --quick    64 MiB, 3 runs (checks the setup)
 *
 * It is its own script rather than a scenario of `npm run bench`: the suite's servers answer a
 * shared route table, and nginx serving a file from disk is no server of that table. The file is
 * written to a temporary folder first and read once before measuring, so every server reads
 * from the page cache.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { download } from './lib/clients.ts';
import { cpuSeconds, decidePinning, pinSelf, pinned, sleep, startServer, type RunningServer } from './lib/proc.ts';
import { fmt, summarize } from './lib/stats.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NGINX = '/usr/sbin/nginx';
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** NGINX_READY_MS bounds the wait for nginx to accept connections. */
const NGINX_READY_MS = 5_000;

const quick = process.argv.includes('--quick');
const size = quick ? 64 * MIB : GIB;
const runs = quick ? 3 : 5;

/** writeData fills `path` with `size` bytes of a repeated random 1 MiB block. */
async function writeData(path: string): Promise<void> {
  const block = randomBytes(MIB);
  const handle = await open(path, 'w');
  try {
    for (let written = 0; written < size; written += MIB) await handle.write(block, 0, Math.min(MIB, size - written));
  } finally {
    await handle.close();
  }
}

/** freePort asks the kernel for a free loopback port. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** startNginx runs nginx as one process (no master) serving `root` with sendfile, pinned like the others. */
async function startNginx(root: string, dir: string, cpu: string | null): Promise<RunningServer> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: apt-get install nginx-light`);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `${process.getuid?.() === 0 ? 'user root root;' : ''}
master_process off;
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  sendfile on;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  );
  const [command, args] = pinned(cpu, NGINX, ['-c', conf, '-p', dir]);
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + NGINX_READY_MS;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not start: ${err}`);
    }
    await sleep(50);
  }
  return {
    name: 'nginx',
    // taskset execs nginx, so the child's pid is nginx's.
    pid: child.pid!,
    port,
    child,
    stderr: () => err,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
    kill: () => void child.kill('SIGKILL'),
  };
}

const pinning = decidePinning();
pinSelf(pinning.client);
const dir = await mkdtemp(join(tmpdir(), 'nsgi-bench-files-'));
const servers: RunningServer[] = [];
try {
  const root = join(dir, 'public');
  await mkdir(root);
  console.log(`writing a ${size / MIB} MiB file; ${pinning.note}`);
  await writeData(join(root, 'data.bin'));
  await readFile(join(root, 'data.bin')); // into the page cache
  // The servers inherit this process's environment.
  process.env['BENCH_FILE_ROOT'] = root;
  for (const [name, script] of [
    ['nsgi', 'test/bench/servers/file-nsgi.ts'],
    ['node:http createReadStream', 'test/bench/servers/file-node-http.ts'],
  ] as const) {
    const [command, args] = pinned(pinning.server, process.execPath, ['--import', 'tsx', script]);
    servers.push({ ...(await startServer(name, command, args, ROOT, null)), name });
  }
  servers.push(await startNginx(root, dir, pinning.server));

  const figures = new Map<string, { cpu: number[]; mibps: number[] }>(servers.map((s) => [s.name, { cpu: [], mibps: [] }]));
  for (const server of servers) await download(server.port, '/data.bin', 120_000); // warm-up
  for (let k = 0; k < runs; k++) {
    for (let i = 0; i < servers.length; i++) {
      const server = servers[(i + k) % servers.length]!;
      let before = 0;
      const r = await download(server.port, '/data.bin', 300_000, () => {
        before = cpuSeconds(server.pid);
      });
      const cpu = cpuSeconds(server.pid) - before;
      if (r.bodyBytes !== size) throw new Error(`${server.name}: got ${r.bodyBytes} bytes, expected ${size}`);
      figures.get(server.name)!.cpu.push(cpu / (size / GIB));
      figures.get(server.name)!.mibps.push(size / MIB / r.seconds);
      console.log(`${server.name} run ${k + 1} of ${runs}: ${fmt(cpu / (size / GIB))} CPU s/GiB, ${fmt(size / MIB / r.seconds)} MiB/s`);
    }
  }
  console.log(`\n${size / MIB} MiB file, median of ${runs} (min-max); CPU counted in 10 ms ticks\n`);
  console.log('| server | CPU s/GiB | MiB/s |\n|---|---|---|');
  for (const [name, f] of figures) {
    const cpu = summarize(f.cpu);
    const speed = summarize(f.mibps);
    console.log(`| ${name} | ${fmt(cpu.median)} (${fmt(cpu.min)}-${fmt(cpu.max)}) | ${fmt(speed.median)} (${fmt(speed.min)}-${fmt(speed.max)}) |`);
  }
} finally {
  await Promise.all(servers.map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
}
