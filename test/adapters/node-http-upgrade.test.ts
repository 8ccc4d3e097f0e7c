/**
 * Upgrades through the node:http adapter (SPEC §6): `createNodeServer` and `toNodeUpgradeListener`
 * on real loopback sockets. The WebSocket helper spoken to by the `ws` client; refusals, a 101
 * written from `headers`, the bytes read past the head, request bodies, misuse, the signal, and a
 * server that closes with no socket left behind, over raw TCP.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { toNodeListener, toNodeUpgradeListener, createNodeServer } from '../../src/adapters/node-http.ts';
import { validate } from '../../src/validator.ts';
import { websocketApp } from '../../src/websocket.ts';
import { RawClient, cleanup, finalResponses, header, parseResponses, reqBytes, sleep, waitUntil } from '../helpers/server.ts';
import { UPGRADE_OFFER_CASES, UPGRADE_REQUEST, echoOnUpgrade, type UpgradeRecord } from '../helpers/upgrade.ts';

const servers: http.Server[] = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  await cleanup();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** listen starts `server` on 127.0.0.1, port 0; afterEach closes it. */
async function listen(server: http.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** closeServer closes `server` and resolves once its close() has completed, or rejects after `ms`. */
async function closeServer(server: http.Server, ms = 3000): Promise<void> {
  servers.splice(servers.indexOf(server), 1);
  const closed = new Promise<void>((resolve, reject) => server.close((err) => (err === undefined ? resolve() : reject(err))));
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`server.close() did not complete within ${ms} ms`)), ms).unref());
  await Promise.race([closed, timeout]);
}

const SWITCHED = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\n';


/** openWs connects a `ws` client and resolves once it is open; afterEach terminates it. */
async function openWs(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  clients.push(ws);
  await once(ws, 'open', { signal: AbortSignal.timeout(5000) });
  return ws;
}

/** nextMessage resolves with the next message `ws` receives. */
async function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  const [data, isBinary] = (await once(ws, 'message', { signal: AbortSignal.timeout(5000) })) as [Buffer, boolean];
  return { data, isBinary };
}

describe('WebSockets through createNodeServer', () => {
  it('echoes text and binary messages with the ws client, then closes cleanly', async () => {
    const app = websocketApp((ws) => {
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
    });
    const server = createNodeServer(app, { errors: { write: (m) => expect.fail(m) } });
    const port = await listen(server);
    const ws = await openWs(`ws://127.0.0.1:${port}/chat`);

    const text = nextMessage(ws);
    ws.send('héllo');
    expect(await text).toEqual({ data: Buffer.from('héllo'), isBinary: false });

    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    const binary = nextMessage(ws);
    ws.send(bytes);
    expect(await binary).toEqual({ data: bytes, isBinary: true });

    const big = Buffer.alloc(200 * 1024, 7);
    const large = nextMessage(ws);
    ws.send(big);
    expect((await large).data.equals(big)).toBe(true);

    const closed = once(ws, 'close', { signal: AbortSignal.timeout(5000) });
    ws.close(1000, 'done');
    const [code, reason] = (await closed) as [number, Buffer];
    expect(code).toBe(1000);
    expect(reason.toString()).toBe('done');
    // Nothing is left open: close() completes without closeAllConnections().
    await closeServer(server);
  });

  it('still serves ordinary requests, and answers 426 to a request for the WebSocket path without an upgrade', async () => {
    const port = await listen(createNodeServer(websocketApp(() => {})));
    const res = await fetch(`http://127.0.0.1:${port}/chat`);
    expect(res.status).toBe(426);
    expect(res.headers.get('upgrade')).toBe('websocket');
    expect(res.headers.get('connection')?.toLowerCase()).toContain('upgrade');
    await res.text();
  });

  it('closes WebSockets with 1001 when the server closes, and close() then completes', async () => {
    let environ: Environ | null = null;
    const server = createNodeServer(
      websocketApp((_ws, e) => {
        environ = e;
      }),
    );
    const port = await listen(server);
    const ws = await openWs(`ws://127.0.0.1:${port}/`);
    await waitUntil(() => environ !== null, 'the connection to reach the app');
    const closed = once(ws, 'close', { signal: AbortSignal.timeout(5000) });
    const done = closeServer(server);
    expect(environ!['nsgi.signal'].aborted).toBe(true);
    expect((environ!['nsgi.signal'].reason as { code?: string }).code).toBe('NSGI_SERVER_CLOSING');
    const [code] = (await closed) as [number];
    expect(code).toBe(1001);
    await done;
  });
});

describe('refusing', () => {
  it('UPG-2: writes the app\'s 401 with its body as a whole HTTP/1.1 response, then closes the connection', async () => {
    const errors: string[] = [];
    const app: App = (environ, startResponse) => {
      expect(environ['nsgi.upgrade']).toBeTypeOf('function');
      startResponse('401 Unauthorized', [['Content-Type', 'text/plain'], ['WWW-Authenticate', 'Bearer']]);
      return ['who are you?\n'];
    };
    const server = createNodeServer(validate(app), { errors: { write: (m) => void errors.push(m) } });
    const port = await listen(server);
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForResponses(1);
    const [refused] = finalResponses(client.data);
    expect(refused?.statusLine).toBe('HTTP/1.1 401 Unauthorized');
    expect(header(refused!, 'www-authenticate')).toBe('Bearer');
    expect(header(refused!, 'date')).toMatch(/ GMT$/);
    expect(header(refused!, 'connection')).toBe('close');
    expect(header(refused!, 'upgrade')).toBeUndefined();
    expect(refused?.body.toString()).toBe('who are you?\n');
    await client.waitForClose();
    expect(errors).toEqual([]);
    await closeServer(server);
  });

  it('UPG-2: streams a refusal of unknown length with chunked coding, and answers HEAD without a body', async () => {
    const port = await listen(
      createNodeServer((_environ, startResponse) => {
        startResponse('403 Forbidden', [['Content-Type', 'text/plain']]);
        return (async function* () {
          yield 'not ';
          await sleep(10);
          yield 'you';
        })();
      }),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForResponses(1);
    const [refused] = finalResponses(client.data);
    expect(header(refused!, 'transfer-encoding')).toBe('chunked');
    expect(refused?.body.toString()).toBe('not you');

    const head = await RawClient.connect(port);
    head.write(UPGRADE_REQUEST.replace('GET', 'HEAD'));
    await head.waitForClose();
    const [headResponse] = finalResponses(head.data, { noBody: () => true });
    expect(headResponse?.status).toBe(403);
    expect(headResponse?.body.length).toBe(0);
    expect(head.text.endsWith('\r\n\r\n')).toBe(true);
  });

  it('UPG-2: waits for the socket to drain while writing a large refusal to a client that does not read yet', async () => {
    let pulled = 0;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const chunks = 128; // 8 MiB
    const port = await listen(
      createNodeServer((_environ, startResponse) => {
        startResponse('403 Forbidden', [['Content-Type', 'application/octet-stream']]);
        return (function* () {
          for (let i = 0; i < chunks; i++) {
            pulled++;
            yield chunk;
          }
        })();
      }),
    );
    const client = await RawClient.connect(port, { collect: false });
    client.write(UPGRADE_REQUEST);
    await waitUntil(() => pulled > 0, 'the first chunk');
    await sleep(200);
    const stalled = pulled;
    await sleep(100);
    // The generator is suspended while the client reads nothing (BODY-12).
    expect(pulled).toBe(stalled);
    expect(pulled).toBeLessThan(chunks);
    let received = 0;
    client.socket.on('data', (data: Buffer) => (received += data.length));
    client.socket.resume();
    await once(client.socket, 'close', { signal: AbortSignal.timeout(5000) });
    expect(pulled).toBe(chunks);
    expect(received).toBeGreaterThan(chunks * chunk.length);
  });

  it('UPG-2: closes the refusal\'s body and fires the signal when the client leaves mid-response', async () => {
    let closed = false;
    let signal: AbortSignal | null = null;
    const port = await listen(
      createNodeServer((environ, startResponse) => {
        signal = environ['nsgi.signal'];
        startResponse('403 Forbidden', [['Content-Type', 'text/plain']]);
        return (async function* () {
          try {
            for (;;) {
              yield 'still refusing\n';
              await sleep(5);
            }
          } finally {
            closed = true;
          }
        })();
      }),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('still refusing');
    client.destroy();
    await waitUntil(() => closed && signal!.aborted, 'return() and nsgi.signal after the client left');
    expect((signal!.reason as { code?: string }).code).toBe('NSGI_CLIENT_GONE');
  });

  it('UPG-2: answers 500 when the app fails before its head', async () => {
    const errors: string[] = [];
    const port = await listen(
      createNodeServer(
        () => {
          throw new Error('boom');
        },
        { errors: { write: (m) => void errors.push(m) } },
      ),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]?.status).toBe(500);
    expect(errors.join('\n')).toContain('boom');
  });
});

describe('accepting', () => {
  it('UPG-3, UPG-5: writes the 101 from `headers`, exactly, and hands over a socket that then echoes', async () => {
    const port = await listen(createNodeServer(echoOnUpgrade()));
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    expect(client.text).toBe(SWITCHED);
    client.write(Buffer.from([0, 1, 2, 255]));
    client.write(Buffer.from('and text'));
    await client.waitFor((data) => data.length >= SWITCHED.length + 12, 'the echo');
    expect(client.data.subarray(SWITCHED.length)).toEqual(Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from('and text')]));
  });

  it('UPG-5: lets the app write the 101 itself when no headers are given', async () => {
    const port = await listen(
      createNodeServer((environ) => {
        const { socket } = environ['nsgi.upgrade']!();
        socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-own\r\n\r\nbye');
        return [];
      }),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForClose();
    expect(client.text).toBe('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-own\r\n\r\nbye');
  });

  it('UPG-4: hands the bytes sent right after the head to the app as `head`, with the socket paused', async () => {
    const record: UpgradeRecord = {};
    let pausedAtUpgrade: boolean | null = null;
    const app = echoOnUpgrade(record);
    const port = await listen(
      createNodeServer((environ, startResponse) => {
        const upgrade = environ['nsgi.upgrade']!;
        environ['nsgi.upgrade'] = (options) => {
          const upgraded = upgrade(options);
          pausedAtUpgrade = upgraded.socket.isPaused();
          return upgraded;
        };
        return app(environ, startResponse);
      }),
    );
    const early = Buffer.from('GET /not-a-request HTTP/1.1\r\n\r\n\x00\x01binary');
    const client = await RawClient.connect(port);
    // One write: node:http reads the head and these bytes in the same chunk.
    client.write(Buffer.concat([reqBytes(UPGRADE_REQUEST), early]));
    await client.waitFor((data) => data.includes(early), 'the early bytes echoed');
    expect(record.head).toEqual(early);
    expect(pausedAtUpgrade).toBe(true);
    // No second request was parsed from them: only the 101 came back, then the echo.
    expect(client.data).toEqual(Buffer.concat([Buffer.from(SWITCHED), early]));
  });

  it('UPG-4, SRV-5: answers an upgrade pipelined behind another request after that request\'s response', async () => {
    const record: UpgradeRecord = {};
    const echo = echoOnUpgrade(record);
    const port = await listen(
      createNodeServer(async (environ, startResponse) => {
        if (environ['nsgi.upgrade'] !== undefined) return echo(environ, startResponse);
        await sleep(50);
        startResponse('200 OK', [['Content-Type', 'text/plain'], ['Content-Length', '5']]);
        return ['first'];
      }),
    );
    const client = await RawClient.connect(port);
    // One write: node:http hands over the upgrade while the first response is still to come.
    client.write(Buffer.concat([reqBytes('GET /first HTTP/1.1\nHost: t\n\n'), reqBytes(UPGRADE_REQUEST), Buffer.from('early')]));
    await client.waitForText(SWITCHED + 'early');
    const [first, switched] = parseResponses(client.data);
    expect(first?.status).toBe(200);
    expect(first?.body.toString()).toBe('first');
    expect(switched?.status).toBe(101);
    expect(client.text.endsWith(SWITCHED + 'early')).toBe(true);
    expect(record.head?.toString()).toBe('early');
  });

  it('UPG-4: hands over, as `head`, bytes that arrived while the app was deciding', async () => {
    const record: UpgradeRecord = {};
    const app = echoOnUpgrade(record);
    let arrived!: () => void;
    const gate = new Promise<void>((resolve) => (arrived = resolve));
    const port = await listen(
      createNodeServer(async (environ, startResponse) => {
        await gate;
        return app(environ, startResponse);
      }),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await sleep(50);
    client.write('sent before the 101');
    await sleep(50);
    arrived();
    await client.waitForText('sent before the 101');
    expect(record.head?.toString()).toBe('sent before the 101');
    expect(client.text).toBe(SWITCHED + 'sent before the 101');
  });

  it('UPG-4: lets the app read a Content-Length or chunked body before upgrading; the body is not in `head`', async () => {
    const seen: string[] = [];
    const record: UpgradeRecord = {};
    const app = echoOnUpgrade(record);
    const port = await listen(
      createNodeServer(async (environ, startResponse) => {
        seen.push(await environ['nsgi.input'].text());
        return app(environ, startResponse);
      }),
    );
    const withLength = await RawClient.connect(port);
    withLength.write(`POST / HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: x-echo\nContent-Length: 5\n\nhelloAFTER`);
    await withLength.waitForText('AFTER');
    expect(seen).toEqual(['hello']);
    expect(record.head?.toString()).toBe('AFTER');
    expect(withLength.text).toBe(SWITCHED + 'AFTER');

    const chunked = await RawClient.connect(port);
    chunked.write(`POST / HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: x-echo\nTransfer-Encoding: chunked\n\n`);
    await sleep(20);
    chunked.write(Buffer.from('3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT'));
    await chunked.waitForText('NEXT');
    expect(seen).toEqual(['hello', 'abcde']);
    expect(record.head?.toString()).toBe('NEXT');
  });

  it('fails the read of a body whose length node:http took but nsgi\'s parser refuses, and goes on', async () => {
    const port = await listen(
      createNodeServer(async (environ, startResponse) => {
        const codes: Array<string | undefined> = [];
        await environ['nsgi.input'].text().catch((err: { code?: string }) => codes.push(err.code));
        try {
          environ['nsgi.upgrade']!();
        } catch (err) {
          codes.push((err as { code?: string }).code);
        }
        startResponse('400 Bad Request', [['Content-Type', 'text/plain']]);
        return [codes.join(' ')];
      }),
    );
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: x-echo\nContent-Length: 1000000000000000\n\nabc');
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]?.body.toString()).toBe('NSGI_BAD_CONTENT_LENGTH NSGI_UPGRADE_WITH_BODY');
  });

  it('sends 100 Continue at the first read of an upgrade request\'s body', async () => {
    const port = await listen(
      createNodeServer(async (environ, startResponse) => {
        const text = await environ['nsgi.input'].text();
        startResponse('200 OK', [['Content-Type', 'text/plain']]);
        return [`read ${text}`];
      }),
    );
    const client = await RawClient.connect(port);
    client.write('PUT / HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: x-echo\nExpect: 100-continue\nContent-Length: 2\n\n');
    await client.waitForText('100 Continue');
    client.write('hi');
    await client.waitForResponses(1);
    expect(finalResponses(client.data)[0]?.body.toString()).toBe('read hi');
  });

  it('UPG-3: throws from upgrade() before the body is read, and after flushHead() has sent the head', async () => {
    const codes: Array<string | undefined> = [];
    const port = await listen(
      createNodeServer((environ, startResponse) => {
        const upgrade = environ['nsgi.upgrade']!;
        try {
          upgrade({ headers: [] });
        } catch (err) {
          codes.push((err as { code?: string }).code);
        }
        const write = startResponse('200 OK', [['Content-Type', 'text/plain']]);
        write.flushHead();
        try {
          upgrade({ headers: [] });
        } catch (err) {
          codes.push((err as { code?: string }).code);
        }
        return [`refused: ${codes.join(', ')}\n`];
      }),
    );
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: x-echo\nContent-Length: 3\n\nabc');
    await client.waitForResponses(1);
    const [response] = finalResponses(client.data);
    expect(response?.status).toBe(200);
    expect(response?.body.toString()).toBe('refused: NSGI_UPGRADE_WITH_BODY, NSGI_UPGRADE_AFTER_HEAD\n');
  });

  it('UPG-6: makes startResponse throw and write() reject after the upgrade, and ignores the body', async () => {
    let startError: unknown;
    let writeError: unknown;
    let bodyClosed = false;
    const port = await listen(
      createNodeServer((environ, startResponse) => {
        const write = startResponse('200 OK', []);
        const { socket } = environ['nsgi.upgrade']!({ headers: [['Upgrade', 'x-echo']] });
        try {
          startResponse('200 OK', []);
        } catch (err) {
          startError = err;
        }
        write('never sent').catch((err: unknown) => (writeError = err));
        socket.on('end', () => socket.end());
        socket.resume();
        return {
          [Symbol.iterator]() {
            return this;
          },
          next: () => ({ done: false, value: 'never sent' }),
          return: () => {
            bodyClosed = true;
            return { done: true, value: undefined };
          },
        } as Iterable<string> & Iterator<string>;
      }),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    await waitUntil(() => writeError !== undefined && bodyClosed, 'write() to reject and the body to be closed');
    await sleep(50);
    expect(client.text).toBe(SWITCHED);
    expect((startError as { code?: string }).code).toBe('NSGI_START_RESPONSE_AFTER_END');
    expect(writeError).toBeInstanceOf(Error);
  });
});

describe('when the hook is offered', () => {
  for (const { name, request, offered } of UPGRADE_OFFER_CASES) {
    it(`UPG-1: ${offered ? 'offers' : 'does not offer'} nsgi.upgrade for ${name}`, async () => {
      const port = await listen(
        createNodeServer((environ, startResponse) => {
          startResponse('200 OK', [['Content-Type', 'text/plain']]);
          return [String(typeof environ['nsgi.upgrade'] === 'function')];
        }),
      );
      const client = await RawClient.connect(port);
      client.write(request);
      await client.waitForResponses(1);
      expect(finalResponses(client.data)[0]?.body.toString()).toBe(String(offered));
    });
  }
});

describe('the signal and the connection\'s life', () => {
  it('UPG-7: fires nsgi.signal when the upgraded socket closes', async () => {
    const record: UpgradeRecord = {};
    const port = await listen(createNodeServer(echoOnUpgrade(record)));
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    const signal = record.environ!['nsgi.signal'];
    expect(signal.aborted).toBe(false);
    client.destroy();
    await waitUntil(() => signal.aborted, 'nsgi.signal after the client left', 2000);
    expect((signal.reason as { code?: string }).code).toBe('NSGI_CLIENT_GONE');
  });

  it('UPG-7: fires nsgi.signal when the client leaves while the app is still deciding', async () => {
    let signal: AbortSignal | null = null;
    const port = await listen(
      createNodeServer((environ) => {
        signal = environ['nsgi.signal'];
        return new Promise(() => {});
      }),
    );
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await waitUntil(() => signal !== null, 'the app to be called');
    // A FIN alone counts as leaving (ENV-27).
    client.socket.end();
    await waitUntil(() => signal!.aborted, 'nsgi.signal after the FIN', 2000);
    await client.waitForClose();
  });

  it('UPG-7: lets the app end the connection when close() fires the signal, and close() then completes', async () => {
    const server = createNodeServer((environ) => {
      const { socket } = environ['nsgi.upgrade']!({ headers: [['Upgrade', 'x-polite']] });
      environ['nsgi.signal'].addEventListener('abort', () => socket.end('goodbye\n'));
      socket.on('end', () => socket.end());
      socket.resume();
      return [];
    });
    const port = await listen(server);
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    const closing = closeServer(server);
    await client.waitForClose();
    expect(client.text.endsWith('\r\n\r\ngoodbye\n')).toBe(true);
    client.socket.end();
    await closing;
  });
});

describe('toNodeUpgradeListener', () => {
  it('serves upgrades on a server built by hand, beside toNodeListener', async () => {
    const app = echoOnUpgrade();
    const server = http.createServer(toNodeListener(app));
    server.on('upgrade', toNodeUpgradeListener(app));
    const port = await listen(server);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('plain http\n');
    const client = await RawClient.connect(port);
    client.write(UPGRADE_REQUEST);
    await client.waitForText('\r\n\r\n');
    client.write('ping');
    await client.waitForText('ping');
    expect(parseResponses(client.data)[0]?.status).toBe(101);
  });

  it('refuses a non-function app', () => {
    expect(() => toNodeUpgradeListener('nope' as unknown as App)).toThrow(TypeError);
  });
});
