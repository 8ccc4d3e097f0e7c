/**
 * The environ the real server builds from the request as it arrives on the wire: SERVER_NAME and
 * SERVER_PORT from an absolute-form target or the Host field, HTTP_HOST exactly as received, the
 * path as decoded (and SCRIPT_NAME empty without a mount path), the method as sent, and a request
 * handled as received whatever the app then changes in its environ. Raw bytes on an ephemeral
 * loopback port; the rules every server shares are in the contract suite.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { cleanup, echoEnviron, environEcho, finalResponses, header, parseResponses, rawRequest, startServer, untilResponses } from '../helpers/server.ts';

afterEach(cleanup);

describe('SERVER_NAME, SERVER_PORT and HTTP_HOST', () => {
  it('ENV-7, ENV-9: takes SERVER_NAME and SERVER_PORT from the target, and leaves HTTP_HOST as received', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET http://example.com:8080/p HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toEqual({
      SERVER_NAME: 'example.com', SERVER_PORT: '8080', HTTP_HOST: 'a', PATH_INFO: '/p',
    });
  });

  it('ENV-7: gives an https target without a port the port 443', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET HTTPS://example.com/p HTTP/1.1\nHost: example.com\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: 'example.com', SERVER_PORT: '443' });
  });

  it('ENV-2, ENV-7: adds no HTTP_HOST to an HTTP/1.0 request that had no Host field', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET http://example.com:81/x HTTP/1.0\n\n');
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: 'example.com', SERVER_PORT: '81', HTTP_HOST: null });
  });

  it('ENV-7: a Host of only a port gives the listening address and port', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: :80\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: '127.0.0.1', SERVER_PORT: String(port) });
  });
});

/** environOf sends `request` to a server running `app` and returns the JSON body of its one response. */
async function environOf(app: App, request: string): Promise<Record<string, unknown>> {
  const { port } = await startServer(app);
  const result = await rawRequest(port, request, { until: untilResponses(1) });
  return JSON.parse(finalResponses(result.data)[0]!.body.toString()) as Record<string, unknown>;
}

describe('the path and the method', () => {
  it('ENV-13, ENV-14, ENV-17: decodes %XX, keeps a % without two hex digits, and leaves SCRIPT_NAME empty without a mount path', async () => {
    const environ = await environOf(echoEnviron(['SCRIPT_NAME', 'PATH_INFO', 'REQUEST_URI']), 'GET /a%zz%2/100%/b%41 HTTP/1.1\nHost: a\n\n');
    expect(environ).toEqual({ SCRIPT_NAME: '', PATH_INFO: '/a%zz%2/100%/bA', REQUEST_URI: '/a%zz%2/100%/b%41' });
  });

  it('SRV-7: passes a method the server does not know to the app', async () => {
    const environ = await environOf(echoEnviron(['REQUEST_METHOD', 'PATH_INFO']), 'BREW /pot HTTP/1.1\nHost: a\n\n');
    expect(environ).toEqual({ REQUEST_METHOD: 'BREW', PATH_INFO: '/pot' });
  });

  it('SRV-6: gives HEAD treatment only to HEAD: a request with the method "head" gets its body', async () => {
    const { port } = await startServer(echoEnviron(['REQUEST_METHOD']));
    const result = await rawRequest(port, 'head / HTTP/1.1\nHost: a\n\n', { until: untilResponses(1) });
    const [response] = finalResponses(result.data);
    expect(response!.status).toBe(200);
    expect(response!.body.toString()).toBe('{"REQUEST_METHOD":"head"}');
  });
});

describe('the request as received', () => {
  /** The first of the two responses answers a HEAD: its Content-Length announces no bytes. */
  const HEAD_FIRST = { noBody: (index: number) => index === 0 };

  it('ENV-3: answers a HEAD without a body and keeps the connection, though the app rewrote its environ', async () => {
    const { port } = await startServer((environ, startResponse) => {
      environ.REQUEST_METHOD = 'GET';
      environ.SERVER_PROTOCOL = 'HTTP/1.0';
      environ.HTTP_CONNECTION = 'close';
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['a body HEAD must not carry'];
    });
    const result = await rawRequest(port, 'HEAD /one HTTP/1.1\nHost: a\n\nGET /two HTTP/1.1\nHost: a\n\n', { until: untilResponses(2, HEAD_FIRST) });
    const [head, get] = finalResponses(result.data, HEAD_FIRST);
    expect(head!.status).toBe(200);
    expect(head!.body.length).toBe(0);
    expect(header(head!, 'connection')).toBeUndefined();
    expect(get!.body.toString()).toBe('a body HEAD must not carry');
  });
});
