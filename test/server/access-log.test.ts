/**
 * The access log over real sockets: the client's address as the app got it once a trusted proxy's
 * forwarding fields are applied (the proxy's own when it is not trusted), the request line of a
 * request refused after its line (413), and the JSON-lines format.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { cleanup, rawRequest, startServer, untilResponses, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

const okApp: App = (_environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['ok'];
};

const FORWARDED = 'GET /who HTTP/1.1\nHost: a\nX-Forwarded-For: 203.0.113.9\nUser-Agent: probe\nConnection: close\n\n';

describe('access log', () => {
  it('logs the client address a trusted proxy forwarded, as REMOTE_ADDR is', async () => {
    const lines: string[] = [];
    const { port } = await startServer(okApp, { accessLog: (l) => lines.push(l), forwardedAllowIps: ['127.0.0.1'] });
    await rawRequest(port, FORWARDED);
    await waitUntil(() => lines.length === 1, 'the access log line');
    expect(lines[0]).toMatch(/^203\.0\.113\.9 - - \[[^\]]+\] "GET \/who HTTP\/1\.1" 200 2 "-" "probe" \d+ms$/);
  });

  it('logs the peer address when the peer is not a trusted proxy', async () => {
    const lines: string[] = [];
    const { port } = await startServer(okApp, { accessLog: (l) => lines.push(l) });
    await rawRequest(port, FORWARDED);
    await waitUntil(() => lines.length === 1, 'the access log line');
    expect(lines[0]).toMatch(/^127\.0\.0\.1 - - /);
  });

  it('logs the request line of a request refused with 413 after its line', async () => {
    const lines: string[] = [];
    const { port } = await startServer(okApp, { accessLog: (l) => lines.push(l), maxBodySize: 10 });
    const r = await rawRequest(port, 'POST /upload?x=1 HTTP/1.1\nHost: a\nContent-Length: 11\n\n', { until: untilResponses(1) });
    expect(r.text).toMatch(/^HTTP\/1\.1 413 /);
    await waitUntil(() => lines.length === 1, 'the access log line');
    expect(lines[0]).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "POST \/upload\?x=1 HTTP\/1\.1" 413 /);
  });

  it('writes one JSON object per line with accessLogFormat json', async () => {
    const lines: string[] = [];
    const { port } = await startServer(okApp, { accessLog: (l) => lines.push(l), accessLogFormat: 'json', forwardedAllowIps: ['127.0.0.1'], maxBodySize: 10 });
    await rawRequest(port, FORWARDED);
    await rawRequest(port, 'PUT /big HTTP/1.1\nHost: a\nContent-Length: 99\n\n', { until: untilResponses(1) });
    await rawRequest(port, 'NOT A REQUEST\n\n', { until: untilResponses(1) });
    await waitUntil(() => lines.length === 3, 'three access log lines');
    const [ok, refused, bad] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(ok).toMatchObject({ remote_addr: '203.0.113.9', request: 'GET /who HTTP/1.1', method: 'GET', path: '/who', protocol: 'HTTP/1.1', status: 200, bytes: 2, referer: null, user_agent: 'probe' });
    expect(new Date(ok!.time as string).getTime()).not.toBeNaN();
    expect(typeof ok!.duration_ms).toBe('number');
    expect(refused).toMatchObject({ remote_addr: '127.0.0.1', request: 'PUT /big HTTP/1.1', method: 'PUT', path: '/big', status: 413, user_agent: null });
    expect(bad).toMatchObject({ request: null, method: null, status: 400 });
  });
});
