/**
 * The shared read buffer on the real server: every plain connection reads into one buffer that the
 * next read (of any connection) overwrites, so whatever outlives a read must have been copied.
 * Each test leaves bytes behind in one read, lets other reads overwrite the buffer, and checks
 * that the bytes kept are still the ones sent: a head or a pipelined request cut across reads,
 * body pieces the app holds or has not read yet, the bytes handed over with an upgrade, and what
 * an upgraded socket reads next. Raw bytes on an ephemeral loopback port.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Upgraded } from '../../protocol/nsgi.ts';
import {
  cleanup,
  finalResponses,
  pathApp,
  RawClient,
  reqBytes,
  sha256,
  sleep,
  startServer,
  waitUntil,
} from '../helpers/server.ts';
import { UPGRADE_REQUEST } from '../helpers/upgrade.ts';

afterEach(cleanup);

/** PIECE is larger than what the input copies into a shared piece, so it is queued as it came. */
const PIECE = 5000;

/** pattern is `n` bytes that differ from piece to piece, so a piece overwritten by another shows. */
function pattern(n: number, seed: number): Buffer {
  const bytes = Buffer.alloc(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 31 + seed * 7) & 0xff;
  return bytes;
}

/** overwrite has another connection send `bytes` and get its answer, so its reads take the buffer. */
async function overwrite(port: number, bytes: Buffer): Promise<void> {
  const other = await RawClient.connect(port);
  other.write(reqBytes(`POST /other HTTP/1.1\nHost: t\nContent-Length: ${bytes.length}\n\n`));
  other.write(bytes);
  await other.waitForResponses(1);
  other.destroy();
}

/** holdingApp keeps every body piece as the server handed it over, and answers with the hash of them all. */
function holdingApp(delayMs: number): App {
  return async function* (environ, startResponse) {
    if (environ.PATH_INFO === '/other') {
      for await (const part of environ['nsgi.input']) void part;
      startResponse('200 OK', []);
      yield 'other';
      return;
    }
    // Waiting before the first read leaves the pieces queued; reading at once hands each over as it comes.
    if (delayMs > 0) await sleep(delayMs);
    const parts: Uint8Array[] = [];
    for await (const part of environ['nsgi.input']) parts.push(part);
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    yield sha256(Buffer.concat(parts));
  };
}

describe('the shared read buffer', () => {
  it('a head cut across two reads keeps its first part while other connections read', async () => {
    const { port } = await startServer(pathApp());
    const client = await RawClient.connect(port);
    client.write('GET /first-part-of-a-long-path');
    await sleep(50);
    await overwrite(port, pattern(2000, 1));
    client.write('/and-the-rest HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(1);
    expect(finalResponses(client.data).map((r) => r.body.toString())).toEqual(['/first-part-of-a-long-path/and-the-rest']);
  });

  it('SRV-5: a pipelined request cut across reads survives the reads in between', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const client = await RawClient.connect(port);
    client.write('GET /one HTTP/1.1\nHost: t\n\nGET /two HTTP/1.1\nHo');
    await client.waitForResponses(1);
    await overwrite(port, pattern(3000, 2));
    client.write('st: t\n\n');
    await client.waitForResponses(2);
    expect(finalResponses(client.data).map((r) => r.body.toString())).toEqual(['/one', '/two']);
    expect(seen).toEqual(['/one', '/other', '/two']);
  });

  for (const [name, delayMs] of [['handed over as they come', 0], ['queued until the app reads', 300]] as const) {
    it(`IN-1: body pieces ${name} keep their bytes after later reads`, async () => {
      const { port } = await startServer(holdingApp(delayMs));
      const pieces = [pattern(PIECE, 3), pattern(PIECE, 4), pattern(PIECE, 5), pattern(100, 6)];
      const body = Buffer.concat(pieces);
      const client = await RawClient.connect(port);
      client.socket.setNoDelay(true);
      client.write(reqBytes(`POST /hold HTTP/1.1\nHost: t\nContent-Length: ${body.length}\n\n`));
      for (const [i, piece] of pieces.entries()) {
        client.write(piece);
        await sleep(30);
        await overwrite(port, pattern(PIECE, 10 + i));
      }
      await client.waitForResponses(1);
      expect(finalResponses(client.data)[0]!.body.toString()).toBe(sha256(body));
    });
  }

  it('IN-1: a body read ahead while the app is behind keeps its bytes', async () => {
    // Far more than the input holds, sent while the app waits: the rest is read ahead unparsed.
    const body = pattern(1024 * 1024, 7);
    const { port } = await startServer(holdingApp(300));
    const client = await RawClient.connect(port);
    client.write(reqBytes(`POST /hold HTTP/1.1\nHost: t\nContent-Length: ${body.length}\n\n`));
    client.write(body);
    await sleep(100);
    await overwrite(port, pattern(PIECE, 8));
    await client.waitForResponses(1, 10_000);
    expect(finalResponses(client.data)[0]!.body.toString()).toBe(sha256(body));
  });

  it('UPG-4: the bytes handed over with an upgrade, and those the socket reads next, are the ones sent', async () => {
    let upgraded: Upgraded | null = null;
    const { port } = await startServer((environ, startResponse) => {
      const upgrade = environ['nsgi.upgrade'];
      if (upgrade === undefined) {
        startResponse('200 OK', []);
        return ['other'];
      }
      upgraded = upgrade({ headers: [['Upgrade', 'x-echo']] });
      return [];
    });
    const early = pattern(700, 9);
    const client = await RawClient.connect(port);
    client.write(Buffer.concat([reqBytes(UPGRADE_REQUEST), early]));
    await waitUntil(() => upgraded !== null, 'the upgrade');
    await client.waitForText('\r\n\r\n');
    // Other connections read before the app looks at what it was handed.
    await overwrite(port, pattern(PIECE, 11));
    const { socket, head } = upgraded!;
    expect(Buffer.from(head).equals(early)).toBe(true);
    const later = pattern(3000, 12);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.resume();
    client.write(later);
    await waitUntil(() => Buffer.concat(received).length >= later.length, 'the bytes sent after the upgrade');
    await overwrite(port, pattern(PIECE, 13));
    expect(Buffer.concat(received).equals(later)).toBe(true);
  });

  it('UPG-4: an upgraded socket can be read with async iteration, paused until the app reads', async () => {
    let upgraded: Upgraded | null = null;
    const { port } = await startServer((environ, startResponse) => {
      upgraded = environ['nsgi.upgrade']!({ headers: [['Upgrade', 'x-echo']] });
      return [];
    });
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await waitUntil(() => upgraded !== null, 'the upgrade');
    const sent = [pattern(2000, 14), pattern(2000, 15), pattern(2000, 16)];
    for (const part of sent) {
      client.write(part);
      await sleep(20);
    }
    client.socket.end();
    const received: Buffer[] = [];
    for await (const chunk of upgraded!.socket) received.push(chunk as Buffer);
    expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
  });
});
