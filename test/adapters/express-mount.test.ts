/**
 * toNodeListener under an Express mount: SCRIPT_NAME is the mount (`req.baseUrl`), PATH_INFO
 * the rest, and REQUEST_URI the target as the client sent it (`req.originalUrl`), so a mounted
 * nsgi app can build links to itself (SPEC §2.2).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { toNodeListener } from '../../src/adapters/node-http.ts';
import { curl } from '../helpers/server.ts';

const servers = new Set<http.Server>();
afterEach(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  servers.clear();
});

/** whereAmI answers with the environ's path keys. */
const whereAmI: App = (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'application/json']]);
  return [JSON.stringify({ script: environ.SCRIPT_NAME, path: environ.PATH_INFO, uri: environ.REQUEST_URI, query: environ.QUERY_STRING })];
};

/** listen serves an Express app on node:http on a free loopback port. */
async function listen(app: express.Express): Promise<string> {
  const server = http.createServer(app);
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('toNodeListener under an Express mount', () => {
  it('ENV-18: SCRIPT_NAME is the mount, PATH_INFO the rest, REQUEST_URI the original target', async () => {
    const ex = express();
    ex.use('/nsgi', toNodeListener(whereAmI));
    const url = await listen(ex);
    const result = await curl([`${url}/nsgi/a%20b/c?x=1`]);
    expect(JSON.parse(result.stdout.toString())).toEqual({ script: '/nsgi', path: '/a b/c', uri: '/nsgi/a%20b/c?x=1', query: 'x=1' });
    const bare = await curl([`${url}/nsgi`]);
    expect(JSON.parse(bare.stdout.toString())).toEqual({ script: '/nsgi', path: '', uri: '/nsgi', query: '' });
  });

  it('ENV-19: takes every prefix above it from nested routers, without a trailing slash', async () => {
    const ex = express();
    const api = express.Router();
    api.use('/v1/', toNodeListener(whereAmI));
    ex.use('/api', api);
    const url = await listen(ex);
    const result = await curl([`${url}/api/v1/items`]);
    expect(JSON.parse(result.stdout.toString())).toEqual({ script: '/api/v1', path: '/items', uri: '/api/v1/items', query: '' });
  });

  it('leaves a listener served at the root as it was', async () => {
    const ex = express();
    ex.use(toNodeListener(whereAmI));
    const url = await listen(ex);
    const result = await curl([`${url}/x?y`]);
    expect(JSON.parse(result.stdout.toString())).toEqual({ script: '', path: '/x', uri: '/x?y', query: 'y' });
  });
});
