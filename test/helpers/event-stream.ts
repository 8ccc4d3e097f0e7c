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

/**
 * EventStreamDecoder parses `text/event-stream` text as it arrives, as a browser's EventSource
 * does (HTML Living Standard §9.2.6): fields per line, data lines joined with LF, comments
 * ignored, an event dispatched at a blank line only when it has data, an id holding NUL ignored.
 */
export class EventStreamDecoder {
  readonly events: StreamEvent[] = [];
  /** The last `retry:` value seen. */
  retry: number | undefined;
  private buffer = '';
  private data: string[] = [];
  private type = '';
  private id = '';

  /** feed takes the next piece of the stream; a line split across pieces waits for its end. */
  feed(text: string): void {
    this.buffer += text;
    let end: number;
    while ((end = this.buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer.startsWith('\r\n', end) ? 2 : 1));
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.events.push({ type: this.type || 'message', data: this.data.join('\n'), id: this.id });
      this.data = [];
      this.type = '';
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.type = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }
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
  const decoder = new EventStreamDecoder();
  const events = decoder.events;
  const listeners = new Set<() => void>();
  let finished = false;
  const feed = (text: string): void => {
    decoder.feed(text);
    for (const listener of [...listeners]) listener();
  };
  const ended = (async () => {
    const utf8 = new TextDecoder();
    try {
      for await (const chunk of res as AsyncIterable<Uint8Array>) feed(utf8.decode(chunk, { stream: true }));
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
      return decoder.retry;
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
