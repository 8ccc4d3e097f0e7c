/**
 * The upgrade hook itself (SPEC §6), over raw TCP with hand-written bytes: when it is offered, a
 * refusal that leaves the connection HTTP, an acceptance whose 101 the server writes, the
 * pipelined bytes handed over as `head`, the misuse that throws, and an upgraded connection during
 * a graceful shutdown.
 */

import { afterEach, describe, expect, it } from 'vitest';
import type { Environ } from '../../protocol/nsgi.ts';
import { RawClient, cleanup, finalResponses, header, parseResponses, rawRequest, sleep, startServer, untilResponses, waitUntil } from '../helpers/server.ts';
import { UPGRADE_OFFER_CASES, UPGRADE_REQUEST, echoOnUpgrade } from '../helpers/upgrade.ts';

afterEach(cleanup);

describe('when the hook is offered', () => {
  for (const { name, request, offered } of UPGRADE_OFFER_CASES) {
    it(`UPG-1: ${offered ? 'offers' : 'does not offer'} nsgi.upgrade for ${name}`, async () => {
      const { port } = await startServer((environ, startResponse) => {
        startResponse('200 OK', [['Content-Type', 'text/plain']]);
        return [String(typeof environ['nsgi.upgrade'] === 'function')];
      });
      const result = await rawRequest(port, request, { until: untilResponses(1) });
      expect(finalResponses(result.data)[0]?.body.toString()).toBe(String(offered));
    });
  }
});

describe('refusing', () => {
  it('UPG-2: answers the app\'s 401 and keeps the connection for the next request', async () => {
    const { port } = await startServer((environ, startResponse) => {
      if (environ['nsgi.upgrade'] !== undefined && environ.HTTP_AUTHORIZATION !== 'Bearer s3cret') {
        startResponse('401 Unauthorized', [['Content-Type', 'text/plain'], ['WWW-Authenticate', 'Bearer']]);
        return ['who are you?\n'];
      }
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`second request on the same connection: ${environ.PATH_INFO}\n`];
    });
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForResponses(1);
    client.write('GET /next HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(2);
    const [refused, next] = finalResponses(client.data);
    expect(refused?.status).toBe(401);
    expect(header(refused!, 'connection')).toBeUndefined();
    expect(refused?.body.toString()).toBe('who are you?\n');
    expect(next?.status).toBe(200);
    expect(next?.body.toString()).toBe('second request on the same connection: /next\n');
    expect(client.closed).toBe(false);
  });
});

describe('accepting', () => {
  it('UPG-3, UPG-5, UPG-8: writes the 101 with the app\'s headers and hands over the socket, which then echoes', async () => {
    const { port } = await startServer(echoOnUpgrade());
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    const [switched] = parseResponses(client.data);
    expect(switched?.statusLine).toBe('HTTP/1.1 101 Switching Protocols');
    expect(header(switched!, 'upgrade')).toBe('x-echo');
    expect(header(switched!, 'connection')).toBe('Upgrade');
    const headLength = switched!.head.length;
    client.write(Buffer.from([0, 1, 2, 255]));
    client.write(Buffer.from('and text'));
    await client.waitFor((data) => data.length >= headLength + 12, 'the echo');
    expect(client.data.subarray(headLength)).toEqual(Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from('and text')]));
  });

  it('UPG-4: hands the bytes pipelined right after the request head to the app as `head`', async () => {
    const record: { head?: Buffer } = {};
    const { port } = await startServer(echoOnUpgrade(record));
    const early = Buffer.from('GET /not-a-request HTTP/1.1\r\n\r\n\x00\x01binary');
    const client = await RawClient.connect(port);
    // One write: the server reads the head and these bytes in the same chunk.
    client.write(Buffer.concat([Buffer.from(UPGRADE_REQUEST.replace(/\n/g, '\r\n')), early]));
    await client.waitFor((data) => data.includes(early), 'the early bytes echoed');
    expect(record.head).toEqual(early);
    // The server parsed no second request from them: only the 101 came back, then the echo.
    const switched = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\n';
    expect(client.data).toEqual(Buffer.concat([Buffer.from(switched), early]));
  });

  it('UPG-5: lets the app write the 101 itself when no headers are given', async () => {
    const { port } = await startServer((environ) => {
      const { socket } = environ['nsgi.upgrade']!();
      socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-own\r\n\r\nbye');
      return [];
    });
    const result = await rawRequest(port, UPGRADE_REQUEST);
    expect(result.text).toBe('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-own\r\n\r\nbye');
  });

  it('UPG-5: leaves a Content-Length the app gives out of the 101, as out of any 1xx (RFC 9110 §8.6)', async () => {
    const { port } = await startServer((environ) => {
      const { socket } = environ['nsgi.upgrade']!({ headers: [['Content-Length', '3'], ['X-Kept', '1']] });
      socket.end('bye');
      return [];
    });
    const result = await rawRequest(port, UPGRADE_REQUEST);
    expect(result.text).toBe('HTTP/1.1 101 Switching Protocols\r\nX-Kept: 1\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\nbye');
  });

  it('UPG-3: throws from upgrade() once flushHead() has sent the head, and the response goes on', async () => {
    let thrown: unknown;
    const { port } = await startServer((environ, startResponse) => {
      const write = startResponse('200 OK', [['Content-Type', 'text/plain']]);
      write.flushHead();
      try {
        environ['nsgi.upgrade']!({ headers: [] });
      } catch (err) {
        thrown = err;
      }
      return [`upgrade refused: ${(thrown as { code?: string } | undefined)?.code}\n`];
    });
    const result = await rawRequest(port, UPGRADE_REQUEST, { until: untilResponses(1) });
    const [response] = finalResponses(result.data);
    expect(response?.status).toBe(200);
    expect(response?.body.toString()).toBe('upgrade refused: NSGI_UPGRADE_AFTER_HEAD\n');
    expect(thrown).toBeInstanceOf(Error);
  });

  it('UPG-6: makes startResponse throw after the upgrade and ignores the returned body', async () => {
    let startError: unknown;
    let bodyClosed = false;
    const { port } = await startServer((environ, startResponse) => {
      const { socket } = environ['nsgi.upgrade']!({ headers: [] });
      try {
        startResponse('200 OK', []);
      } catch (err) {
        startError = err;
      }
      // The socket allows half-open connections: the app ends its side when the client ends its.
      socket.on('end', () => socket.end());
      socket.resume();
      return (function* () {
        try {
          yield 'never sent';
        } finally {
          bodyClosed = true;
        }
      })();
    });
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    await sleep(100);
    expect(client.text).toBe('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\n');
    expect(startError).toBeInstanceOf(Error);
    // The body was never started, so closing it has nothing to run; what matters is nothing was sent.
    expect(bodyClosed).toBe(false);
  });
});

describe('an upgraded connection and the server\'s life', () => {
  it('UPG-7, SRV-28: fires nsgi.signal when the server begins to close, and destroys the socket at the deadline', async () => {
    const record: { environ?: Environ } = {};
    const started = await startServer(echoOnUpgrade(record));
    const client = await RawClient.connect(started.port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    const signal = record.environ!['nsgi.signal'];
    expect(signal.aborted).toBe(false);

    const closeStarted = Date.now();
    const closed = started.server.close({ timeout: 400 });
    expect(signal.aborted).toBe(true);
    expect((signal.reason as { code?: string }).code).toBe('NSGI_SERVER_CLOSING');
    // The app ignores the signal: the connection stays open, and still echoes, until the deadline.
    client.write('still here');
    await client.waitForText('still here', 300);
    expect(client.closed).toBe(false);
    await client.waitForClose(2000);
    await closed;
    expect(Date.now() - closeStarted).toBeGreaterThanOrEqual(350);
    expect(Date.now() - closeStarted).toBeLessThan(2000);
  });

  it('UPG-7: lets the app end the connection itself when the signal fires, and close() then resolves early', async () => {
    const started = await startServer((environ) => {
      const { socket } = environ['nsgi.upgrade']!({ headers: [['Upgrade', 'x-polite']] });
      environ['nsgi.signal'].addEventListener('abort', () => socket.end('goodbye\n'));
      socket.resume();
      return [];
    });
    const client = await RawClient.connect(started.port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    const closeStarted = Date.now();
    await started.server.close({ timeout: 5000 });
    expect(Date.now() - closeStarted).toBeLessThan(2000);
    await client.waitForClose(1000);
    expect(client.text.endsWith('\r\n\r\ngoodbye\n')).toBe(true);
  });

  it('UPG-7: fires nsgi.signal when the upgraded socket closes', async () => {
    const record: { environ?: Environ } = {};
    const { port } = await startServer(echoOnUpgrade(record));
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    const signal = record.environ!['nsgi.signal'];
    client.destroy();
    await waitUntil(() => signal.aborted, 'nsgi.signal after the client left', 2000);
    expect((signal.reason as { code?: string }).code).toBe('NSGI_CLIENT_GONE');
  });
});

describe('the access log', () => {
  it('logs an accepted upgrade with status 101', async () => {
    const lines: string[] = [];
    const { port } = await startServer(echoOnUpgrade(), { accessLog: (line) => void lines.push(line) });
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    await waitUntil(() => lines.length > 0, 'an access-log line', 500);
    expect(lines[0]).toMatch(/"GET \/echo HTTP\/1\.1" 101 /);
  });

  it('logs a refused upgrade like any response', async () => {
    const lines: string[] = [];
    const { port } = await startServer((_environ, startResponse) => {
      startResponse('401 Unauthorized', [['Content-Length', '0']]);
      return [];
    }, { accessLog: (line) => void lines.push(line) });
    await rawRequest(port, UPGRADE_REQUEST, { until: untilResponses(1) });
    await waitUntil(() => lines.length > 0, 'an access-log line', 2000);
    expect(lines[0]).toMatch(/"GET \/echo HTTP\/1\.1" 401 /);
  });
});
