/**
 * nginx as a server of the file scenario: Debian's /usr/sbin/nginx (package nginx-light) serving
 * the scenario's folder with `sendfile on`, as one process (`master_process off`), from a
 * temporary prefix, on a free loopback port; the config boilerplate and the prefix come from
 * test/helpers/nginx.ts. It runs as an added server does (lib/external.ts): under `sh -c`, pinned
 * to the servers' core, its CPU time that of its process tree.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeNginxPrefix, NGINX, nginxConfig, requireNginx } from '../../helpers/nginx.ts';
import { startExternal } from './external.ts';
import type { RunningServer } from './proc.ts';

/** PORT_MARK stands for the port in the config template; the start command fills it in from $PORT. */
const PORT_MARK = '@PORT@';

/** fileServerConfig serves `root` on 127.0.0.1 with sendfile, everything nginx writes kept under `dir`. */
function fileServerConfig(root: string, dir: string): string {
  // One process (the CPU time measured is that of one server) in the foreground (run under sh -c).
  const http = `  sendfile on;
  server {
    listen 127.0.0.1:${PORT_MARK};
    location /file/ {
      alias ${root}/;
    }
  }`;
  return nginxConfig(dir, http, { main: ['master_process off;', 'daemon off;'], workerConnections: 256 });
}

/**
 * startNginx serves `root` under `/file/` (the suite's file route) with nginx pinned to `cpu`; its
 * stop() also removes nginx's temporary prefix. Should the suite exit first (Ctrl-C, an error),
 * nginx, which runs in a process group of its own, is killed and the prefix removed on the way out.
 */
export async function startNginx(root: string, cpu: string | null, cwd: string): Promise<RunningServer> {
  requireNginx();
  const dir = makeNginxPrefix('nsgi-bench-nginx');
  try {
    writeFileSync(join(dir, 'nginx.conf.in'), fileServerConfig(root, dir));
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
