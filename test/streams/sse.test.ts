/**
 * The server-sent events helper: its framing as text, then on the real server over raw TCP, fetch
 * and `curl -N`: the head before the first event, heartbeats while idle, the source closed when
 * the client leaves or the server closes, Last-Event-ID, and fields that must not inject others.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { Environ } from '../../protocol/nsgi.ts';
import { formatEvent, lastEventId, sse, type SseMessage, sseResponse } from '../../src/helpers/sse.ts';
import { EventStreamDecoder } from '../helpers/event-stream.ts';
import {
  cleanup,
  finalResponses,
  header,
  parseResponses,
  RawClient,
  rawRequest,
  sleep,
  startServer,
  untilResponses,
  waitUntil,
} from '../helpers/server.ts';

const children = new Set<ChildProcess>();

afterEach(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  await cleanup();
});

/** ParsedEvent is one event as a browser's EventSource would dispatch it. */
interface ParsedEvent {
  type: string;
  data: string;
  lastEventId: string;
}

/** parseEventStream decodes a whole event stream as a browser's EventSource would, with `retry`. */
function parseEventStream(text: string): { events: ParsedEvent[]; retry: number | undefined } {
  const decoder = new EventStreamDecoder();
  decoder.feed(text);
  return { events: decoder.events.map(({ type, data, id }) => ({ type, data, lastEventId: id })), retry: decoder.retry };
}

/** readUntil reads a fetch body until `check` accepts the text so far, or fails after `timeoutMs`. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, check: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + timeoutMs;
  while (!check(text)) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out; read ${JSON.stringify(text)}`);
    const result = await Promise.race([reader.read(), sleepFor(left).then(() => 'timeout' as const)]);
    if (result === 'timeout') throw new Error(`timed out; read ${JSON.stringify(text)}`);
    if (result.done) throw new Error(`the stream ended; read ${JSON.stringify(text)}`);
    text += decoder.decode(result.value, { stream: true });
  }
  return text;
}

/** TrackedSource is a hand-made async iterator that records when its next() and return() are called. */
class TrackedSource implements AsyncIterableIterator<SseMessage> {
  nextCalls = 0;
  returnedAt: number | undefined;
  constructor(private readonly events: SseMessage[]) {}
  [Symbol.asyncIterator](): this {
    return this;
  }
  next(): Promise<IteratorResult<SseMessage>> {
    this.nextCalls++;
    const event = this.events.shift();
    // Once its events are out, it waits forever, as a quiet source does.
    return event === undefined ? new Promise(() => {}) : Promise.resolve({ done: false, value: event });
  }
  return(): Promise<IteratorResult<SseMessage>> {
    this.returnedAt ??= Date.now();
    return Promise.resolve({ done: true, value: undefined });
  }
}

describe('formatEvent', () => {
  it('sends a string as the data of a message event', () => {
    expect(formatEvent('hello')).toBe('data: hello\n\n');
  });

  it('splits multi-line data at CRLF, CR and LF into one data line each', () => {
    expect(formatEvent({ data: 'one\r\ntwo\rthree\nfour' })).toBe('data: one\ndata: two\ndata: three\ndata: four\n\n');
    expect(formatEvent({ data: 'trailing\n' })).toBe('data: trailing\ndata: \n\n');
    expect(formatEvent({ data: '' })).toBe('data: \n\n');
    expect(formatEvent({ data: ' leading space' })).toBe('data:  leading space\n\n');
  });

  it('writes event, id and retry before the data', () => {
    expect(formatEvent({ event: 'tick', id: '42', retry: 3000, data: '{"a":1}' })).toBe('event: tick\nid: 42\nretry: 3000\ndata: {"a":1}\n\n');
    expect(formatEvent({ retry: 0 })).toBe('retry: 0\n\n');
    expect(formatEvent({ comment: 'note\nsecond' })).toBe(': note\n: second\n\n');
  });

  it('round-trips through a client parser, multi-line data included', () => {
    const text = [
      formatEvent({ event: 'a', id: '1', data: 'x\r\ny' }),
      formatEvent('plain'),
      formatEvent({ comment: 'ignored' }),
      formatEvent({ id: '2', data: '' }),
      formatEvent({ retry: 1500 }),
    ].join('');
    expect(parseEventStream(text)).toEqual({
      events: [
        { type: 'a', data: 'x\ny', lastEventId: '1' },
        { type: 'message', data: 'plain', lastEventId: '1' },
        { type: 'message', data: '', lastEventId: '2' },
      ],
      retry: 1500,
    });
  });

  const injections: Array<[string, SseMessage]> = [
    ['an id with LF', { id: '1\nevent: evil', data: 'x' }],
    ['an id with CR', { id: '1\revent: evil', data: 'x' }],
    ['an id with CRLF', { id: '1\r\ndata: evil', data: 'x' }],
    ['an event with LF', { event: 'ok\ndata: evil', data: 'x' }],
    ['an event with CR', { event: 'ok\rdata: evil', data: 'x' }],
  ];
  for (const [name, message] of injections) {
    it(`refuses ${name}, so it cannot start a field of its own`, () => {
      expect(() => formatEvent(message)).toThrow(/must not contain CR or LF/);
    });
  }

  it('frames an event with the same fields as the one before it the same way, and any change afresh', () => {
    const event = { id: '7', data: 'shared\nby all' };
    expect(formatEvent(event)).toBe('id: 7\ndata: shared\ndata: by all\n\n');
    // Another object with equal fields, as each stream of one publish yields.
    expect(formatEvent({ id: '7', data: 'shared\nby all' })).toBe('id: 7\ndata: shared\ndata: by all\n\n');
    event.data = 'changed';
    expect(formatEvent(event)).toBe('id: 7\ndata: changed\n\n');
    expect(formatEvent({ id: '8', data: 'changed' })).toBe('id: 8\ndata: changed\n\n');
    expect(formatEvent({ id: '8', event: 'e', data: 'changed' })).toBe('event: e\nid: 8\ndata: changed\n\n');
    expect(formatEvent({ id: '8', event: 'e', data: 'changed', comment: 'c' })).toBe(': c\nevent: e\nid: 8\ndata: changed\n\n');
    expect(formatEvent({ id: '8', event: 'e', data: 'changed', retry: 5 })).toBe('event: e\nid: 8\nretry: 5\ndata: changed\n\n');
    expect(formatEvent({ id: '8', event: 'e', data: 'changed' })).toBe('event: e\nid: 8\ndata: changed\n\n');
    expect(() => formatEvent({ id: '8\n', event: 'e', data: 'changed' })).toThrow(/must not contain CR or LF/);
    expect(formatEvent({})).toBe('\n');
    expect(() => formatEvent({ data: 5 as unknown as string })).toThrow(/JSON.stringify/);
  });

  it('refuses an id with NUL, a retry that is not a whole number, and data that is not a string', () => {
    expect(() => formatEvent({ id: 'a\0b', data: 'x' })).toThrow(/NUL/);
    expect(() => formatEvent({ retry: 1.5 })).toThrow(/whole number/);
    expect(() => formatEvent({ retry: -1 })).toThrow(/whole number/);
    expect(() => formatEvent({ data: { a: 1 } as unknown as string })).toThrow(/JSON.stringify/);
  });
});

describe('sse() on the server', () => {
  it('sends the event-stream head and the framed events (raw TCP)', async () => {
    const { port } = await startServer(
      sse(() => [{ event: 'greeting', id: '1', retry: 2000, data: 'hello\nworld' }, 'second', { id: '3', data: 'third' }]),
    );
    const result = await rawRequest(port, 'GET /events HTTP/1.1\nHost: t\n\n', { until: untilResponses(1) });
    const [response] = finalResponses(result.data);
    expect(response?.status).toBe(200);
    expect(header(response!, 'content-type')).toBe('text/event-stream; charset=utf-8');
    expect(header(response!, 'cache-control')).toBe('no-cache');
    expect(header(response!, 'x-accel-buffering')).toBe('no');
    expect(header(response!, 'transfer-encoding')).toBe('chunked');
    expect(response?.body.toString()).toBe('event: greeting\nid: 1\nretry: 2000\ndata: hello\ndata: world\n\ndata: second\n\nid: 3\ndata: third\n\n');
  });

  it('delivers events a client parser reads back (fetch)', async () => {
    async function* source(): AsyncGenerator<SseMessage> {
      yield { event: 'multi', data: 'a\r\nb\rc\nd' };
      await sleep(20);
      yield { id: 'x-1', data: JSON.stringify({ ok: true }) };
    }
    const { url } = await startServer(sse(source));
    const res = await fetch(url);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const parsed = parseEventStream(await res.text());
    expect(parsed.events).toEqual([
      { type: 'multi', data: 'a\nb\nc\nd', lastEventId: '' },
      { type: 'message', data: '{"ok":true}', lastEventId: 'x-1' },
    ]);
  });

  it('SR-31: sends the head before the first event exists', async () => {
    const source = new TrackedSource([]);
    const { port } = await startServer(sse(() => source));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitForText('\r\n\r\n', 1000);
    const [response] = parseResponses(client.data);
    expect(response?.status).toBe(200);
    expect(response?.complete).toBe(false);
    expect(response?.rawBody.length).toBe(0);
    expect(source.nextCalls).toBe(1);
  });

  it('cuts the stream rather than send an id or event with a line end', async () => {
    const { port, errors } = await startServer(sse(() => [{ id: '1', data: 'fine' }, { id: '2\nevent: injected', data: 'evil' }, 'never']));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitForClose(2000);
    const [response] = parseResponses(client.data);
    expect(response?.complete).toBe(false);
    expect(response?.body.toString()).toBe('id: 1\ndata: fine\n\n');
    expect(client.text).not.toContain('injected');
    expect(errors.some((line) => line.includes('TypeError: an SSE id must not contain CR or LF'))).toBe(true);
  });

  it('sends a comment heartbeat while the source is quiet', async () => {
    const source = new TrackedSource(['first']);
    const { port } = await startServer(sse(() => source, { heartbeatMs: 100 }));
    const client = await RawClient.connect(port);
    const start = Date.now();
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitFor((data) => (data.toString().match(/: ping\n\n/g)?.length ?? 0) >= 3, 'three heartbeats', 2000);
    expect(Date.now() - start).toBeGreaterThanOrEqual(280);
    const body = parseResponses(client.data)[0]!.body.toString();
    expect(body.startsWith('data: first\n\n: ping\n\n: ping\n\n: ping\n\n')).toBe(true);
    // The source was asked once more after its event, and that one next() spans every heartbeat.
    expect(source.nextCalls).toBe(2);
  });

  it('keeps no listener or timer per heartbeat on nsgi.signal', async () => {
    let signal: AbortSignal | undefined;
    const source = new TrackedSource([]);
    const { port } = await startServer(
      sse(
        (environ) => {
          signal = environ['nsgi.signal'];
          return source;
        },
        { heartbeatMs: 10 },
      ),
    );
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitFor((data) => (data.toString().match(/: ping/g)?.length ?? 0) >= 20, 'twenty heartbeats', 3000);
    expect(getEventListeners(signal!, 'abort').length).toBeLessThanOrEqual(1);
  });

  it('closes the source within a second of the client leaving (fetch)', async () => {
    const source = new TrackedSource(['one']);
    const { url } = await startServer(sse(() => source, { heartbeatMs: 60_000 }));
    const controller = new AbortController();
    const res = await fetch(url, { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await readUntil(reader, (text) => text.includes('data: one\n\n'));
    const leftAt = Date.now();
    controller.abort();
    await waitUntil(() => source.returnedAt !== undefined, 'return() on the source', 1000);
    expect(source.returnedAt! - leftAt).toBeLessThan(1000);
  });

  it('runs an async generator source\'s finally when the client leaves, if it waits on the signal', async () => {
    let finallyAt: number | undefined;
    async function* source(environ: Environ): AsyncGenerator<SseMessage> {
      try {
        yield 'hello';
        await sleepFor(60_000, undefined, { signal: environ['nsgi.signal'] });
        yield 'never';
      } finally {
        finallyAt = Date.now();
      }
    }
    const { port } = await startServer(sse(source));
    const client = await RawClient.connect(port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitForText('data: hello');
    const leftAt = Date.now();
    client.destroy();
    await waitUntil(() => finallyAt !== undefined, 'the generator\'s finally', 1000);
    expect(finallyAt! - leftAt).toBeLessThan(1000);
  });

  it('SRV-28: ends the stream cleanly and closes the source when the server closes', async () => {
    const source = new TrackedSource(['one']);
    const started = await startServer(sse(() => source));
    const client = await RawClient.connect(started.port);
    client.write('GET / HTTP/1.1\nHost: t\n\n');
    await client.waitForText('data: one');
    await started.server.close({ timeout: 5000 });
    await client.waitForClose(1000);
    const [response] = parseResponses(client.data, { closed: true });
    // The terminating chunk came: the stream ended, it was not cut.
    expect(response?.complete).toBe(true);
    expect(response?.body.toString()).toBe('data: one\n\n');
    expect(source.returnedAt).toBeDefined();
  });

  it('reads the client\'s Last-Event-ID with lastEventId(environ)', async () => {
    const { url } = await startServer(
      sse((environ) => {
        const last = Number(lastEventId(environ) ?? 0);
        return [{ id: String(last + 1), data: `resumed after ${lastEventId(environ) ?? 'nothing'}` }];
      }),
    );
    const resumed = parseEventStream(await (await fetch(url, { headers: { 'Last-Event-ID': '41' } })).text());
    expect(resumed.events).toEqual([{ type: 'message', data: 'resumed after 41', lastEventId: '42' }]);
    const fresh = parseEventStream(await (await fetch(url)).text());
    expect(fresh.events).toEqual([{ type: 'message', data: 'resumed after nothing', lastEventId: '1' }]);
  });

  it('SR-20, BODY-19: answers HEAD with the head only, without iterating the source', async () => {
    const source = new TrackedSource(['x']);
    const { url } = await startServer(sse(() => source));
    const res = await fetch(url, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(source.nextCalls).toBe(0);
  });

  it('shows each event through curl -N as soon as it is produced', async () => {
    let produced = 0;
    let releaseSecond: () => void = () => {};
    const secondAllowed = new Promise<void>((resolve) => {
      releaseSecond = resolve;
    });
    async function* source(): AsyncGenerator<SseMessage> {
      produced = 1;
      yield { id: '1', data: 'first' };
      await secondAllowed;
      produced = 2;
      yield { id: '2', data: 'second' };
    }
    const { url } = await startServer(sse(source));
    const curl = spawn('/usr/bin/curl', ['-N', '--silent', '--show-error', '--max-time', '10', url]);
    children.add(curl);
    let stdout = '';
    curl.stdout.setEncoding('utf8');
    curl.stdout.on('data', (text: string) => {
      stdout += text;
    });
    const exited = new Promise<number | null>((resolve) => curl.on('close', (code) => resolve(code)));

    await waitUntil(() => stdout.includes('data: first\n\n'), 'curl to print the first event', 5000);
    // curl printed the first event while the source had not yet produced the second.
    expect(produced).toBe(1);
    expect(stdout).toBe('id: 1\ndata: first\n\n');
    releaseSecond();
    await waitUntil(() => stdout.includes('data: second\n\n'), 'curl to print the second event', 5000);
    expect(await Promise.race([exited, sleepFor(5000, 'timeout')])).toBe(0);
    expect(stdout).toBe('id: 1\ndata: first\n\nid: 2\ndata: second\n\n');
  });

  it('SR-20: HEAD on an event stream sends no Content-Length (RFC 9110 §8.6)', async () => {
    const { port } = await startServer((environ, startResponse) =>
      sseResponse(environ, startResponse, (async function* () {})()),
    );
    const result = await rawRequest(port, 'HEAD /events HTTP/1.1\nHost: a\n\n', {
      until: (d) => d.includes('\r\n\r\n'),
    });
    expect(result.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(result.text.toLowerCase()).not.toContain('content-length');
    expect(result.text.toLowerCase()).not.toContain('transfer-encoding');
  });
});
