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
  const { id, event, data } = message;
  const plain = message.comment === undefined && message.retry === undefined;
  const last = lastFormatted;
  if (plain && last !== null && data === last.data && id === last.id && event === last.event) return last.text;
  let out = '';
  if (message.comment !== undefined) out += fieldLines(':', String(message.comment));
  if (event !== undefined) out += `event: ${singleLine('event', event)}\n`;
  if (id !== undefined) {
    const checked = singleLine('id', id);
    // The client ignores an id containing NUL, which would silently break resumption.
    if (checked.includes('\0')) throw new TypeError(`an SSE id must not contain NUL, got ${JSON.stringify(checked)}`);
    out += `id: ${checked}\n`;
  }
  if (message.retry !== undefined) {
    if (!Number.isSafeInteger(message.retry) || message.retry < 0) {
      throw new TypeError(`an SSE retry must be a whole number of milliseconds, got ${String(message.retry)}`);
    }
    out += `retry: ${message.retry}\n`;
  }
  if (data !== undefined) {
    if (typeof data !== 'string') {
      throw new TypeError(`SSE data must be a string (JSON.stringify objects first), got ${typeof data}`);
    }
    out += dataLines(data);
  }
  out += '\n';
  if (plain) lastFormatted = { id, event, data, text: out };
  return out;
}

/**
 * lastFormatted is the last event of only `id`, `event` and `data` that {@link formatEvent}
 * framed. A publish reaches every stream of a topic one after the other with the same fields, so
 * the entry is framed once for all of them rather than once per client.
 */
let lastFormatted: { readonly id: string | undefined; readonly event: string | undefined; readonly data: string | undefined; readonly text: string } | null = null;

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
