/**
 * What the adapters' sinks share. A server without nsgi's own HTTP/1.1 framing (node:http, a
 * fetch Response, memory) takes a response head as plain data: {@link plainHead} turns what the
 * {@link ResponseCycle} hands a sink into one, applying the Content-Length rules
 * (`bodyRule`) as the reference server does.
 */
import type { Chunk, HeaderList } from '../../protocol/nsgi.ts';
import { EnvironBuilder } from '../environ.ts';
import { BodyRule, HeadCache, addedContentLength, dropsAppLength, statusReason, type Status } from '../http1/writer.ts';
import type { CheckedHeaders } from '../sink.ts';

/**
 * AdapterShared is what the requests served by one adapter (a listener, a fetch handler) share:
 * the status and header checks and the environ builder, with their caches.
 */
export class AdapterShared {
  readonly heads = new HeadCache();
  readonly environs = new EnvironBuilder();
}

/** HeaderFields is an app's header list as the adapters check it: the fields to send, as pairs. */
export interface HeaderFields extends CheckedHeaders {
  /** The app's fields in order, hop-by-hop fields removed (SR-9), values as strings. */
  readonly headers: Array<[string, string]>;
}

/** ResponseHead is a response head as plain data, for a sink to hand to its server. */
export interface ResponseHead {
  /** The status code, 200 to 599. */
  readonly status: number;
  /** The reason phrase, possibly empty. */
  readonly reason: string;
  /** The fields to send in order: the app's, less hop-by-hop ones (SR-9), and a 426's Upgrade. */
  readonly headers: HeaderList;
  /** The Content-Length the sink adds when `headers` has none, -1 for none. */
  readonly contentLength: number;
  /** True when the response carries no body: HEAD, 204, 205, 304 (SR-20). */
  readonly noBody: boolean;
  /** True when the app asked for `Connection: close` (SR-10). */
  readonly close: boolean;
  /**
   * For a 426, the protocols the app named in Upgrade (RFC 9110 §15.5.22), which are also among
   * `headers`: the sink adds the `upgrade` connection option (§7.8). '' otherwise.
   */
  readonly upgrade: string;
}

/** plainHead is the head a sink sends under `rule`, with `knownLength` the whole body's length or -1. */
export function plainHead(status: Status, h: HeaderFields, rule: BodyRule, knownLength: number): ResponseHead {
  const code = status.code;
  const headers = dropsAppLength(rule) && h.contentLength >= 0 ? h.headers.filter(([name]) => name.toLowerCase() !== 'content-length') : h.headers;
  const contentLength = addedContentLength(rule, h.contentLength, knownLength);
  // RFC 9110 §15.5.22: a 426 names the protocols to switch to.
  const upgrade = code === 426 ? h.upgrade : '';
  const fields: HeaderList = upgrade === '' ? headers : [...headers, ['Upgrade', upgrade]];
  // Every field spelled out, no spread: one object shape for every head keeps the code that
  // reads them fast.
  return { status: code, reason: statusReason(status), headers: fields, contentLength, noBody: rule !== BodyRule.Body, close: h.close, upgrade };
}

/** toBytes encodes a chunk: strings as UTF-8 (BODY-5). */
export function toBytes(chunk: Chunk): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}
