/**
 * The character classes of RFC 9110 and RFC 9112 that the parser and the writer check bytes
 * against. Tables are indexed by byte value so the hot loops do one load per byte.
 */

function table(accepts: (byte: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) t[b] = accepts(b) ? 1 : 0;
  return t;
}

const isAlphaNum = (b: number): boolean =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);

/** TOKEN marks tchar (RFC 9110 §5.6.2): the bytes allowed in a method, field name or coding. */
export const TOKEN = table((b) => isAlphaNum(b) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b)));

/**
 * FIELD_VALUE marks the bytes allowed inside a field value (RFC 9110 §5.5): visible ASCII, space,
 * tab and obs-text. CR, LF, NUL and the other controls are excluded.
 */
export const FIELD_VALUE = table((b) => b === 0x09 || (b >= 0x20 && b !== 0x7f));

/**
 * TARGET marks the bytes allowed in a request-target (RFC 9112 §3.2, RFC 3986 §2): visible ASCII
 * only. Raw spaces, controls and non-ASCII bytes must be percent-encoded by the client, and `#`
 * never appears: no form of request-target has a fragment.
 */
export const TARGET = table((b) => b > 0x20 && b < 0x7f && b !== 0x23);

/** HEX maps a hexadecimal digit byte to its value, and every other byte to 255. */
export const HEX = (() => {
  const t = new Uint8Array(256).fill(255);
  for (let i = 0; i < 10; i++) t[0x30 + i] = i;
  for (let i = 0; i < 6; i++) {
    t[0x41 + i] = 10 + i;
    t[0x61 + i] = 10 + i;
  }
  return t;
})();

/** isToken tells whether `s` is a non-empty RFC 9110 token. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TOKEN[c] === 0) return false;
  }
  return true;
}

/**
 * isFieldValue tells whether `s` may be sent as a field value: no CR, LF, NUL or other controls
 * except tab, and no character above U+00FF (field values go out as latin-1).
 */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || FIELD_VALUE[c] === 0) return false;
  }
  return true;
}

// uri-host is an IP-literal in brackets or a reg-name (RFC 3986 §3.2.2); an IPv4 address is a
// reg-name as far as the characters go. The brackets' content is checked by isIPv6.
const HOST = /^(?:\[([0-9A-Fa-f:.]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
const H16 = /^[0-9A-Fa-f]{1,4}$/;

/** isHost tells whether `s` is a valid Host field value: `uri-host [ ":" port ]` (RFC 9110 §7.2). */
export function isHost(s: string): boolean {
  const m = HOST.exec(s);
  return m !== null && (m[1] === undefined || isIPv6(m[1]));
}

/** isIPv6 tells whether `s` is an IPv6address (RFC 3986 §3.2.2): eight groups, or fewer around one `::`. */
function isIPv6(s: string): boolean {
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = halves.map((h) => (h === '' ? [] : h.split(':')));
  // Only the very last group may be a dotted IPv4 address, standing for two groups.
  const lastHalf = groups[groups.length - 1]!;
  let count = groups[0]!.length + (groups.length === 2 ? lastHalf.length : 0);
  const last = lastHalf[lastHalf.length - 1];
  if (last !== undefined && last.includes('.')) {
    if (!IPV4.test(last)) return false;
    lastHalf.pop();
    count++;
  }
  if (!groups.every((g) => g.every((h) => H16.test(h)))) return false;
  return halves.length === 2 ? count <= 7 : count === 8;
}

/** OWS is optional whitespace (RFC 9110 §5.6.3): space or tab. */
export function isOWS(b: number): boolean {
  return b === 0x20 || b === 0x09;
}
