/**
 * `nsgi.early_hints` on the real server (SPEC §7.1, RFC 8297): each call sends its own
 * `103 Early Hints` at once, ahead of the final response and before the app has decided its head,
 * and an HTTP/1.0 client, which cannot take an interim response, never gets one. Raw bytes on an
 * ephemeral loopback port.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { RawClient, cleanup, header, parseResponses, rawRequest, startServer, untilResponses } from '../helpers/server.ts';

afterEach(cleanup);

/** hintingApp sends one 103 per Link in `links`, then waits for `release` before it answers. */
function hintingApp(links: readonly string[], release: Promise<void>): App {
  return async (environ, startResponse) => {
    const hints = environ['nsgi.early_hints'];
    if (typeof hints === 'function') for (const link of links) hints([['Link', link]]);
    await release;
    startResponse('200 OK', [['Content-Type', 'text/plain'], ['Content-Length', '4']]);
    return ['done'];
  };
}

describe('103 Early Hints', () => {
  it('EXT-5, EXT-8: sends one 103 per call at once, while the app is still working, and the final response after them', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const { port } = await startServer(hintingApp(['</a.css>; rel=preload', '</b.js>; rel=preload'], released));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: a\n\n');
    // Both hints arrive while the app still holds its final response back.
    await client.waitFor((data) => parseResponses(data).length === 2, 'two 103 responses');
    const hints = parseResponses(client.data);
    expect(hints.map((r) => r.status)).toEqual([103, 103]);
    expect(hints.map((r) => header(r, 'link'))).toEqual(['</a.css>; rel=preload', '</b.js>; rel=preload']);
    release();
    await client.waitForResponses(1);
    const all = parseResponses(client.data);
    expect(all.map((r) => r.status)).toEqual([103, 103, 200]);
    expect(all[2]!.body.toString()).toBe('done');
  });

  it('EXT-5: leaves a Content-Length given in the hints out of the 103, as out of any 1xx (RFC 9110 §8.6)', async () => {
    const { port } = await startServer((environ, startResponse) => {
      environ['nsgi.early_hints']!([['Link', '</a.css>; rel=preload'], ['Content-Length', '7']]);
      startResponse('200 OK', [['Content-Length', '4']]);
      return ['done'];
    });
    const res = await rawRequest(port, 'GET / HTTP/1.1\nHost: a\n\n', { until: untilResponses(1) });
    expect(res.text).toMatch(/^HTTP\/1\.1 103 Early Hints\r\nLink: <\/a\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    expect(parseResponses(res.data).map((r) => r.status)).toEqual([103, 200]);
  });

  it('EXT-4: sends no 103 to an HTTP/1.0 client, and the final response still arrives', async () => {
    const { port } = await startServer(hintingApp(['</a.css>; rel=preload'], Promise.resolve()));
    const res = await rawRequest(port, 'GET / HTTP/1.0\n\n', { until: untilResponses(1) });
    expect(res.text).not.toMatch(/HTTP\/1\.\d 103/);
    const responses = parseResponses(res.data);
    expect(responses.map((r) => r.status)).toEqual([200]);
    expect(responses[0]!.body.toString()).toBe('done');
  });
});
