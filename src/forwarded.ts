/**
 * Believing a proxy: `Forwarded` (RFC 7239) and `X-Forwarded-For / -Proto / -Host`, taken into the
 * environ only when the peer is a proxy the server was told to trust (SPEC SRV-26). Anyone can
 * send these fields; only a trusted proxy's word about the client is worth anything.
 */
import net from 'node:net';
import type { Environ } from '../protocol/nsgi.ts';

/** TrustedProxies answers whether an address belongs to a configured proxy. */
export interface TrustedProxies {
  /** trusts tells whether `address` (as the socket reports it) is a trusted proxy. */
  trusts(address: string): boolean;
}

/**
 * trustedProxies builds the matcher for `--forwarded-allow-ips`: addresses (`10.0.0.1`, `::1`),
 * subnets (`10.0.0.0/8`), or `*` for every peer. It throws a TypeError naming a bad entry.
 */
export function trustedProxies(entries: readonly string[]): TrustedProxies {
  if (entries.includes('*')) return { trusts: () => true };
  const list = new net.BlockList();
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    const slash = entry.indexOf('/');
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : null;
    const prefixText = slash === -1 ? '' : entry.slice(slash + 1);
    const prefix = /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (family === null || (slash !== -1 && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= (family === 'ipv4' ? 32 : 128)))) {
      throw new TypeError(`forwarded-allow-ips: ${JSON.stringify(entry)} is not an IP address or subnet`);
    }
    if (slash === -1) list.addAddress(address, family);
    else list.addSubnet(address, prefix, family);
  }
  return {
    trusts(address: string): boolean {
      const plain = unmapIPv4(address);
      const family = net.isIPv4(plain) ? 'ipv4' : net.isIPv6(plain) ? 'ipv6' : null;
      return family !== null && list.check(plain, family);
    },
  };
}

/** unmapIPv4 turns `::ffff:127.0.0.1`, as dual-stack sockets report IPv4 peers, into `127.0.0.1`. */
function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * ForwardedHeaders names the fields a trusted proxy's word is read from: `forwarded` (RFC 7239
 * only), `x-forwarded` (`X-Forwarded-For / -Proto / -Host` only), or `auto` (`Forwarded` when the
 * request has one, else the X-Forwarded family). A proxy appends to the family it speaks and
 * passes the other through from the client untouched, so naming the family is the one setting
 * under which a client can never speak for the proxy; `auto` is right for a proxy that sets
 * `Forwarded`, and for one that sets X-Forwarded-* and removes any `Forwarded` it receives.
 */
export type ForwardedHeaders = 'auto' | 'forwarded' | 'x-forwarded';

/** FORWARDED_HEADERS lists the values {@link ForwardedHeaders} takes, for checking options. */
export const FORWARDED_HEADERS: readonly ForwardedHeaders[] = ['auto', 'forwarded', 'x-forwarded'];

interface Hop {
  for?: string;
  proto?: string;
  host?: string;
}

/**
 * applyForwarded rewrites REMOTE_ADDR, REMOTE_PORT, `nsgi.url_scheme`, HTTP_HOST, SERVER_NAME and
 * SERVER_PORT from what a trusted proxy reports, in the fields `headers` names. Hops are read from
 * the right (the proxy nearest to the server) and skipped while they are trusted proxies
 * themselves; the first untrusted one is the client.
 */
export function applyForwarded(environ: Environ, trusted: TrustedProxies, headers: ForwardedHeaders = 'auto'): void {
  // One family only, never a mix: a proxy that sets Forwarded passes a client's X-Forwarded-For
  // through, and the reverse. In `auto`, Forwarded wins when present: it is the standard field
  // (RFC 7239), and a proxy that bothers to set it speaks it; an X-Forwarded-* next to it is the
  // client's claim.
  const useForwarded = headers === 'forwarded' || (headers === 'auto' && environ.HTTP_FORWARDED !== undefined);
  const hops = useForwarded ? (environ.HTTP_FORWARDED === undefined ? [] : parseForwarded(environ.HTTP_FORWARDED)) : parseXForwarded(environ);
  if (hops.length === 0) return;
  let i = hops.length - 1;
  while (i > 0 && hops[i]!.for !== undefined && trusted.trusts(splitHostPort(hops[i]!.for!).host)) i--;
  const client = hops[i]!;
  // Scheme and host describe the client's request as the outermost trusted proxy received it.
  const proto = (client.proto ?? hops[hops.length - 1]!.proto)?.toLowerCase();
  const host = client.host ?? hops[hops.length - 1]!.host;
  if (client.for !== undefined) {
    const { host: address, port } = splitHostPort(client.for);
    // RFC 7239 §6 allows "unknown" and obfuscated names; only an address replaces the peer's.
    if (net.isIP(address) !== 0) {
      environ.REMOTE_ADDR = address;
      environ.REMOTE_PORT = port !== undefined && /^[0-9]{1,5}$/.test(port) ? port : '0';
    }
  }
  if (proto === 'http' || proto === 'https') environ['nsgi.url_scheme'] = proto;
  if (host !== undefined && /^[A-Za-z0-9\-._~!$&'()*+,;=%[\]:]+$/.test(host)) {
    environ.HTTP_HOST = host;
    const { host: name, port } = splitHostPort(host);
    environ.SERVER_NAME = net.isIPv6(name) ? `[${name}]` : name;
    environ.SERVER_PORT = port ?? (environ['nsgi.url_scheme'] === 'https' ? '443' : '80');
  }
}

/** parseForwarded reads RFC 7239 `Forwarded: for=a;proto=https, for="[::1]:80"` into hops. */
function parseForwarded(value: string): Hop[] {
  const hops: Hop[] = [];
  for (const element of splitOutsideQuotes(value, ',')) {
    const hop: Hop = {};
    for (const pair of splitOutsideQuotes(element, ';')) {
      const eq = pair.indexOf('=');
      if (eq === -1) continue;
      const key = pair.slice(0, eq).trim().toLowerCase();
      let v = pair.slice(eq + 1).trim();
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
      if (key === 'for' || key === 'proto' || key === 'host') hop[key] = v;
    }
    hops.push(hop);
  }
  return hops;
}

/** parseXForwarded reads `X-Forwarded-For` (a list) with `-Proto` and `-Host` for the last hop. */
function parseXForwarded(environ: Environ): Hop[] {
  const xff = environ.HTTP_X_FORWARDED_FOR;
  const proto = lastListItem(environ.HTTP_X_FORWARDED_PROTO);
  const host = lastListItem(environ.HTTP_X_FORWARDED_HOST);
  const hops: Hop[] = xff === undefined ? [] : xff.split(',').map((a) => ({ for: a.trim() }));
  if (hops.length === 0 && (proto !== undefined || host !== undefined)) hops.push({});
  if (hops.length > 0) {
    const last = hops[hops.length - 1]!;
    if (proto !== undefined) last.proto = proto;
    if (host !== undefined) last.host = host;
  }
  return hops;
}

function lastListItem(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',');
  const last = items[items.length - 1]!.trim();
  return last === '' ? undefined : last;
}

/** splitHostPort splits `1.2.3.4:80`, `[::1]:80`, `::1` or `name` into host and port. */
function splitHostPort(value: string): { host: string; port: string | undefined } {
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    const host = value.slice(1, close === -1 ? undefined : close);
    const rest = close === -1 ? '' : value.slice(close + 1);
    return { host, port: rest.startsWith(':') && rest.length > 1 ? rest.slice(1) : undefined };
  }
  const colon = value.indexOf(':');
  if (colon !== -1 && colon === value.lastIndexOf(':')) {
    return { host: value.slice(0, colon), port: value.slice(colon + 1) || undefined };
  }
  return { host: value, port: undefined };
}

function splitOutsideQuotes(value: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === separator && !quoted) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}
