/**
 * A client of `text/event-stream` for the stream tests: a GET on a connection of its own (so
 * that, under workers, reconnections spread over them), its body parsed as a browser's
 * EventSource does (fields per line, data lines joined with LF, comments ignored, an event
 * dispatched at a blank line), with `retry`, and waits with deadlines.
 */
import http from 'node:http';

/** StreamEvent is one dispatched event. */
export interface StreamEvent {
  readonly type: string;
  readonly data: string;
  readonly id: string;
}

/** EventStream is one open stream and what it has delivered so far. */
export interface EventStream {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly events: StreamEvent[];
  /** The last `retry:` value seen. */
  readonly retry: number | undefined;
  /** Resolves once at least `count` events arrived (or rejects after `timeoutMs`, quoting them). */
  until(count: number, timeoutMs?: number): Promise<StreamEvent[]>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  /** Cancels the request. */
  close(): void;
}

/** openEventStream opens `url`, sending `Last-Event-ID` when given. */
export async function openEventStream(url: string, options: { lastEventId?: string } = {}): Promise<EventStream> {
  const headers: Record<string, string> = { Accept: 'text/event-stream' };
  if (options.lastEventId !== undefined) headers['Last-Event-ID'] = options.lastEventId;
  const req = http.get(url, { headers, agent: false });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  // After the response, a cut connection ends the stream (below), not the test.
  req.on('error', () => {});
  const events: StreamEvent[] = [];
  const listeners = new Set<() => void>();
  let retry: number | undefined;
  let finished = false;
  let buffer = '';
  let data: string[] = [];
  let type = '';
  let id = '';
  const feed = (text: string): void => {
    buffer += text;
    let end: number;
    while ((end = buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (data.length > 0) events.push({ type: type || 'message', data: data.join('\n'), id });
        data = [];
        type = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') type = value;
      else if (field === 'id') id = value;
      else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
    }
    for (const listener of [...listeners]) listener();
  };
  const ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res as AsyncIterable<Uint8Array>) feed(decoder.decode(chunk, { stream: true }));
    } catch {
      // Cancelled by close(), or the connection was cut: the stream is over either way.
    } finally {
      finished = true;
      for (const listener of [...listeners]) listener();
    }
  })();
  return {
    status: res.statusCode ?? 0,
    headers: res.headers,
    events,
    get retry() {
      return retry;
    },
    ended,
    close: () => req.destroy(),
    until(count, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (events.length >= count) {
            done();
            resolve(events);
          } else if (finished) {
            done();
            reject(new Error(`the stream ended after ${events.length} of ${count} events: ${JSON.stringify(events)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${timeoutMs} ms with ${events.length} of ${count} events: ${JSON.stringify(events)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}
