/**
 * The access log: one line per response in the Combined Log Format, followed by the time the
 * response took (`... "curl/8.5.0" 2ms`), as gunicorn and nginx write it; or, for log collectors,
 * one JSON object per line with the same facts.
 */
import type { RequestDescription } from './environ.ts';

/** AccessEntry is what one line of the access log says about a response. */
export interface AccessEntry {
  /** The client's address: REMOTE_ADDR as the app saw it, after a trusted proxy's forwarding fields. */
  readonly remoteAddress: string;
  /** The request head (HTTP/1.x or h2), or null when the request was refused before its head was whole. */
  readonly request: Pick<RequestDescription, 'method' | 'target' | 'version' | 'headers'> | null;
  /** The request line of a request refused after its line but before its head was whole (413, 431). */
  readonly requestLine?: string | null;
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
  const line = req === null ? (e.requestLine ?? '-') : `${req.method} ${req.target} ${req.version}`;
  const referer = (req !== null && e.reachedApp && fieldValue(req.headers, 'referer')) || '-';
  const agent = (req !== null && e.reachedApp && fieldValue(req.headers, 'user-agent')) || '-';
  const ms = e.start === 0 ? 0 : Date.now() - e.start;
  return (
    `${e.remoteAddress} - - [${clfDate(new Date())}] ${JSON.stringify(line)} ${e.status || '-'} ${e.bodyBytes || '-'} ` +
    `${JSON.stringify(referer)} ${JSON.stringify(agent)} ${ms}ms`
  );
}

/** ACCESS_LOG_FORMATS are the formats `--access-log-format` offers. */
export const ACCESS_LOG_FORMATS = ['combined', 'json'] as const;

/** AccessLogFormat is one of {@link ACCESS_LOG_FORMATS}. */
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number];

/**
 * accessLogJson formats one response as a JSON object on one line: `time` (ISO 8601), `remote_addr`,
 * `request` (the request line, or null), `method`, `path` (the target), `protocol`, `status` (null
 * when none was sent), `bytes`, `referer`, `user_agent` (null when absent) and `duration_ms`.
 */
export function accessLogJson(e: AccessEntry): string {
  const req = e.request;
  const parts = req === null ? (e.requestLine ?? '').split(' ') : [req.method, req.target, req.version];
  const line = req === null ? (e.requestLine ?? null) : parts.join(' ');
  return JSON.stringify({
    time: new Date().toISOString(),
    remote_addr: e.remoteAddress,
    request: line,
    method: line === null ? null : parts[0],
    path: line === null ? null : parts[1],
    protocol: line === null ? null : parts[2],
    status: e.status || null,
    bytes: e.bodyBytes,
    referer: (req !== null && e.reachedApp && fieldValue(req.headers, 'referer')) || null,
    user_agent: (req !== null && e.reachedApp && fieldValue(req.headers, 'user-agent')) || null,
    duration_ms: e.start === 0 ? 0 : Date.now() - e.start,
  });
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
