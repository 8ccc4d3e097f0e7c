/**
 * serve({ listen }): one server on several addresses at once (loopback TCP and a unix socket in a
 * temp dir), a busy address failing the whole serve() by name with nothing left listening, and
 * close() closing every listener.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { ListenFailure } from '../../src/listen-all.ts';
import { serve } from '../../src/server.ts';
import { connects } from '../helpers/processes.ts';
import { curl } from '../helpers/server.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-listen-all-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const app: App = (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return [`${environ.SERVER_NAME}`];
};

describe('serve({ listen })', () => {
  it('serves on every address given, reports each, and close() closes them all', async () => {
    const socket = path.join(dir, 'a.sock');
    const server = await serve(app, { listen: [{ host: '127.0.0.1', port: 0 }, { path: socket }, { host: '127.0.0.1', port: 0 }], errors: { write: () => {} } });
    const [first, unix, third] = server.addresses;
    expect(server.url).toBe(first!.url);
    expect(unix).toEqual({ host: socket, port: 0, url: `http+unix:${encodeURIComponent(socket)}` });
    expect(third!.port).not.toBe(first!.port);
    expect((await curl(['-s', `${first!.url}/`])).stdout.toString()).toBe('127.0.0.1');
    expect((await curl(['-s', `${third!.url}/`])).stdout.toString()).toBe('127.0.0.1');
    expect((await curl(['-s', '--unix-socket', socket, 'http://localhost/'])).stdout.toString()).toBe('localhost');
    await server.close({ timeout: 1000 });
    expect(await connects({ host: '127.0.0.1', port: first!.port })).toBe(false);
    expect(await connects({ host: '127.0.0.1', port: third!.port })).toBe(false);
    expect(await connects({ path: socket })).toBe(false);
  });

  it('rejects with a ListenFailure naming a busy address, and leaves the others closed', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const taken = (busy.address() as net.AddressInfo).port;
    const socket = path.join(dir, 'b.sock');
    try {
      const failed = await serve(app, { listen: [{ path: socket }, { host: '127.0.0.1', port: taken }] }).then(() => null, (err: unknown) => err);
      expect(failed).toBeInstanceOf(ListenFailure);
      expect((failed as ListenFailure).message).toMatch(new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${taken}: .*EADDRINUSE`));
      expect((failed as ListenFailure).code).toBe('EADDRINUSE');
      expect(await connects({ path: socket })).toBe(false);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it('keeps the plain listen error for one address given as host and port', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const taken = (busy.address() as net.AddressInfo).port;
    try {
      const failed = await serve(app, { host: '127.0.0.1', port: taken }).then(() => null, (err: unknown) => err);
      expect(failed).not.toBeInstanceOf(ListenFailure);
      expect((failed as { code?: string }).code).toBe('EADDRINUSE');
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});
