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

const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

/** isHost tells whether `s` is a valid Host field value: `uri-host [ ":" port ]` (RFC 9110 §7.2). */
export function isHost(s: string): boolean {
  return HOST.test(s);
}

/** OWS is optional whitespace (RFC 9110 §5.6.3): space or tab. */
export function isOWS(b: number): boolean {
  return b === 0x20 || b === 0x09;
}
