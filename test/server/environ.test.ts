/**
 * The environ keys the real server takes from the request as it arrives on the wire: SERVER_NAME
 * and SERVER_PORT from an absolute-form target or the Host field, HTTP_HOST exactly as received.
 * Raw bytes on an ephemeral loopback port; the in-memory rules are in the contract suite.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, environEcho, parseResponses, rawRequest, startServer } from '../helpers/server.ts';

afterEach(cleanup);

describe('SERVER_NAME, SERVER_PORT and HTTP_HOST', () => {
  it('takes SERVER_NAME and SERVER_PORT from the target, and leaves HTTP_HOST as received', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET http://example.com:8080/p HTTP/1.1\nHost: a\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toEqual({
      SERVER_NAME: 'example.com', SERVER_PORT: '8080', HTTP_HOST: 'a', PATH_INFO: '/p',
    });
  });

  it('gives an https target without a port the port 443', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET HTTPS://example.com/p HTTP/1.1\nHost: example.com\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: 'example.com', SERVER_PORT: '443' });
  });

  it('adds no HTTP_HOST to an HTTP/1.0 request that had no Host field', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET http://example.com:81/x HTTP/1.0\n\n');
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: 'example.com', SERVER_PORT: '81', HTTP_HOST: null });
  });

  it('ENV-7: uses the listening address and port', async () => {
    const { port } = await startServer(environEcho);
    const result = await rawRequest(port, 'GET / HTTP/1.1\nHost: :80\n\n', { until: (d) => parseResponses(d).length === 1 });
    expect(JSON.parse(parseResponses(result.data)[0]!.body.toString())).toMatchObject({ SERVER_NAME: '127.0.0.1', SERVER_PORT: String(port) });
  });
});
