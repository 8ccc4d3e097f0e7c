/**
 * Content coding negotiation (RFC 9110 §12.5.3): which of the codings a server can produce the
 * client's `Accept-Encoding` prefers, by quality value.
 */

/** QVALUE is a quality value (RFC 9110 §12.4.2): 0 to 1 with up to three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * acceptedCodings reads an `Accept-Encoding` field into a map from lower-case coding (or `*`)
 * to its quality, 1 when not given. Members with a malformed weight are skipped.
 */
export function acceptedCodings(field: string): Map<string, number> {
  const codings = new Map<string, number>();
  for (const member of field.split(',')) {
    const [name = '', ...params] = member.split(';');
    const coding = name.trim().toLowerCase();
    if (coding === '') continue;
    let q = 1;
    let valid = true;
    for (const param of params) {
      const [key = '', value = ''] = param.split('=');
      if (key.trim().toLowerCase() !== 'q') continue;
      if (!QVALUE.test(value.trim())) valid = false;
      else q = Number(value.trim());
    }
    if (valid) codings.set(coding, q);
  }
  return codings;
}

/**
 * preferredCoding picks, from `available` (in the server's order of preference, used to break
 * ties), the coding the client weights highest; `identity` when none of them is wanted more than
 * the plain representation, and undefined when the client refuses even that (`identity;q=0`, or
 * `*;q=0` without identity named), which asks for a 406 or the plain representation anyway.
 * A request without `Accept-Encoding` gets `identity`: any coding would be acceptable (RFC 9110
 * §12.5.3), but an old client that sends no field may not decode one.
 */
export function preferredCoding(field: string | undefined, available: readonly string[]): string | undefined {
  if (field === undefined) return 'identity';
  const codings = acceptedCodings(field);
  const star = codings.get('*');
  let best: string | undefined;
  let bestQ = 0;
  for (const coding of available) {
    const q = codings.get(coding) ?? star ?? 0;
    if (q > bestQ) {
      best = coding;
      bestQ = q;
    }
  }
  // The plain representation competes only when the client weights it; named at the same weight,
  // it wins, since compressing then gains nothing the client asked for.
  const identity = codings.get('identity');
  if (best !== undefined && (identity === undefined || bestQ > identity)) return best;
  const identityAcceptable = identity !== undefined ? identity > 0 : star !== 0;
  return identityAcceptable ? 'identity' : best;
}
