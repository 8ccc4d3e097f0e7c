/**
 * The framing of one server-sent event as `text/event-stream` text (the HTML Living Standard,
 * "Server-sent events", §9.2), for the SSE helpers of `sse.ts`.
 */
import type { SseMessage } from './sse.ts';

/**
 * formatEvent frames one message as `text/event-stream` text, ending with the blank line that
 * dispatches it. It throws a TypeError for an `id` or `event` with a line end (or an `id` with
 * NUL) and for a `retry` that is not a whole number.
 */
export function formatEvent(message: SseMessage): string {
  if (typeof message === 'string') return dataLines(message) + '\n';
  if (message === null || typeof message !== 'object') {
    throw new TypeError(`an SSE message must be a string or an object, got ${message === null ? 'null' : typeof message}`);
  }
  let out = '';
  if (message.comment !== undefined) out += fieldLines(':', String(message.comment));
  if (message.event !== undefined) out += `event: ${singleLine('event', message.event)}\n`;
  if (message.id !== undefined) {
    const id = singleLine('id', message.id);
    // The client ignores an id containing NUL, which would silently break resumption.
    if (id.includes('\0')) throw new TypeError(`an SSE id must not contain NUL, got ${JSON.stringify(id)}`);
    out += `id: ${id}\n`;
  }
  if (message.retry !== undefined) {
    if (!Number.isSafeInteger(message.retry) || message.retry < 0) {
      throw new TypeError(`an SSE retry must be a whole number of milliseconds, got ${String(message.retry)}`);
    }
    out += `retry: ${message.retry}\n`;
  }
  if (message.data !== undefined) {
    if (typeof message.data !== 'string') {
      throw new TypeError(`SSE data must be a string (JSON.stringify objects first), got ${typeof message.data}`);
    }
    out += dataLines(message.data);
  }
  return out + '\n';
}

const LINE_END = /\r\n|\r|\n/;

function dataLines(data: string): string {
  return fieldLines('data:', data);
}

/** fieldLines writes one `prefix value` line per line of `text`, CRLF, CR and LF all ending a line. */
function fieldLines(prefix: string, text: string): string {
  let out = '';
  for (const line of text.split(LINE_END)) out += `${prefix} ${line}\n`;
  return out;
}

function singleLine(field: string, value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`an SSE ${field} must be a string, got ${typeof value}`);
  if (value.includes('\n') || value.includes('\r')) {
    throw new TypeError(`an SSE ${field} must not contain CR or LF, got ${JSON.stringify(value)}`);
  }
  return value;
}
