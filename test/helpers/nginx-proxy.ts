/**
 * Runs Debian's nginx (/usr/sbin/nginx, package nginx-light) for a test: its own config in a
 * temporary folder, on a free loopback port, load-balancing the given nsgi ports with the config
 * docs/DEPLOYMENT.md shows (keep-alive upstreams, buffering off, a `/ws` location for upgrades).
 * A missing nginx fails the test, saying how to install it.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './redis.ts';

const NGINX = '/usr/sbin/nginx';

/** NGINX_START_TIMEOUT_MS bounds how long nginx may take to listen. */
const NGINX_START_TIMEOUT_MS = 10_000;

/** RunningNginx is one nginx and the way to stop it. */
export interface RunningNginx {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

/** deploymentConfig is the nginx config of docs/DEPLOYMENT.md for `upstreams`, listening on `port`. */
export function deploymentConfig(dir: string, port: number, upstreams: number[]): string {
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
    ${upstreams.map((p) => `server 127.0.0.1:${p};`).join('\n    ')}
    keepalive 16;
    keepalive_timeout 4s;
  }
  server {
    listen 127.0.0.1:${port};
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
    }
    location /ws {
      proxy_pass http://nsgi;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 1h;
    }
  }
}
`;
}

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

/** startNginx starts nginx in front of `upstreams` and resolves once it listens. */
export async function startNginx(upstreams: number[]): Promise<RunningNginx> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: this test needs Debian's nginx. Install it with: apt-get install nginx-light (.ci/run does this)`);
  const dir = await mkdtemp(path.join(tmpdir(), 'nsgi-nginx-'));
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, sub));
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, deploymentConfig(dir, port, upstreams));
  const child = spawn(NGINX, ['-c', conf, '-p', dir, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + NGINX_START_TIMEOUT_MS;
  while (!(await accepts(port))) {
    const errorLog = existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not listen on ${port}: ${log} ${errorLog}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { port, url: `http://127.0.0.1:${port}`, stop };
}
