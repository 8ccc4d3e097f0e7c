/**
 * The WebSocket helper on the real server, spoken to by the `ws` client and, where the point is
 * bytes `ws` would never send, by raw TCP: echo, a thousand clients at once, refusals, malformed
 * handshakes, shutdown with 1001, subprotocols, maxPayload, permessage-deflate and the heartbeat.
 */

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { App } from '../../protocol/nsgi.ts';
import { acceptWebSocket, websocketApp, type WebSocketAppOptions } from '../../src/websocket.ts';
import {
  cleanup,
  finalResponses,
  header,
  parseResponses,
  RawClient,
  reqBytes,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

const clients = new Set<WebSocket>();

afterEach(async () => {
  for (const ws of clients) ws.terminate();
  clients.clear();
  await cleanup();
});

/** echoApp echoes every message, text as text and binary as binary. */
function echoApp(options: WebSocketAppOptions = {}): App {
  return websocketApp((ws) => {
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  }, options);
}

/** wsUrl turns a server's http URL into a ws URL with `path`. */
function wsUrl(url: string, path = '/'): string {
  return url.replace(/^http/, 'ws') + path;
}

const inboxes = new WeakMap<WebSocket, Array<{ data: Buffer; isBinary: boolean }>>();

/**
 * connect makes a `ws` client that afterEach terminates. Its messages are queued from the start,
 * since a message sent by the server on open can arrive in the same packet as the 101.
 */
function connect(url: string, protocols: string[] = [], options: ConstructorParameters<typeof WebSocket>[2] = {}): WebSocket {
  const ws = new WebSocket(url, protocols, options);
  clients.add(ws);
  const inbox: Array<{ data: Buffer; isBinary: boolean }> = [];
  inboxes.set(ws, inbox);
  ws.on('message', (data: Buffer, isBinary: boolean) => inbox.push({ data, isBinary }));
  // terminate() on a socket still connecting emits an error; the tests look at what they expect.
  ws.on('error', () => {});
  return ws;
}

/** open connects a `ws` client and resolves once it is open; it rejects on error or after `timeoutMs`. */
function open(url: string, protocols: string[] = [], options: ConstructorParameters<typeof WebSocket>[2] = {}, timeoutMs = 5000): Promise<WebSocket> {
  const ws = connect(url, protocols, options);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no open within ${timeoutMs} ms`)), timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** nextMessage resolves with the next message not yet taken, or rejects after `timeoutMs`. */
async function nextMessage(ws: WebSocket, timeoutMs = 5000): Promise<{ data: Buffer; isBinary: boolean }> {
  const inbox = inboxes.get(ws)!;
  await waitUntil(() => inbox.length > 0, 'a message', timeoutMs);
  return inbox.shift()!;
}

/** closed resolves with the close code and reason a client sees, or rejects after `timeoutMs`. */
async function closed(ws: WebSocket, timeoutMs = 5000): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) throw new Error('already closed');
  const [code, reason] = (await once(ws, 'close', { signal: AbortSignal.timeout(timeoutMs) })) as [number, Buffer];
  return { code, reason: reason.toString() };
}

/** handshake is a valid handshake request for raw TCP, with `extra` header lines. */
function handshake(extra = '', first = 'GET /ws HTTP/1.1', key = 'dGhlIHNhbXBsZSBub25jZQ=='): string {
  const keyLine = key === '' ? '' : `Sec-WebSocket-Key: ${key}\n`;
  return `${first}\nHost: t\nConnection: Upgrade\nUpgrade: websocket\n${keyLine}Sec-WebSocket-Version: 13\n${extra}\n`;
}

describe('echo', () => {
  it('echoes text as text and binary as binary', async () => {
    const { url } = await startServer(echoApp());
    const ws = await open(wsUrl(url));
    ws.send('hello, nsgi');
    expect(await nextMessage(ws)).toEqual({ data: Buffer.from('hello, nsgi'), isBinary: false });
    const bytes = Buffer.from([0, 1, 2, 128, 255]);
    ws.send(bytes);
    expect(await nextMessage(ws)).toEqual({ data: bytes, isBinary: true });
    const big = Buffer.alloc(200_000, 7);
    ws.send(big);
    expect((await nextMessage(ws)).data.equals(big)).toBe(true);
    ws.close(1000);
    expect((await closed(ws)).code).toBe(1000);
  });

  it('speaks the same handshake the RFC 6455 example shows (Sec-WebSocket-Accept)', async () => {
    const { port } = await startServer(echoApp());
    const client = await RawClient.connect(port);
    client.write(handshake());
    await client.waitForText('\r\n\r\n');
    const [switched] = parseResponses(client.data);
    expect(switched?.status).toBe(101);
    // RFC 6455 §1.3: this key gives this accept value.
    expect(header(switched!, 'sec-websocket-accept')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    expect(header(switched!, 'sec-websocket-extensions')).toBeUndefined();
    expect(header(switched!, 'sec-websocket-protocol')).toBeUndefined();
  });

  it('UPG-4: hands frames pipelined right behind the handshake to ws', async () => {
    const { port } = await startServer(echoApp());
    const client = await RawClient.connect(port);
    // A masked text frame "Hi" (mask 0x01020304) in the same write as the handshake.
    const frame = Buffer.from([0x81, 0x82, 1, 2, 3, 4, 'H'.charCodeAt(0) ^ 1, 'i'.charCodeAt(0) ^ 2]);
    client.write(Buffer.concat([Buffer.from(handshake().replace(/\n/g, '\r\n')), frame]));
    await client.waitFor((data) => data.includes(Buffer.from([0x81, 0x02, 0x48, 0x69])), 'the echoed frame');
  });

  it('serves 1,000 concurrent connections, each echoing 10 messages', { timeout: 60_000 }, async () => {
    let openNow = 0;
    let openMost = 0;
    const app = websocketApp((ws) => {
      openMost = Math.max(openMost, ++openNow);
      ws.on('close', () => openNow--);
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
    });
    const { url } = await startServer(app);
    const CONNECTIONS = 1000;
    const MESSAGES = 10;
    // Every client is open before any sends, so the server holds all 1,000 at once.
    const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, () => open(wsUrl(url), [], {}, 20_000)));
    await waitUntil(() => openNow === CONNECTIONS, 'the server to see every connection', 5000);
    const exchange = async (ws: WebSocket, n: number): Promise<string[]> => {
      for (let i = 0; i < MESSAGES; i++) ws.send(`${n}:${i}`);
      const got: string[] = [];
      for (let i = 0; i < MESSAGES; i++) got.push(String((await nextMessage(ws, 20_000)).data));
      return got;
    };
    const echoed = await Promise.all(sockets.map((ws, n) => exchange(ws, n)));
    echoed.forEach((got, n) => expect(got).toEqual(Array.from({ length: MESSAGES }, (_, i) => `${n}:${i}`)));
    expect(openMost).toBe(CONNECTIONS);
    await Promise.all(
      sockets.map((ws) => {
        const done = closed(ws, 20_000);
        ws.close(1000);
        return done;
      }),
    );
    await waitUntil(() => openNow === 0, 'the server to see every connection close', 5000);
  });
});

describe('refusing', () => {
  it('UPG-2: gives a refused upgrade the app\'s status, and the connection stays HTTP', async () => {
    const app: App = (environ, startResponse) => {
      if (environ.HTTP_AUTHORIZATION !== 'Bearer s3cret') {
        startResponse('401 Unauthorized', [['Content-Type', 'text/plain'], ['WWW-Authenticate', 'Bearer']]);
        return ['who are you?\n'];
      }
      return acceptWebSocket(environ, startResponse, (ws) => ws.send('welcome'));
    };
    const { url, port } = await startServer(app);

    const refused = connect(wsUrl(url));
    const [, response] = (await once(refused, 'unexpected-response', { signal: AbortSignal.timeout(5000) })) as [unknown, { statusCode: number }];
    expect(response.statusCode).toBe(401);

    const admitted = await open(wsUrl(url), [], { headers: { Authorization: 'Bearer s3cret' } });
    expect(String((await nextMessage(admitted)).data)).toBe('welcome');

    const client = await RawClient.connect(port);
    client.write(handshake());
    client.write('GET /after HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(2);
    expect(finalResponses(client.data).map((r) => r.status)).toEqual([401, 401]);
  });

  it('SR-9, SR-11: answers a request that is no handshake with 426, or with the fallback app', async () => {
    const bare = await startServer(echoApp());
    const res = await fetch(`${bare.url}/`);
    expect(res.status).toBe(426);
    // RFC 9110 §15.5.22: the 426 names the protocol, with the upgrade connection option.
    expect(res.headers.get('upgrade')).toBe('websocket');
    expect(res.headers.get('connection')).toBe('upgrade');
    expect(await res.text()).toContain('WebSocket');

    const withFallback = await startServer(
      echoApp({
        fallback: (environ, startResponse) => {
          startResponse('200 OK', [['Content-Type', 'text/plain']]);
          return [`page at ${environ.PATH_INFO}`];
        },
      }),
    );
    expect(await (await fetch(`${withFallback.url}/room`)).text()).toBe('page at /room');
  });

  const malformed: Array<{ name: string; request: string; reason: RegExp }> = [
    { name: 'a wrong Sec-WebSocket-Version', request: handshake().replace('Version: 13', 'Version: 12'), reason: /Sec-WebSocket-Version field must be 13, got "12"/ },
    { name: 'no Sec-WebSocket-Version', request: handshake().replace('Sec-WebSocket-Version: 13\n', ''), reason: /Sec-WebSocket-Version field must be 13, got ""/ },
    { name: 'no Sec-WebSocket-Key', request: handshake('', 'GET /ws HTTP/1.1', ''), reason: /Sec-WebSocket-Key field is missing/ },
    { name: 'a Sec-WebSocket-Key that is not 16 bytes of base64', request: handshake('', 'GET /ws HTTP/1.1', 'c2hvcnQ='), reason: /Sec-WebSocket-Key field must be 16 bytes in base64, got "c2hvcnQ="/ },
    { name: 'POST', request: handshake('Content-Length: 0\n', 'POST /ws HTTP/1.1'), reason: /must use GET, not "POST"/ },
    { name: 'a malformed Sec-WebSocket-Protocol', request: handshake('Sec-WebSocket-Protocol: chat, , x y\n'), reason: /Sec-WebSocket-Protocol field must be a list of tokens/ },
    { name: 'a body', request: handshake('Content-Length: 2\n') + 'hi', reason: /must not have a body/ },
  ];
  for (const { name, request, reason } of malformed) {
    it(`answers 400 with the reason to a handshake with ${name}, and keeps the connection HTTP`, async () => {
      const fallback: App = (_environ, startResponse) => {
        startResponse('200 OK', [['Content-Type', 'text/plain']]);
        return ['still http'];
      };
      const { port, errors } = await startServer(echoApp({ fallback }));
      const client = await RawClient.connect(port);
      client.write(request);
      client.write('GET /after HTTP/1.1\nHost: t\n\n');
      await client.waitFor(untilResponses(2), 'the 400 and the next response');
      const [bad, after] = finalResponses(client.data);
      expect(bad?.status).toBe(400);
      expect(bad?.body.toString()).toMatch(reason);
      if (name.includes('Version')) expect(header(bad!, 'sec-websocket-version')).toBe('13');
      expect(after?.status).toBe(200);
      expect(after?.body.toString()).toBe('still http');
      expect(errors).toEqual([]);
    });
  }

  it('answers 400 to a malformed Sec-WebSocket-Extensions when permessage-deflate is on', async () => {
    const { port } = await startServer(echoApp({ perMessageDeflate: true }));
    const client = await RawClient.connect(port);
    client.write(handshake('Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=99\n'));
    await client.waitForResponses(1);
    const [bad] = finalResponses(client.data);
    expect(bad?.status).toBe(400);
    expect(bad?.body.toString()).toMatch(/Sec-WebSocket-Extensions/);
  });

  it('answers an Upgrade that is not exactly websocket with its own 400, keeping the connection HTTP', async () => {
    const { port } = await startServer(websocketApp(() => {}));
    const client = await RawClient.connect(port);
    const key = Buffer.alloc(16, 1).toString('base64');
    client.write(
      reqBytes(`GET / HTTP/1.1\nHost: x\nConnection: Upgrade\nUpgrade: websocket, foo\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: ${key}\n\n`),
    );
    await client.waitForResponses(1);
    const [response] = parseResponses(client.data);
    expect(response!.status).toBe(400);
    expect(header(response!, 'content-type')).toMatch(/^text\/plain/);
    expect(client.closed).toBe(false);
  });
});

describe('shutdown', () => {
  it('UPG-7, SRV-28: closes open sockets with 1001 when the server closes, and close() resolves once they are gone', async () => {
    const started = await startServer(echoApp());
    const sockets = await Promise.all([open(wsUrl(started.url)), open(wsUrl(started.url)), open(wsUrl(started.url))]);
    const codes = Promise.all(sockets.map((ws) => closed(ws)));
    const closeStarted = Date.now();
    await started.server.close({ timeout: 10_000 });
    expect(Date.now() - closeStarted).toBeLessThan(3000);
    for (const { code, reason } of await codes) {
      expect(code).toBe(1001);
      expect(reason).toBe('server shutting down');
    }
  });
});

describe('options', () => {
  it('chooses the subprotocol by the server\'s preference among those offered', async () => {
    const { url } = await startServer(echoApp({ protocols: ['chat.v2', 'chat.v1'] }));
    const ws = await open(wsUrl(url), ['chat.v1', 'chat.v2']);
    expect(ws.protocol).toBe('chat.v2');
    const old = await open(wsUrl(url), ['chat.v1', 'other']);
    expect(old.protocol).toBe('chat.v1');
  });

  it('chooses the subprotocol with selectProtocol, which sees the environ', async () => {
    const app = websocketApp((ws) => ws.send(ws.protocol), {
      selectProtocol: (offered, environ) => (environ.PATH_INFO === '/last' ? offered[offered.length - 1] : undefined),
    });
    const { url } = await startServer(app);
    const ws = await open(wsUrl(url, '/last'), ['a', 'b', 'c']);
    expect(ws.protocol).toBe('c');
    expect(String((await nextMessage(ws)).data)).toBe('c');
    // Choosing none when the client asked for some makes the client fail the connection (RFC 6455 §4.1).
    await expect(open(wsUrl(url, '/none'), ['a'])).rejects.toThrow(/subprotocol/);
  });

  it('closes with 1009 when a message exceeds maxPayload', async () => {
    const { url, errors } = await startServer(echoApp({ maxPayload: 1024 }));
    const ws = await open(wsUrl(url));
    ws.send(Buffer.alloc(1024, 1));
    expect((await nextMessage(ws)).data.length).toBe(1024);
    const closing = closed(ws);
    ws.send(Buffer.alloc(1025, 1));
    expect((await closing).code).toBe(1009);
    await waitUntil(() => errors.some((line) => line.includes('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')), 'the error line', 2000);
  });

  it('leaves permessage-deflate off by default and negotiates it when asked', async () => {
    const plain = await startServer(echoApp());
    // The ws client offers permessage-deflate unless told not to.
    const off = await open(wsUrl(plain.url));
    expect(off.extensions).toBe('');

    const deflating = await startServer(echoApp({ perMessageDeflate: true }));
    const on = await open(wsUrl(deflating.url));
    expect(on.extensions).toContain('permessage-deflate');
    const text = 'compressible '.repeat(1000);
    on.send(text);
    expect(String((await nextMessage(on)).data)).toBe(text);
  });

  it('terminates a peer that stops answering pings, and keeps one that answers', async () => {
    const { url, port } = await startServer(echoApp({ heartbeatMs: 100 }));
    const alive = await open(wsUrl(url));
    let aliveClosed = false;
    alive.on('close', () => {
      aliveClosed = true;
    });

    // A raw peer: it completes the handshake, then never sends a pong (nor anything else).
    const key = Buffer.from('0123456789abcdef').toString('base64');
    const silent = await RawClient.connect(port);
    silent.write(handshake('', 'GET /ws HTTP/1.1', key));
    await silent.waitForText('\r\n\r\n');
    const [switched] = parseResponses(silent.data);
    expect(header(switched!, 'sec-websocket-accept')).toBe(createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64'));
    const openedAt = Date.now();
    await silent.waitForClose(2000);
    const afterHead = silent.data.subarray(switched!.head.length);
    // It was pinged (0x89: FIN + ping) before it was dropped, after about two intervals.
    expect(afterHead[0]).toBe(0x89);
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(150);

    await sleep(300);
    expect(aliveClosed).toBe(false);
    alive.send('still here');
    expect(String((await nextMessage(alive)).data)).toBe('still here');
  });
});
