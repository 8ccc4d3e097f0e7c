/**
 * Property tests of the sans-I/O RequestParser with fast-check. The invariants, one line each:
 *
 *   1. Any valid request (or two, pipelined), split anywhere, gives the same events as whole, and
 *      those events are the request that was built.
 *   2. Any bytes at all (random, or a valid request mutated) give only parser events or a
 *      ProtocolError with a 4xx/5xx status — never another exception, never the wrapped
 *      NSGI_PARSER_BUG — and the feed loop always ends; split or whole, the outcome is the same.
 *
 * Bounded for `npm test`: ~200 runs per property and a time limit each. Set NSGI_FUZZ_RUNS (say
 * 20000) for a long run; fast-check prints the seed and the shrunk counterexample on failure.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { parseAll, type ParseResult, type Split } from '../helpers/bytes.ts';

const RUNS = Number(process.env.NSGI_FUZZ_RUNS ?? 200);
const TIME_LIMIT_MS = Number(process.env.NSGI_FUZZ_MS ?? (RUNS > 200 ? 600_000 : 4_000));
const PARAMS = { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS } as const;

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split('');
/** Bytes a request-target may hold: visible ASCII but `#`. */
const TARGET_CHARS = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => c !== '#');
/** Visible ASCII. */
const VISIBLE = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i));
/** Bytes a field value may hold inside (not at its ends): visible ASCII, SP, HTAB, obs-text. */
const VALUE_INNER = [...VISIBLE, ' ', '\t', '\x80', '\xa0', '\xe9', '\xff'];
const VALUE_EDGE = [...VISIBLE, '\x80', '\xe9', '\xff'];
/** Field names the parser reads for framing or connection handling; the generator sets those itself. */
const RESERVED = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'expect', 'upgrade']);

const token = (max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: max });

const fieldValue: fc.Arbitrary<string> = fc.oneof(
  fc.constant(''),
  fc.tuple(fc.constantFrom(...VALUE_EDGE), fc.string({ unit: fc.constantFrom(...VALUE_INNER), maxLength: 30 }), fc.constantFrom(...VALUE_EDGE)).map(
    ([a, mid, z]) => a + mid + z,
  ),
  fc.constantFrom(...VALUE_EDGE),
);

const header: fc.Arbitrary<[string, string]> = fc
  .tuple(token(20), fieldValue)
  .filter(([name]) => !RESERVED.has(name.toLowerCase()));

/** OWS around a value: optional spaces and tabs the parser must strip. */
const ows = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 2 });

const chunkExt: fc.Arbitrary<string> = fc.oneof(
  fc.constant(''),
  fc.tuple(token(6), fc.option(fc.oneof(token(6), fc.string({ unit: fc.constantFrom('a', ' ', ';', ',', '=', '\\"'), maxLength: 6 }).map((s) => `"${s}"`)), { nil: undefined })).map(
    ([name, value]) => `;${name}${value === undefined ? '' : `=${value}`}`,
  ),
);

interface Built {
  bytes: Buffer;
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

/** A whole valid HTTP/1.1 request, with the parts it was built from. */
const request: fc.Arbitrary<Built> = fc
  .record({
    method: token(12),
    path: fc.string({ unit: fc.constantFrom(...TARGET_CHARS), maxLength: 40 }),
    headers: fc.array(fc.tuple(header, ows, ows), { maxLength: 8 }),
    body: fc.uint8Array({ maxLength: 300 }),
    framing: fc.constantFrom('none', 'length', 'chunked'),
    cuts: fc.array(fc.nat(), { maxLength: 6 }),
    exts: fc.array(chunkExt, { maxLength: 8 }),
    upperHex: fc.boolean(),
    zeros: fc.nat(3),
    trailers: fc.array(header, { maxLength: 2 }),
  })
  .map((r) => {
    const body = r.framing === 'none' ? Buffer.alloc(0) : Buffer.from(r.body);
    const target = `/${r.path}`;
    const headers: Array<[string, string]> = [['Host', 'example.com']];
    const lines = ['Host: example.com'];
    for (const [[name, value], before, after] of r.headers) {
      headers.push([name, value]);
      lines.push(`${name}:${before}${value}${value === '' ? '' : after}`);
    }
    if (r.framing === 'length') {
      headers.push(['Content-Length', String(body.length)]);
      lines.push(`Content-Length: ${body.length}`);
    } else if (r.framing === 'chunked') {
      headers.push(['Transfer-Encoding', 'chunked']);
      lines.push('Transfer-Encoding: chunked');
    }
    const parts: Buffer[] = [Buffer.from(`${r.method} ${target} HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`, 'latin1')];
    if (r.framing === 'length') parts.push(body);
    if (r.framing === 'chunked') {
      const points = [...new Set(r.cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      let i = 0;
      for (const p of [...points, body.length]) {
        if (p === from) continue;
        let size = (p - from).toString(16);
        if (r.upperHex) size = size.toUpperCase();
        parts.push(Buffer.from(`${'0'.repeat(r.zeros)}${size}${r.exts[i++ % Math.max(1, r.exts.length)] ?? ''}\r\n`, 'latin1'), body.subarray(from, p), Buffer.from('\r\n'));
        from = p;
      }
      parts.push(Buffer.from(`0\r\n${r.trailers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1'));
    }
    return { bytes: Buffer.concat(parts), method: r.method, target, headers, body };
  });

/** Split points anywhere in a buffer of length `n` (as an array for parseAll). */
const splitsFor = (n: number): fc.Arbitrary<number[]> => fc.array(fc.integer({ min: 0, max: n }), { minLength: 1, maxLength: 12 });

/**
 * outcome is what a parse run shows: its events, how it ended, and the error's status. Not the
 * error's code: a line with two faults (a bad method byte and a bare LF, say) may be named by
 * either, depending on whether the early request-line check saw the prefix before the line end
 * arrived; the status, and so what the client sees, is the same.
 */
function outcome(result: ParseResult): unknown {
  return { events: result.events, last: result.last, status: result.error?.status };
}

/** parseSafely is parseAll with the fuzz invariant checked: only a ProtocolError, never a parser bug. */
function parseSafely(bytes: Buffer, split: Split, requests = 1): ParseResult {
  let result: ParseResult;
  try {
    result = parseAll(bytes, { split, requests });
  } catch (err) {
    throw new Error(`not a ProtocolError for ${JSON.stringify(bytes.toString('latin1'))} split ${JSON.stringify(split)}: ${String(err)}`);
  }
  if (result.error !== undefined) {
    expect(result.error).toBeInstanceOf(ProtocolError);
    expect(result.error.code).not.toBe('NSGI_PARSER_BUG');
    expect(result.error.status).toBeGreaterThanOrEqual(400);
    expect(result.error.status).toBeLessThan(600);
  }
  return result;
}

describe('valid requests split anywhere', () => {
  it('give the same events as whole, and the events are the request built', () => {
    fc.assert(
      fc.property(
        request.chain((r) => fc.tuple(fc.constant(r), splitsFor(r.bytes.length))),
        ([r, split]) => {
          const whole = parseSafely(r.bytes, 'whole');
          expect(whole.error).toBeUndefined();
          expect(whole.last).toBe('paused');
          const [head, ...rest] = whole.events;
          expect(head?.kind).toBe('head');
          if (head?.kind !== 'head') return;
          expect(head.head.method).toBe(r.method);
          expect(head.head.target).toBe(r.target);
          expect(head.head.headers).toEqual(r.headers);
          const body = rest.filter((e) => e.kind === 'data').map((e) => (e as { data: Buffer }).data);
          expect(Buffer.concat(body).equals(r.body)).toBe(true);
          expect(rest[rest.length - 1]?.kind).toBe('paused');
          expect(rest[rest.length - 2]?.kind).toBe('end');
          expect(outcome(parseSafely(r.bytes, split))).toEqual(outcome(whole));
        },
      ),
      PARAMS,
    );
  });

  it('two pipelined requests split anywhere give the same events as whole', () => {
    fc.assert(
      fc.property(
        fc.tuple(request, request).chain(([a, b]) => {
          const bytes = Buffer.concat([a.bytes, b.bytes]);
          return fc.tuple(fc.constant(bytes), splitsFor(bytes.length));
        }),
        ([bytes, split]) => {
          const whole = parseSafely(bytes, 'whole', 2);
          expect(whole.last).toBe('paused');
          expect(whole.events.filter((e) => e.kind === 'head')).toHaveLength(2);
          expect(outcome(parseSafely(bytes, split, 2))).toEqual(outcome(whole));
        },
      ),
      PARAMS,
    );
  });

  it('byte by byte gives the same events as whole', () => {
    fc.assert(
      fc.property(request, (r) => {
        expect(outcome(parseSafely(r.bytes, 'bytes'))).toEqual(outcome(parseSafely(r.bytes, 'whole')));
      }),
      { ...PARAMS, numRuns: Math.min(RUNS, 100) },
    );
  });
});

/** Bytes that matter to HTTP/1.1 framing, more likely than others in the random inputs. */
const INTERESTING = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x00, 0x30, 0x2c, 0x3b, 0x22, 0x7f, 0xff, 0x66];
const interestingByte = fc.oneof(fc.constantFrom(...INTERESTING), fc.integer({ min: 0, max: 255 }));

type Mutation = { op: 'flip' | 'set' | 'insert' | 'delete' | 'duplicate'; at: number; byte: number; len: number };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom('flip', 'set', 'insert', 'delete', 'duplicate'),
  at: fc.nat(),
  byte: interestingByte,
  len: fc.integer({ min: 1, max: 16 }),
});

/** mutate applies each mutation in turn to a copy of `bytes`. */
function mutate(bytes: Buffer, mutations: Mutation[]): Buffer {
  let buf = Buffer.from(bytes);
  for (const m of mutations) {
    const at = buf.length === 0 ? 0 : m.at % buf.length;
    switch (m.op) {
      case 'flip':
        if (buf.length > 0) buf[at] = buf[at]! ^ (1 << m.byte % 8);
        break;
      case 'set':
        if (buf.length > 0) buf[at] = m.byte;
        break;
      case 'insert':
        buf = Buffer.concat([buf.subarray(0, at), Buffer.from([m.byte]), buf.subarray(at)]);
        break;
      case 'delete':
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.len)]);
        break;
      case 'duplicate':
        buf = Buffer.concat([buf.subarray(0, at + m.len), buf.subarray(at)]);
        break;
    }
  }
  return buf;
}

describe('any bytes give events or a ProtocolError, never another exception or a hang', () => {
  it('random bytes, whole and split, with the same outcome both ways', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 400 }).chain((u) => fc.tuple(fc.constant(Buffer.from(u)), splitsFor(u.length))),
        ([bytes, split]) => {
          const whole = parseSafely(bytes, 'whole', 1000);
          expect(outcome(parseSafely(bytes, split, 1000))).toEqual(outcome(whole));
        },
      ),
      PARAMS,
    );
  });

  it('random bytes drawn mostly from framing characters, after a valid request line', () => {
    fc.assert(
      fc.property(
        fc.array(interestingByte, { maxLength: 200 }).chain((arr) => {
          const bytes = Buffer.concat([Buffer.from('POST / HTTP/1.1\r\n'), Buffer.from(arr)]);
          return fc.tuple(fc.constant(bytes), splitsFor(bytes.length));
        }),
        ([bytes, split]) => {
          const whole = parseSafely(bytes, 'whole', 1000);
          expect(outcome(parseSafely(bytes, split, 1000))).toEqual(outcome(whole));
        },
      ),
      PARAMS,
    );
  });

  it('mutated valid requests, whole and split, with the same outcome both ways', () => {
    fc.assert(
      fc.property(
        fc.tuple(request, fc.array(mutation, { minLength: 1, maxLength: 4 })).chain(([r, ms]) => {
          const bytes = mutate(r.bytes, ms);
          return fc.tuple(fc.constant(bytes), splitsFor(bytes.length));
        }),
        ([bytes, split]) => {
          const whole = parseSafely(bytes, 'whole', 1000);
          expect(outcome(parseSafely(bytes, split, 1000))).toEqual(outcome(whole));
          // A mutated request is never read as more requests than bytes allow: each needs a head.
          expect(whole.events.filter((e) => e.kind === 'head').length).toBeLessThanOrEqual(2);
        },
      ),
      PARAMS,
    );
  });
});
