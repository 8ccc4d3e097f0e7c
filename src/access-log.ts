/**
 * The access log: one line per response in the Combined Log Format, followed by the time the
 * response took (`... "curl/8.5.0" 2ms`), as gunicorn and nginx write it.
 */
import type { RequestHead } from './http1/parser.ts';

/** AccessEntry is what one line of the access log says about a response. */
export interface AccessEntry {
  /** The client's address. */
  readonly remoteAddress: string;
  /** The request head, or null when the request was refused before its head was whole. */
  readonly request: RequestHead | null;
  /** Whether the app saw the request, so that its Referer and User-Agent are worth quoting. */
  readonly reachedApp: boolean;
  /** The status sent, 0 when none was. */
  readonly status: number;
  /** The response body bytes sent, framing excluded. */
  readonly bodyBytes: number;
  /** When the request's head arrived (ms since the epoch), 0 when unknown. */
  readonly start: number;
}

/** accessLogLine formats one response as a Combined Log Format line with the response time. */
export function accessLogLine(e: AccessEntry): string {
  const req = e.request;
  const line = req === null ? '-' : `${req.method} ${req.target} ${req.version}`;
  const referer = (req !== null && e.reachedApp && fieldValue(req.headers, 'referer')) || '-';
  const agent = (req !== null && e.reachedApp && fieldValue(req.headers, 'user-agent')) || '-';
  const ms = e.start === 0 ? 0 : Date.now() - e.start;
  return (
    `${e.remoteAddress} - - [${clfDate(new Date())}] ${JSON.stringify(line)} ${e.status || '-'} ${e.bodyBytes || '-'} ` +
    `${JSON.stringify(referer)} ${JSON.stringify(agent)} ${ms}ms`
  );
}

/** fieldValue is the first value of the field `name` (lower case), or undefined. */
function fieldValue(headers: Array<[string, string]>, name: string): string | undefined {
  for (const [n, v] of headers) if (n.length === name.length && n.toLowerCase() === name) return v;
  return undefined;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** clfDate formats a time as the Common Log Format does: `25/Nov/2026:09:00:00 +0000`. */
function clfDate(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
