/**
 * The upgrade hook's hand-over (SPEC §6.2), shared by the reference server and the node:http
 * adapter: the body must have been read, and the app's `101 Switching Protocols` head is made
 * here. The state rules (not after the head, not after the end) are the response cycle's.
 */
import type { HeaderList } from '../protocol/nsgi.ts';
import { AppError } from './errors.ts';
import { blockWithoutLength, prepareHeaders, switchingProtocolsHead } from './http1/writer.ts';

/** requireBodyRead throws unless the request body is read to its end: its bytes would be taken for the new protocol's. */
export function requireBodyRead(read: boolean): void {
  if (!read) throw new AppError('NSGI_UPGRADE_WITH_BODY', 'nsgi.upgrade() called before the request body was read (SPEC §6.2)');
}

/**
 * upgradeHead checks that the request body was read ({@link requireBodyRead}) and makes the app's
 * 101 head from `headers` ({@link switchingProtocols}), '' when the app writes none itself.
 */
export function upgradeHead(bodyRead: boolean, headers: HeaderList | undefined, requestHeaders: HeaderList): string {
  requireBodyRead(bodyRead);
  return headers === undefined ? '' : switchingProtocols(headers, requestHeaders);
}

/**
 * switchingProtocols is the `101 Switching Protocols` head for an app's `upgrade({ headers })`:
 * its fields (checked as a response's, SPEC §4.2), then the Connection and Upgrade fields a 101
 * needs (RFC 9110 §7.8, §15.2.2). Upgrade is hop-by-hop, so the checks drop the app's; its value
 * is taken from the app's fields, else from the request's. No 1xx carries a Content-Length.
 */
export function switchingProtocols(headers: HeaderList, requestHeaders: HeaderList): string {
  const block = blockWithoutLength(prepareHeaders(headers));
  return switchingProtocolsHead(block, upgradeField(headers) ?? upgradeField(requestHeaders) ?? '');
}

/** upgradeField is the value of the first Upgrade field in `headers`. */
function upgradeField(headers: HeaderList): string | undefined {
  for (const [name, value] of headers) if (name.length === 7 && name.toLowerCase() === 'upgrade') return value;
  return undefined;
}
