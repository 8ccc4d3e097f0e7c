/**
 * The WebSocket helper against peers that do not read what they are sent, and against handshakes
 * from origins that are not allowed, over raw TCP: a client that floods an echo and reads nothing,
 * a client that stops reading, the demo's echo slowing a flooding client down instead of queueing
 * its replies, and the `allowedOrigins` option.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { app as demo } from '../../examples/demo.ts';
import { websocketApp, type WebSocketAppOptions } from '../../src/websocket.ts';
import { RawClient, cleanup, rawRequest, sleep, startServer, waitUntil } from '../helpers/server.ts';
import { clientFrame, serverFrames, wsHandshake } from '../helpers/ws-frames.ts';

afterEach(cleanup);

const MiB = 1024 * 1024;

/** Observed is what the server side of a socket saw: the most bytes queued after a send, and whether it closed. */
interface Observed {
  mostQueued: number;
  closed: boolean;
}

/** echoWatched echoes every message, noting how much is queued after each send and when the socket closes. */
function echoWatched(observed: Observed, options: WebSocketAppOptions): App {
  return websocketApp((ws) => {
    ws.on('message', (data) => {
      // Once closing, ws only counts what is sent (nothing is queued), so only open sockets are measured.
      const open = ws.readyState === ws.OPEN;
      ws.send(data as Buffer);
      if (open) observed.mostQueued = Math.max(observed.mostQueued, ws.bufferedAmount);
    });
    ws.on('close', () => {
      observed.closed = true;
    });
  }, options);
}

/**
 * flood writes `frame` until `total` bytes have gone or the socket is closed, waiting for drain
 * (at most `stallMs` at a time) when the socket says so; it returns the bytes the socket accepted
 * and whether the peer stopped taking them.
 */
async function flood(client: RawClient, frame: Buffer, total: number, stallMs = 1000): Promise<{ sent: number; stalled: boolean }> {
  let sent = 0;
  while (sent < total && !client.closed && !client.socket.destroyed) {
    sent += frame.length;
    if (!client.socket.write(frame)) {
      const drained = await Promise.race([once(client.socket, 'drain').then(() => true, () => false), sleep(stallMs).then(() => false)]);
      if (!drained) return { sent, stalled: !client.closed && !client.socket.destroyed };
    }
  }
  return { sent, stalled: false };
}

describe('a peer that does not read', () => {
  it('is closed with 1008 once more than maxBufferedBytes wait for it, and the queue never grows past the bound', async () => {
    const observed: Observed = { mostQueued: 0, closed: false };
    const message = 32 * 1024;
    const { port, errors } = await startServer(echoWatched(observed, { maxBufferedBytes: MiB }));
    const client = await RawClient.connect(port, { collect: false });
    client.socket.on('error', () => {});
    client.write(wsHandshake());
    // 64 MiB, 64 times the bound; the flood ends early once the server has closed.
    await flood(client, clientFrame(Buffer.alloc(message, 7)), 64 * MiB);
    await waitUntil(() => observed.closed, 'the server to close the flooding socket', 5000);
    expect(errors.join('\n')).toMatch(/closing with 1008: \d+ bytes queued for it, over the bound of 1048576/);
    // Counted on the server: the bound, plus the one message whose send crossed it (and its frame header).
    expect(observed.mostQueued).toBeLessThanOrEqual(MiB + message + 16);
  });

  it('is closed with 1008 once it has taken nothing for sendStallMs, however little is queued', async () => {
    let closed = false;
    const { port, errors } = await startServer(
      websocketApp((ws) => {
        // More than the loopback socket buffers hold, so that some stays queued.
        for (let i = 0; i < 32; i++) ws.send(Buffer.alloc(MiB, 1));
        ws.on('close', () => {
          closed = true;
        });
      }, { maxBufferedBytes: 64 * MiB, sendStallMs: 300 }),
    );
    const client = await RawClient.connect(port, { collect: false });
    client.write(wsHandshake());
    await waitUntil(() => closed, 'the server to close the stalled socket', 5000);
    expect(errors.join('\n')).toMatch(/closing with 1008: it took nothing of its \d+ queued bytes for 300 ms/);
  });

  it('a peer that reads slowly but steadily is not cut by sendStallMs', async () => {
    let closed = false;
    let delivered = false;
    const { port } = await startServer(
      websocketApp((ws) => {
        const message = Buffer.alloc(MiB, 1);
        // The last send's callback runs once every message is in the kernel's hands, or with an error.
        for (let i = 0; i < 64; i++) ws.send(message, i === 63 ? (err) => void (delivered = err === undefined || err === null) : undefined);
        ws.on('close', () => {
          closed = true;
        });
      }, { sendStallMs: 400, maxBufferedBytes: 128 * MiB }),
    );
    const client = await RawClient.connect(port, { collect: false });
    client.write(wsHandshake());
    // Read at most 1 MiB every 100 ms: far slower than the server writes, but never nothing for 400 ms.
    let received = 0;
    let thisTick = 0;
    client.socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      thisTick += chunk.length;
      if (thisTick >= MiB) client.socket.pause();
    });
    while (!delivered && !closed && received < 128 * MiB) {
      await sleep(100);
      thisTick = 0;
      client.socket.resume();
    }
    expect(delivered).toBe(true);
    expect(closed).toBe(false);
  }, 40_000);
});

describe('the demo echo', () => {
  it('stops reading a client that floods it without reading, then echoes everything once the client reads', async () => {
    const { port, errors } = await startServer(demo);
    const client = await RawClient.connect(port, { collect: false });
    client.write(wsHandshake('/ws/echo'));
    const payload = Buffer.alloc(16 * 1024, 0x61);
    const frame = clientFrame(payload);
    const total = 48 * MiB;
    const { sent, stalled } = await flood(client, frame, total);
    // The echo paused: the client could not push its whole flood, and was not dropped either.
    expect(stalled).toBe(true);
    expect(sent).toBeLessThan(total);
    // Now read: every message sent comes back, in full, and the socket stays open.
    let data = Buffer.alloc(0);
    let echoed = 0;
    client.socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (echoed === 0) {
        const end = data.indexOf('\r\n\r\n');
        if (end === -1) return;
        expect(data.subarray(0, 12).toString()).toBe('HTTP/1.1 101');
        data = data.subarray(end + 4);
      }
      const { frames, rest } = serverFrames(data);
      for (const f of frames) echoed += f.payload.length;
      data = data.subarray(rest);
    });
    client.socket.resume();
    const expected = (sent / frame.length) * payload.length;
    await waitUntil(() => echoed >= expected, `${expected} echoed bytes (got ${echoed})`, 20_000);
    expect(echoed).toBe(expected);
    expect(client.closed).toBe(false);
    expect(errors.join('\n')).not.toContain('1008');
  }, 40_000);
});

describe('allowedOrigins', () => {
  const app = (options: WebSocketAppOptions): App => websocketApp(() => {}, options);
  const allowed = { allowedOrigins: ['https://good.example', 'http://localhost:3000'] };

  it('refuses a handshake from an origin not in the list with 403, before the connection is taken', async () => {
    const { port } = await startServer(app(allowed));
    const res = await rawRequest(port, wsHandshake('/', 'Origin: https://evil.example\n'), { until: (d) => d.includes('\r\n\r\n') && d.toString().includes('not allowed') });
    expect(res.text).toMatch(/^HTTP\/1\.1 403 Forbidden/);
    expect(res.text).toContain('origin "https://evil.example" are not allowed');
  });

  it.each(['https://good.example', 'http://localhost:3000'])('accepts %s, which is listed', async (origin) => {
    const { port } = await startServer(app(allowed));
    const res = await rawRequest(port, wsHandshake('/', `Origin: ${origin}\n`), { until: (d) => d.includes('\r\n\r\n') });
    expect(res.text).toMatch(/^HTTP\/1\.1 101 /);
  });

  it('accepts a handshake without Origin, which no browser sends', async () => {
    const { port } = await startServer(app(allowed));
    const res = await rawRequest(port, wsHandshake('/'), { until: (d) => d.includes('\r\n\r\n') });
    expect(res.text).toMatch(/^HTTP\/1\.1 101 /);
  });

  it('is off by default: any origin is accepted', async () => {
    const { port } = await startServer(app({}));
    const res = await rawRequest(port, wsHandshake('/', 'Origin: https://evil.example\n'), { until: (d) => d.includes('\r\n\r\n') });
    expect(res.text).toMatch(/^HTTP\/1\.1 101 /);
  });
});
