/**
 * nginx as a server of the file scenario: Debian's /usr/sbin/nginx (package nginx-light) serving
 * the scenario's folder with `sendfile on`, as one process (`master_process off`), from a
 * temporary prefix, on a free loopback port. It runs as an added server does (lib/external.ts):
 * under `sh -c`, pinned to the servers' core, its CPU time that of its process tree.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startExternal } from './external.ts';
import type { RunningServer } from './proc.ts';

/** NGINX is where Debian installs nginx. */
const NGINX = '/usr/sbin/nginx';

/** PORT_MARK stands for the port in the config template; the start command fills it in from $PORT. */
const PORT_MARK = '@PORT@';

/** nginxConfig serves `root` on 127.0.0.1 with sendfile, everything nginx writes kept under `dir`. */
function nginxConfig(root: string, dir: string): string {
  // As root, nginx would switch to `nobody`, who may not read a folder made by root with mkdtemp.
  return `${process.getuid?.() === 0 ? 'user root root;' : ''}
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
    listen 127.0.0.1:${PORT_MARK};
    location /file/ {
      alias ${root}/;
    }
  }
}
`;
}

/**
 * startNginx serves `root` under `/file/` (the suite's file route) with nginx pinned to `cpu`; its
 * stop() also removes nginx's temporary prefix. Should the suite exit first (Ctrl-C, an error),
 * nginx, which runs in a process group of its own, is killed and the prefix removed on the way out.
 */
export async function startNginx(root: string, cpu: string | null, cwd: string): Promise<RunningServer> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: install it with apt-get install nginx-light`);
  const dir = mkdtempSync(join(tmpdir(), 'nsgi-bench-nginx-'));
  try {
    for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
    writeFileSync(join(dir, 'nginx.conf.in'), nginxConfig(root, dir));
    const command = `sed "s/${PORT_MARK}/$PORT/" '${dir}/nginx.conf.in' > '${dir}/nginx.conf' && exec ${NGINX} -c '${dir}/nginx.conf' -p '${dir}'`;
    const server = await startExternal({ id: 'nginx', label: 'nginx', command }, cpu, cwd);
    const onExit = (): void => {
      server.kill();
      rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', onExit);
    return {
      ...server,
      async stop() {
        process.off('exit', onExit);
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
