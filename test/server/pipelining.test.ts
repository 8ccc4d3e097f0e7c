/**
 * Pipelining on the real server: requests sent in one write are answered in order, a request body
 * is never read as the next request, and a client that reads nothing holds the answers back
 * instead of letting them pile up in memory. Raw bytes on an ephemeral loopback port.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  cleanup,
  finalResponses,
  pathApp,
  RawClient,
  rawRequest,
  reqBytes,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

afterEach(cleanup);

describe('pipelining', () => {
  it('APP-2, SRV-5: answers three requests sent in one write in order, calling the app once for each', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const res = await rawRequest(port, 'GET /1 HTTP/1.1\nHost: t\n\nGET /2 HTTP/1.1\nHost: t\n\nGET /3 HTTP/1.1\nHost: t\n\n', {
      until: untilResponses(3),
    });
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual(['/1', '/2', '/3']);
    expect(seen).toEqual(['/1', '/2', '/3']);
  });

  it('SRV-5: keeps the order when the first response is slow and the later ones fast', async () => {
    const { port } = await startServer(async (environ, startResponse) => {
      if (environ.PATH_INFO === '/slow') await sleep(300);
      startResponse('200 OK', []);
      return (async function* () {
        yield environ.PATH_INFO;
        yield '!';
      })();
    });
    const res = await rawRequest(
      port,
      'GET /slow HTTP/1.1\nHost: t\n\nGET /fast1 HTTP/1.1\nHost: t\n\nGET /fast2 HTTP/1.1\nHost: t\n\n',
      { until: untilResponses(3) },
    );
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual(['/slow!', '/fast1!', '/fast2!']);
  });

  it('APP-2: does not take a POST body that looks like a request for the next request', async () => {
    const seen: string[] = [];
    const { port } = await startServer(async (environ, startResponse) => {
      seen.push(`${environ.REQUEST_METHOD} ${environ.PATH_INFO}`);
      const body = await environ['nsgi.input'].text();
      startResponse('200 OK', []);
      return [`${environ.PATH_INFO}:${body.length}`];
    });
    const inner = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n';
    const bytes = Buffer.concat([
      reqBytes(`POST /post HTTP/1.1\nHost: t\nContent-Length: ${inner.length}\n\n`),
      Buffer.from(inner, 'latin1'),
      reqBytes('GET /next HTTP/1.1\nHost: t\n\n'),
    ]);
    const res = await rawRequest(port, bytes, { until: untilResponses(2) });
    await sleep(100);
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual([`/post:${inner.length}`, '/next:0']);
    expect(seen).toEqual(['POST /post', 'GET /next']);
  });

  it('IN-8, SRV-5: drains an unread POST body so that the pipelined request after it is answered', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const inner = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n';
    const bytes = Buffer.concat([
      reqBytes(`POST /post HTTP/1.1\nHost: t\nContent-Length: ${inner.length}\n\n`),
      Buffer.from(inner, 'latin1'),
      reqBytes('GET /next HTTP/1.1\nHost: t\n\n'),
    ]);
    const res = await rawRequest(port, bytes, { until: untilResponses(2) });
    await sleep(100);
    expect(finalResponses(res.data).map((r) => r.body.toString())).toEqual(['/post', '/next']);
    expect(seen).toEqual(['/post', '/next']);
  });

  it('stops answering pipelined requests while the client reads nothing', async () => {
    const big = 'x'.repeat(100 * 1024);
    let answered = 0;
    const { port } = await startServer((_environ, startResponse) => {
      answered++;
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [big];
    });
    const client = await RawClient.connect(port, { collect: false });
    client.write(reqBytes('GET / HTTP/1.1\nHost: x\n\n').toString('latin1').repeat(2000));
    await sleep(1000);
    // 2,000 answers would be 200 MB; a paused reader must hold that to what the sockets buffer.
    expect(answered).toBeLessThan(200);
    // Reading again lets the rest be answered.
    client.socket.on('data', () => {});
    client.socket.resume();
    await waitUntil(() => answered === 2000, 'every pipelined request answered', 20_000);
    client.destroy();
  });
});
