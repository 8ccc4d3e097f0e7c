/**
 * Keep-alive on the real server (RFC 9112 §9.3): when a connection stays open after a response and
 * when it closes, on HTTP/1.1 and HTTP/1.0, and what empty lines between requests do to it. Raw
 * bytes on an ephemeral loopback port.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  cleanup,
  environEcho,
  finalResponses,
  GET,
  header,
  parseResponses,
  pathApp,
  RawClient,
  rawRequest,
  startServer,
  sleep,
} from '../helpers/server.ts';

afterEach(cleanup);

describe('keep-alive', () => {
  it('SRV-3: answers two requests one after the other on one socket', async () => {
    const ports: string[] = [];
    const { port } = await startServer((environ, startResponse) => {
      ports.push(environ.REMOTE_PORT);
      startResponse('200 OK', []);
      return [environ.PATH_INFO];
    });
    const client = await RawClient.connect(port);
    client.write('GET /one HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(1);
    client.write('GET /two HTTP/1.1\nHost: t\n\n');
    await client.waitForResponses(2);
    const bodies = finalResponses(client.data).map((r) => r.body.toString());
    expect(bodies).toEqual(['/one', '/two']);
    expect(ports).toHaveLength(2);
    expect(ports[0]).toBe(ports[1]);
    expect(client.closed).toBe(false);
  });

  it('SRV-3, SRV-4: closes after answering an HTTP/1.1 request with Connection: close', async () => {
    const { port } = await startServer(pathApp());
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: t\nConnection: close\n\n');
    expect(res.closed).toBe(true);
    const [r] = finalResponses(res.data);
    expect(r?.status).toBe(200);
    expect(header(r!, 'connection')).toBe('close');
  });

  it('SRV-1, SRV-3: closes after an HTTP/1.0 request without keep-alive', async () => {
    const { port } = await startServer(pathApp());
    const res = await rawRequest(port, 'GET / HTTP/1.0\n\n');
    expect(res.closed).toBe(true);
    const [r] = finalResponses(res.data, { closed: true });
    expect(r?.status).toBe(200);
    expect(r!.body.toString()).toBe('/');
    expect(header(r!, 'connection')).not.toBe('keep-alive');
  });

  it('SRV-3, SRV-4: keeps an HTTP/1.0 connection with Connection: keep-alive open and says so', async () => {
    const { port } = await startServer(pathApp());
    const client = await RawClient.connect(port);
    client.write('GET /a HTTP/1.0\nConnection: keep-alive\n\n');
    await client.waitForResponses(1);
    const [first] = finalResponses(client.data);
    expect(header(first!, 'connection')).toBe('keep-alive');
    expect(header(first!, 'content-length')).toBe('2');
    client.write('GET /b HTTP/1.0\nConnection: keep-alive\n\n');
    await client.waitForResponses(2);
    expect(finalResponses(client.data).map((r) => r.body.toString())).toEqual(['/a', '/b']);
    expect(client.closed).toBe(false);
  });

  it('SR-10, SRV-3: closes after the response when the app sends Connection: close', async () => {
    const { port } = await startServer((_env, startResponse) => {
      startResponse('200 OK', [['Connection', 'close']]);
      return ['bye'];
    });
    const client = await RawClient.connect(port);
    client.write(GET);
    await client.waitForClose();
    const [r] = finalResponses(client.data);
    expect(r?.body.toString()).toBe('bye');
    expect(header(r!, 'connection')).toBe('close');
  });
});

describe('empty lines between requests', () => {
  it('SRV-20: closes a connection that sends only a CRLF after its response, at the idle timeout', async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 300, headersTimeout: 5_000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    await sleep(100);
    client.write('\r\n');
    await client.waitForClose(3_000);
  });

  it('SRV-20: closes a connection whose POST body is followed by a stray CRLF in the same write', async () => {
    const { port } = await startServer(
      async (environ, startResponse) => {
        await environ['nsgi.input'].bytes();
        startResponse('200 OK', [['Content-Length', '2']]);
        return ['ok'];
      },
      { keepAliveTimeout: 300, headersTimeout: 5_000 },
    );
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc\n');
    await client.waitForResponses(1);
    await client.waitForClose(3_000);
  });

  it('SRV-20: does not let a trickle of empty lines push the deadline back', { timeout: 10_000 }, async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 400, headersTimeout: 5_000 });
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(1);
    const started = Date.now();
    for (let i = 0; i < 20 && !client.closed; i++) {
      client.write('\r\n');
      await sleep(100);
    }
    expect(client.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('SRV-20: still serves a request that follows the empty lines', async () => {
    const { port } = await startServer(environEcho, { keepAliveTimeout: 2_000 });
    const client = await RawClient.connect(port);
    client.write('GET /one HTTP/1.1\nHost: a\n\n\n\nGET /two HTTP/1.1\nHost: a\n\n');
    await client.waitForResponses(2);
    expect(parseResponses(client.data).map((r) => JSON.parse(r.body.toString()).PATH_INFO)).toEqual(['/one', '/two']);
  });
});
