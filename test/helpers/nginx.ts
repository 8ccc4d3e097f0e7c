/**
 * A real nginx (Debian's /usr/sbin/nginx, package nginx-light) for the tests and the bench: the
 * binary check, a temporary prefix holding everything nginx writes, the config around an `http {}`
 * body, and a launcher that starts nginx on a free loopback port, waits until it listens, and on
 * stop() ends it and removes the prefix. Also the two proxy configs of docs/DEPLOYMENT.md. If nginx
 * is missing the caller fails and says how to install it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { accepts, freePort } from './processes.ts';

/** NGINX is where Debian installs nginx. */
export const NGINX = '/usr/sbin/nginx';
/** How long nginx may take to listen. */
const NGINX_START_MS = 10_000;
/** How long nginx may take to exit on SIGTERM before it is killed. */
const NGINX_STOP_MS = 3000;
/** The temp paths nginx wants writable; the defaults are system folders a test may not write. */
const TEMP_PATHS = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'] as const;

/** requireNginx throws, saying how to install it, unless nginx is installed. */
export function requireNginx(): void {
  if (!existsSync(NGINX)) {
    throw new Error(`${NGINX} is missing: this needs Debian's nginx. Install it with: apt-get install nginx-light (.ci/run does this)`);
  }
}

/** makeNginxPrefix creates a temporary prefix folder, named after `name`, with nginx's temp paths in it. */
export function makeNginxPrefix(name: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `${name}-`));
  for (const sub of TEMP_PATHS) mkdirSync(path.join(dir, sub));
  return dir;
}

/** NginxConfigOptions are the few main-context settings that differ between users. */
export interface NginxConfigOptions {
  /** Main-context directives added before the rest (e.g. `master_process off;`). */
  readonly main?: readonly string[];
  /** worker_connections; 1024 unless given. */
  readonly workerConnections?: number;
}

/**
 * nginxConfig is a whole nginx.conf around the `http {}` body `http`: one worker, pid, error log
 * and temp paths all under the prefix `dir`, no access log.
 */
export function nginxConfig(dir: string, http: string, options: NginxConfigOptions = {}): string {
  // As root, nginx would switch to `nobody`, who may not read a folder made by root with mkdtemp.
  const main = [...(process.getuid?.() === 0 ? ['user root root;'] : []), ...(options.main ?? [])];
  return `${main.join('\n')}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${options.workerConnections ?? 1024}; }
http {
  access_log off;
${TEMP_PATHS.map((sub) => `  ${sub}_temp_path ${dir}/${sub};`).join('\n')}
${http}
}
`;
}

/** upstreams is the `upstream nsgi` block both proxy configs share, `params` added to each server. */
function upstreams(ports: readonly number[], params = ''): string {
  return `
  upstream nsgi {
    ${ports.map((p) => `server 127.0.0.1:${p}${params};`).join('\n    ')}
    keepalive 16;
    keepalive_timeout 4s;
  }`;
}

/** PROXY_HEADERS are the request headers both proxy configs pass on to nsgi. */
const PROXY_HEADERS = `proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;`;

/**
 * PROXY_STREAMING is the `location /` of both proxy configs: keep-alive to the upstreams
 * (HTTP/1.1 with the Connection header cleared, RFC 9112 section 9.3), nothing buffered either way
 * so that streams and uploads flow, and an hour for a quiet stream.
 */
const PROXY_STREAMING = `proxy_pass http://nsgi;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      ${PROXY_HEADERS}
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 1h;`;

/**
 * deploymentConfig is the `http {}` body of docs/DEPLOYMENT.md for `upstreamPorts`, listening on
 * `port`: keep-alive upstreams, buffering off, and a `/ws` location for upgrades.
 */
export function deploymentConfig(port: number, upstreamPorts: readonly number[]): string {
  return `${upstreams(upstreamPorts)}
  server {
    listen 127.0.0.1:${port};
    location / {
      ${PROXY_STREAMING}
    }
    location /ws {
      proxy_pass http://nsgi;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      ${PROXY_HEADERS}
      proxy_read_timeout 1h;
    }
  }`;
}

/**
 * restartSafeConfig is the `http {}` body of docs/DEPLOYMENT.md's "Restarts" section: each
 * upstream never marked down (`max_fails=0`), a refused or reset connection retried once on the
 * other instance, and uploads up to 64 MiB.
 */
export function restartSafeConfig(port: number, upstreamPorts: readonly number[]): string {
  return `${upstreams(upstreamPorts, ' max_fails=0')}
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 64m;
    location / {
      ${PROXY_STREAMING}
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 2;
    }
  }`;
}

/** RunningNginx is one nginx started by startNginx and the way to stop it. */
export interface RunningNginx {
  readonly port: number;
  readonly url: string;
  /** Stops nginx, waits for it to exit and removes its prefix. */
  stop(): Promise<void>;
}

/**
 * startNginx runs nginx in a fresh temporary prefix with the `http {}` body `http(port)` on a free
 * loopback port, and resolves once it accepts connections.
 */
export async function startNginx(http: (port: number) => string): Promise<RunningNginx> {
  requireNginx();
  const dir = makeNginxPrefix('nsgi-nginx');
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, http(port)));
  const child = spawn(NGINX, ['-c', conf, '-p', dir, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), NGINX_STOP_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + NGINX_START_MS;
  while (!(await accepts(port))) {
    const errorLog = existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
    if (child.exitCode !== null || Date.now() > deadline) {
      const why = child.exitCode !== null ? `exited with ${child.exitCode}` : `did not listen on ${port} within ${NGINX_START_MS} ms`;
      await stop();
      throw new Error(`nginx ${why}: ${output} ${errorLog}`);
    }
    await sleep(50);
  }
  return { port, url: `http://127.0.0.1:${port}`, stop };
}
