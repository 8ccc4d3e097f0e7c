/**
 * A real nginx (Debian's /usr/sbin/nginx, package nginx-light) started by a test in a temp dir on
 * a free loopback port, in front of nsgi instances, with the upstream settings docs/DEPLOYMENT.md
 * gives for restarts that lose nothing. If nginx is missing the test fails and says how to
 * install it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './processes.ts';
import { sleep } from './server.ts';

const NGINX = '/usr/sbin/nginx';
/** How long nginx may take to listen. */
const NGINX_START_MS = 10_000;

/**
 * restartSafeConfig is the nginx config of docs/DEPLOYMENT.md's "Restarts" section: each upstream
 * never marked down (`max_fails=0`), a refused or reset connection retried once on the other
 * instance, and uploads up to 64 MiB.
 */
export function restartSafeConfig(dir: string, port: number, upstreams: readonly number[]): string {
  return `
${process.getuid?.() === 0 ? 'user root root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  upstream nsgi {
    ${upstreams.map((p) => `server 127.0.0.1:${p} max_fails=0;`).join('\n    ')}
    keepalive 16;
    keepalive_timeout 4s;
  }

  server {
    listen 127.0.0.1:${port};
    client_max_body_size 64m;

    location / {
      proxy_pass http://nsgi;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 1h;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 2;
    }
  }
}
`;
}

/** Nginx is a running nginx. */
export interface Nginx {
  readonly port: number;
  /** Stops nginx and waits for it to exit. */
  stop(): Promise<void>;
}

/** startNginx runs nginx with `config(dir, port)` and resolves once it accepts connections. */
export async function startNginx(dir: string, config: (dir: string, port: number) => string): Promise<Nginx> {
  if (!existsSync(NGINX)) {
    throw new Error(`${NGINX} is missing: this test needs Debian's nginx. Install it with: apt-get install nginx-light (.ci/run does this)`);
  }
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, sub), { recursive: true });
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, config(dir, port));
  const child: ChildProcess = spawn(NGINX, ['-c', conf, '-p', dir, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + NGINX_START_MS;
  while (!(await accepts(port))) {
    const errorLog = existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${output} ${errorLog}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not listen on ${port} within ${NGINX_START_MS} ms: ${output} ${errorLog}`);
    }
    await sleep(50);
  }
  return { port, stop };
}

/** accepts tells whether something listens on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
