/**
 * A real Hono app served by nsgi through fromFetch, over TCP: routing with params, JSON, a request
 * body, a streamed response (`stream()` from hono/streaming) and Hono's SSE helper (`streamSSE`).
 * The streams show that fromFetch pulls the Response body with backpressure and that a client
 * leaving aborts Hono's stream.
 */
import { Hono } from 'hono';
import { stream, streamSSE } from 'hono/streaming';
import { afterEach, describe, expect, it } from 'vitest';
import { fromFetch, validate } from '../../src/index.ts';
import { RawClient, cleanup, startServer, waitUntil } from '../helpers/server.ts';

afterEach(cleanup);

/** makeApp builds the Hono app; `events` records what its streams saw. */
function makeApp(events: string[]): Hono {
  const app = new Hono();
  app.get('/users/:id', (c) => c.json({ id: c.req.param('id'), q: c.req.query('q') ?? null }));
  app.post('/echo', async (c) => {
    const body = await c.req.json<{ n: number }>();
    return c.json({ doubled: body.n * 2 }, 201);
  });
  app.get('/stream', (c) =>
    stream(c, async (s) => {
      s.onAbort(() => void events.push('stream aborted'));
      for (let i = 0; i < 3; i++) {
        await s.write(`line ${i}\n`);
        await s.sleep(5);
      }
    }),
  );
  app.get('/forever', (c) =>
    stream(c, async (s) => {
      s.onAbort(() => void events.push('forever aborted'));
      while (!s.aborted) {
        await s.write('tick\n');
        await s.sleep(5);
      }
    }),
  );
  app.get('/sse', (c) =>
    streamSSE(c, async (s) => {
      for (let i = 1; i <= 3; i++) await s.writeSSE({ id: String(i), event: 'count', data: `n=${i}` });
    }),
  );
  app.notFound((c) => c.text('nothing here', 404));
  return app;
}

describe('a Hono app served by nsgi through fromFetch', () => {
  it('routes with params and query, and answers JSON with a Content-Length', async () => {
    const { url } = await startServer(validate(fromFetch(makeApp([]).fetch)));
    const res = await fetch(`${url}/users/42?q=x`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('content-length')).not.toBeNull();
    expect(await res.json()).toEqual({ id: '42', q: 'x' });
  });

  it('reads a JSON request body streamed from nsgi.input', async () => {
    const { url } = await startServer(validate(fromFetch(makeApp([]).fetch)));
    const res = await fetch(`${url}/echo`, { method: 'POST', body: JSON.stringify({ n: 21 }), headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ doubled: 42 });
  });

  it('answers 404 from its notFound handler', async () => {
    const { url } = await startServer(fromFetch(makeApp([]).fetch));
    const res = await fetch(`${url}/nope`);
    expect(res.status).toBe(404);
    expect(await res.text()).toBe('nothing here');
  });

  it('streams a response with stream(), chunked', async () => {
    const { url } = await startServer(validate(fromFetch(makeApp([]).fetch)));
    const res = await fetch(`${url}/stream`);
    expect(res.status).toBe(200);
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    expect(await res.text()).toBe('line 0\nline 1\nline 2\n');
  });

  it('streams server-sent events with streamSSE, the head before the first event', async () => {
    const { url } = await startServer(validate(fromFetch(makeApp([]).fetch)));
    const res = await fetch(`${url}/sse`);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text).toBe('event: count\ndata: n=1\nid: 1\n\nevent: count\ndata: n=2\nid: 2\n\nevent: count\ndata: n=3\nid: 3\n\n');
  });

  it('aborts the Hono stream when the client goes away', async () => {
    const events: string[] = [];
    const { port } = await startServer(fromFetch(makeApp(events).fetch));
    const client = await RawClient.connect(port);
    client.write('GET /forever HTTP/1.1\nHost: t\n\n');
    await client.waitForText('tick');
    client.destroy();
    await waitUntil(() => events.includes('forever aborted'), 'the stream to be aborted');
  });
});
