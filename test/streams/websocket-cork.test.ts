/**
 * Corking an upgraded socket per read: on a real loopback socket, writes made for one read are
 * held until the tick ends and then leave together, and an `end()` inside that tick still sends
 * them and the FIN; on the real server, the WebSocket helper echoes a batch of frames that came in
 * one segment, every echo intact and in order.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { corkEachRead } from '../../src/cork.ts';
import { websocketApp } from '../../src/websocket.ts';
import { RawClient, cleanup, startServer } from '../helpers/server.ts';

const opened = new Set<net.Server | net.Socket>();

afterEach(async () => {
  for (const thing of opened) {
    if (thing instanceof net.Socket) thing.destroy();
    else thing.close();
  }
  opened.clear();
  await cleanup();
});

/** pair is a loopback server socket, wrapped by `onServerSocket`, and the client connected to it. */
async function pair(onServerSocket: (socket: net.Socket) => void): Promise<net.Socket> {
  const server = net.createServer((socket) => {
    opened.add(socket);
    onServerSocket(socket);
  });
  opened.add(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1' });
  opened.add(client);
  await once(client, 'connect');
  return client;
}

/** readAll collects what `client` receives until the server ends the connection. */
function readAll(client: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  client.on('data', (b: Buffer) => parts.push(b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no end within 5 s; got ${Buffer.concat(parts).toString('latin1')}`)), 5000);
    client.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
  });
}

describe('corkEachRead', () => {
  it('holds the writes made for one read until the tick ends, then sends them all', async () => {
    const seen: Array<{ corkedDuringRead: number; buffered: number; corkedAfter: number }> = [];
    const client = await pair((socket) => {
      corkEachRead(socket);
      socket.on('data', () => {
        socket.write('one ');
        socket.write('two ');
        socket.write('three');
        const corkedDuringRead = socket.writableCorked;
        const buffered = socket.writableLength;
        setImmediate(() => {
          seen.push({ corkedDuringRead, buffered, corkedAfter: socket.writableCorked });
          socket.end();
        });
      });
    });
    const all = readAll(client);
    client.write('go');
    expect((await all).toString()).toBe('one two three');
    expect(seen).toEqual([{ corkedDuringRead: 1, buffered: 13, corkedAfter: 0 }]);
  });

  it('corks once per tick however many data listeners run, and again on the next read', async () => {
    const corked: number[] = [];
    let reads = 0;
    const client = await pair((socket) => {
      corkEachRead(socket);
      socket.on('data', () => {
        socket.write(`read ${++reads};`);
        corked.push(socket.writableCorked);
        if (reads === 2) setImmediate(() => socket.end());
      });
      socket.on('data', () => corked.push(socket.writableCorked));
    });
    const all = readAll(client);
    client.write('a');
    // The second read must be its own: wait for the answer to the first.
    await once(client, 'data');
    client.write('b');
    expect((await all).toString()).toBe('read 1;read 2;');
    expect(corked).toEqual([1, 1, 1, 1]);
  });

  it('an end() in the corked tick still sends what was written, then the FIN', async () => {
    const client = await pair((socket) => {
      corkEachRead(socket);
      socket.on('data', () => {
        socket.write('last words');
        socket.end();
      });
    });
    const all = readAll(client);
    client.write('bye');
    expect((await all).toString()).toBe('last words');
  });
});

/** maskedBinaryFrame is a client's masked binary frame (RFC 6455 §5.2) carrying `payload` (< 126 bytes). */
function maskedBinaryFrame(payload: Buffer, mask: Buffer): Buffer {
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x82, 0x80 | payload.length]), mask, masked]);
}

describe('the WebSocket helper corks per read', () => {
  it('echoes 16 frames sent in one write, each intact and in order', async () => {
    const { port } = await startServer(
      websocketApp((ws) => {
        ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
      }),
    );
    const client = await RawClient.connect(port);
    client.write(
      'GET /ws HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n',
    );
    const head = await client.waitForText('\r\n\r\n');
    const headLength = head.indexOf('\r\n\r\n') + 4;
    expect(head.toString('latin1', 0, 12)).toBe('HTTP/1.1 101');
    const payloads = Array.from({ length: 16 }, (_, i) => Buffer.alloc(32, i + 1));
    const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
    client.write(Buffer.concat(payloads.map((p) => maskedBinaryFrame(p, mask))));
    // Server frames are unmasked: two header bytes and the payload each.
    const expected = Buffer.concat(payloads.map((p) => Buffer.concat([Buffer.from([0x82, p.length]), p])));
    const all = await client.waitFor((d) => d.length >= headLength + expected.length, 'sixteen echoes');
    expect(all.subarray(headLength).equals(expected)).toBe(true);
  });
});
