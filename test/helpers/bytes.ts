/**
 * Raw-bytes helpers for the HTTP/1.1 tests: readable text in, CRLF bytes out, and a driver that
 * feeds a {@link RequestParser} whole, byte by byte or split at chosen points and collects what
 * comes out in a form that compares equal however the bytes were cut.
 */
import { ProtocolError } from '../../src/errors.ts';
import { RequestParser, type EndEvent, type HeadEvent, type ParserLimits } from '../../src/http1/parser.ts';

/**
 * req turns readable request text into bytes: every `\n` written in the template becomes CRLF and
 * the text is encoded as latin-1, so `\x80`-`\xff` stand for single bytes. Interpolated values are
 * inserted as they are (no CRLF rewriting), so bodies and deliberately bare LFs stay raw:
 * `req\`POST / HTTP/1.1\nContent-Length: 3\n\n${'a\nb'}\``.
 */
export function req(strings: TemplateStringsArray, ...values: Array<string | number | Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < strings.length; i++) {
    parts.push(crlf(strings[i]!));
    if (i < values.length) {
      const v = values[i]!;
      parts.push(v instanceof Uint8Array ? Buffer.from(v) : Buffer.from(String(v), 'latin1'));
    }
  }
  return Buffer.concat(parts);
}

/** crlf encodes text as latin-1 with every `\n` turned into CRLF. */
export function crlf(text: string): Buffer {
  return Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');
}

/** raw encodes text as latin-1 exactly as written: no line-ending rewriting. */
export function raw(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** CollectedData is a data event whose bytes were copied and merged with its neighbours. */
export interface CollectedData {
  kind: 'data';
  data: Buffer;
}

/** CollectedEvent is one event as {@link parseAll} records it; need-data is never recorded. */
export type CollectedEvent = HeadEvent | CollectedData | EndEvent | { kind: 'paused' };

/** ParseResult is everything {@link parseAll} saw. */
export interface ParseResult {
  /** The events in order, consecutive data events merged, `paused` recorded once per request. */
  events: CollectedEvent[];
  /** The ProtocolError that stopped the parser, if any. */
  error: ProtocolError | undefined;
  /** How the run ended: waiting for bytes, paused after the last wanted request, or failed. */
  last: 'need-data' | 'paused' | 'error';
  /** The parser itself, for further calls. */
  parser: RequestParser;
}

/** Split is how {@link parseAll} cuts the input: whole, one byte at a time, or at given offsets. */
export type Split = 'whole' | 'bytes' | number | readonly number[];

/** ParseOptions tune {@link parseAll}. */
export interface ParseOptions {
  split?: Split;
  limits?: Partial<ParserLimits>;
  /** How many requests to read; after each `paused` but the last, `nextCycle()` is called. */
  requests?: number;
}

/** pieces cuts `bytes` as `split` says. */
export function pieces(bytes: Buffer, split: Split): Buffer[] {
  if (split === 'whole') return [bytes];
  if (split === 'bytes') {
    const out: Buffer[] = [];
    for (let i = 0; i < bytes.length; i++) out.push(bytes.subarray(i, i + 1));
    return out;
  }
  const points = (typeof split === 'number' ? [split] : [...split]).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    const at = Math.max(from, Math.min(p, bytes.length));
    out.push(bytes.subarray(from, at));
    from = at;
  }
  out.push(bytes.subarray(from));
  return out;
}

/**
 * parseAll feeds `bytes` to a fresh RequestParser cut as `split` says, calling `next()` after
 * every piece until it asks for more, and collects the events. Each piece is copied into its own
 * Buffer so the parser never sees the caller's memory. Once the wanted number of requests has
 * been read (or an error thrown) the remaining pieces are still fed, without calling `next()`, so
 * `parser.buffered` counts every unread byte. A parser that keeps returning events without
 * consuming input is reported as an Error rather than looping forever; anything thrown that is not
 * a ProtocolError is rethrown.
 */
export function parseAll(bytes: Buffer, options: ParseOptions = {}): ParseResult {
  const parser = new RequestParser(options.limits);
  const wanted = options.requests ?? 1;
  const events: CollectedEvent[] = [];
  let error: ProtocolError | undefined;
  let last: ParseResult['last'] = 'need-data';
  let paused = 0;

  const push = (event: CollectedEvent): void => {
    const prev = events[events.length - 1];
    if (event.kind === 'data' && prev?.kind === 'data') prev.data = Buffer.concat([prev.data, event.data]);
    else events.push(event);
  };

  for (const piece of pieces(bytes, options.split ?? 'whole')) {
    parser.feed(Buffer.from(piece));
    if (last !== 'need-data') continue;
    // Every event but need-data consumes input or changes state; this bound catches a parser that
    // keeps answering without doing either.
    for (let guard = 0; ; guard++) {
      if (guard > piece.length * 4 + 16) throw new Error('parser returned events without end for one piece');
      let event;
      try {
        event = parser.next();
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        error = err;
        last = 'error';
        break;
      }
      if (event.kind === 'need-data') break;
      if (event.kind === 'paused') {
        push({ kind: 'paused' });
        if (++paused >= wanted) {
          last = 'paused';
          break;
        }
        parser.nextCycle();
        continue;
      }
      if (event.kind === 'data') push({ kind: 'data', data: Buffer.from(event.data) });
      else push(event);
    }
  }
  return { events, error, last, parser };
}

/** data is an expected data event holding `text` as latin-1 bytes. */
export function data(text: string | Uint8Array): CollectedData {
  return { kind: 'data', data: typeof text === 'string' ? Buffer.from(text, 'latin1') : Buffer.from(text) };
}

/** end is an expected end event, with trailers or without (`null`). */
export function end(trailers: Array<[string, string]> | null = null): EndEvent {
  return { kind: 'end', trailers };
}

/** PAUSE is the expected marker recorded when the parser pauses after a request. */
export const PAUSE = Object.freeze({ kind: 'paused' }) as { kind: 'paused' };
