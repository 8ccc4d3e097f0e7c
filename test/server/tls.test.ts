/**
 * The reference server over TLS: the same HTTP/1.1 driver on node:tls sockets, with certificates
 * made by openssl in a temp dir. The app sees `nsgi.url_scheme` `https`; a WebSocket works as
 * `wss://`; a client certificate is asked for but optional; a failed handshake is logged once per
 * peer and never takes the server down; new certificates apply to the connections that follow.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import crypto from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { App } from '../../protocol/nsgi.ts';
import { websocketApp } from '../../src/websocket.ts';
import { makeCert, type Cert } from '../helpers/certs.ts';
import { cleanup, startServer, waitUntil } from '../helpers/server.ts';

let dir = '';
let server: Cert;
let renewed: Cert;
let client: Cert;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-tls-'));
  server = makeCert(dir, 'server');
  renewed = makeCert(dir, 'renewed');
  client = makeCert(dir, 'client', '/CN=test client', 'DNS:client.test');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(cleanup);

const schemeApp: App = (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return [`${environ['nsgi.url_scheme']} ${environ.REQUEST_METHOD} ${environ.PATH_INFO}`];
};

/** get makes one HTTPS request trusting `ca`, and resolves with the status, body and peer certificate. */
function get(port: number, pathname: string, ca: string, extra: https.RequestOptions = {}): Promise<{ status: number; body: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: pathname, ca, agent: false, ...extra }, (res) => {
      const fingerprint = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      let body = '';
      res.setEncoding('utf8').on('data', (t: string) => (body += t));
      res.on('end', () => resolve({ status: res.statusCode!, body, fingerprint }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  it('serves HTTPS on the same driver, nsgi.url_scheme https', async () => {
    const { port, url } = await startServer(schemeApp, { tls: { cert: server.cert, key: server.key } });
    expect(url).toBe(`https://127.0.0.1:${port}`);
    const r = await get(port, '/hello', server.cert);
    expect(r).toMatchObject({ status: 200, body: 'https GET /hello' });
  });

  it('keeps a connection alive across requests, as over plain TCP', async () => {
    const { port } = await startServer(schemeApp, { tls: { cert: server.cert, key: server.key } });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set<unknown>();
      for (let i = 0; i < 3; i++) {
        const r = await new Promise<string>((resolve, reject) => {
          https.get({ host: '127.0.0.1', port, path: `/${i}`, ca: server.cert, agent }, (res) => {
            sockets.add(res.socket);
            let body = '';
            res.setEncoding('utf8').on('data', (t: string) => (body += t)).on('end', () => resolve(body));
          }).on('error', reject);
        });
        expect(r).toBe(`https GET /${i}`);
      }
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('a WebSocket works as wss://', async () => {
    const app = websocketApp((ws) => ws.on('message', (data) => ws.send(`echo ${String(data)}`)));
    const { port } = await startServer(app, { tls: { cert: server.cert, key: server.key } });
    const ws = new WebSocket(`wss://127.0.0.1:${port}/`, { ca: server.cert });
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const reply = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
      ws.send('hi');
      expect(await reply).toBe('echo hi');
    } finally {
      ws.terminate();
    }
  });

  it('asks for a client certificate but serves clients with and without one', async () => {
    let authorized: unknown[] = [];
    const app: App = (environ, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['ok'];
    };
    const { port, server: running } = await startServer(app, { tls: { cert: server.cert, key: server.key, ca: client.cert, requestCert: true } });
    running.netServer.on('secureConnection', (socket: tls.TLSSocket) => authorized.push(socket.authorized));
    expect((await get(port, '/', server.cert, { cert: client.cert, key: client.key })).body).toBe('ok');
    expect((await get(port, '/', server.cert)).body).toBe('ok');
    expect(authorized).toEqual([true, false]);
    authorized = [];
  });

  it('logs a failed handshake once per peer and keeps serving', async () => {
    const { port, errors } = await startServer(schemeApp, { tls: { cert: server.cert, key: server.key } });
    for (let i = 0; i < 3; i++) {
      // Plain HTTP to a TLS port: not a ClientHello.
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      await new Promise((resolve) => socket.on('close', resolve));
    }
    // A client that does not trust the certificate gives up mid-handshake.
    await expect(get(port, '/', renewed.cert)).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
    await waitUntil(() => errors.length >= 1, 'the handshake failure to be logged', 2000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^nsgi: TLS handshake with 127\.0\.0\.1 failed: .*\(further failures from this address are not logged\)$/);
    expect((await get(port, '/after', server.cert)).body).toBe('https GET /after');
  });

  it('reloadTls serves new certificates to the connections that follow', async () => {
    const { port, server: running } = await startServer(schemeApp, { tls: { cert: server.cert, key: server.key } });
    const before = await get(port, '/', server.cert);
    running.reloadTls({ cert: renewed.cert, key: renewed.key });
    const after = await get(port, '/', renewed.cert);
    expect(after.body).toBe('https GET /');
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(after.fingerprint).toBe(new crypto.X509Certificate(renewed.cert).fingerprint256);
  });
});
