/**
 * A bounded mutation fuzzer for the reference server over real sockets. Valid requests are
 * mutated (byte flips, random splits, duplicated and reordered header lines, Content-Length and
 * Transfer-Encoding mixes, random chunk sizes) and sent on fresh loopback connections that end
 * with a FIN or a reset at a random point, or not at all. The invariant, checked for every input:
 * the server answers only with well-formed HTTP/1.1 responses and no 500, and closes the
 * connection within a bound once the client has stopped, or by its own deadlines if it never does; after every batch a normal request is still answered and the
 * process's open file descriptors are back at their baseline. Everything is seeded, so a run is
 * repeated by its seed; the count of inputs and every wait are bounded.
 *
 * `test/server/fuzz.test.ts` runs a fixed-seed slice in `npm test`; `npm run fuzz -- --inputs N
 * --seed S` runs a longer one (test/server/fuzz-run.ts).
 */
import { readdirSync } from 'node:fs';
import net from 'node:net';
import type { App } from '../../protocol/nsgi.ts';
import { serve, type Server } from '../../src/index.ts';

/** FuzzOptions bounds a run. */
export interface FuzzOptions {
  /** How many mutated inputs to send. */
  inputs: number;
  /** The seed of the run's random choices. */
  seed: number;
  /** Inputs per batch; after each batch the server is checked. Default 50. */
  batchSize?: number;
  /** Connections open at once within a batch. Default 8. */
  concurrency?: number;
  /** Called after each batch with the inputs done so far. */
  progress?: (done: number, anomalies: number) => void;
}

/** Anomaly is one broken invariant, with what it takes to replay it. */
export interface Anomaly {
  /** What broke: a hang, a malformed or 500 response, an unanswered normal request, a descriptor leak, a server error. */
  kind: 'hang' | 'malformed' | 'server-error' | 'unanswered' | 'fd-leak';
  /** The input's number in the run (its mutation is seeded by it), or -1 for a batch check. */
  input: number;
  detail: string;
}

/** FuzzReport is the outcome of a run. */
export interface FuzzReport {
  inputs: number;
  seed: number;
  anomalies: Anomaly[];
  /** How the inputs ended on the client's side. */
  endings: Record<Ending, number>;
  /** The statuses the server answered, with their counts. */
  statuses: Record<string, number>;
  ms: number;
}

/**
 * Ending is how the client ends an input: a FIN after all of it, a reset, a FIN part way, or
 * silence (the connection kept open, so only the server's own deadlines can end it).
 */
type Ending = 'fin' | 'rst' | 'fin-early' | 'silent';

/** HANG_MS is how long the server may take to close a connection after the client's FIN: far above its linger (2 s). */
const HANG_MS = 5_000;
/** FUZZ_DEADLINE_MS is the fuzzed server's head, body and keep-alive deadline, short so that silent inputs end soon. */
const FUZZ_DEADLINE_MS = 1_500;
/** SILENT_HANG_MS is how long a silent connection may stay open: the longest deadline, the linger (2 s), and a margin. */
const SILENT_HANG_MS = FUZZ_DEADLINE_MS + 2_000 + 2_500;
/** FD_SETTLE_MS bounds the wait for descriptors to return to their baseline after a batch. */
const FD_SETTLE_MS = 5_000;

/** fuzzApp reads the whole body and answers with what it saw; a body it cannot read ends the exchange as the server decides. */
const fuzzApp: App = async (environ, startResponse) => {
  let bytes = 0;
  for await (const chunk of environ['nsgi.input']) bytes += chunk.length;
  const text = `${environ.REQUEST_METHOD} ${environ.PATH_INFO} ${bytes}\n`;
  startResponse('200 OK', [['Content-Type', 'text/plain'], ['Content-Length', String(text.length)]]);
  return [text];
};

/** SEEDS are the valid requests that mutations start from. */
const SEEDS: readonly string[] = [
  'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n',
  'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world',
  'POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  'POST /trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n',
  'PUT /100 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody',
  'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET / HTTP/1.0\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
  'CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 1\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-fuzz\r\n\r\n',
];

/** Random is a seeded generator (mulberry32): the same seed gives the same choices. */
class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** next is a float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** int is an integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** FuzzInput is one mutated request: the pieces to write and how the connection ends. */
export interface FuzzInput {
  pieces: Buffer[];
  ending: Ending;
  /** For `fin-early`: how many bytes are written before the FIN. */
  cut: number;
}

/** makeInput builds input number `n` of the run seeded by `seed`. */
export function makeInput(seed: number, n: number): FuzzInput {
  const rnd = new Random((seed * 0x9e3779b1 + n * 0x85ebca6b) >>> 0);
  let text = rnd.pick(SEEDS);
  const rounds = 1 + rnd.int(3);
  for (let i = 0; i < rounds; i++) text = rnd.pick(TEXT_MUTATIONS)(text, rnd);
  let bytes = Buffer.from(text, 'latin1');
  const flips = rnd.next() < 0.4 ? 1 + rnd.int(3) : 0;
  for (let i = 0; i < flips && bytes.length > 0; i++) {
    bytes = Buffer.from(bytes);
    const at = rnd.int(bytes.length);
    bytes[at] = rnd.next() < 0.5 ? bytes[at]! ^ (1 << rnd.int(8)) : rnd.int(256);
  }
  const pieces: Buffer[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const size = rnd.next() < 0.3 ? bytes.length - pos : 1 + rnd.int(Math.max(1, Math.ceil((bytes.length - pos) / 2)));
    pieces.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  const roll = rnd.next();
  const ending: Ending = roll < 0.68 ? 'fin' : roll < 0.83 ? 'rst' : roll < 0.97 ? 'fin-early' : 'silent';
  return { pieces, ending, cut: rnd.int(bytes.length + 1) };
}

type Mutation = (text: string, rnd: Random) => string;

/** headLines splits a request into its head's lines and the rest (body and any pipelined request). */
function headLines(text: string): { lines: string[]; rest: string } {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return { lines: text.split('\r\n'), rest: '' };
  return { lines: text.slice(0, end).split('\r\n'), rest: text.slice(end + 4) };
}

function joinHead(lines: string[], rest: string): string {
  return `${lines.join('\r\n')}\r\n\r\n${rest}`;
}

const TEXT_MUTATIONS: readonly Mutation[] = [
  // A header line duplicated.
  (text, rnd) => {
    const { lines, rest } = headLines(text);
    if (lines.length < 2) return text;
    const i = 1 + rnd.int(lines.length - 1);
    lines.splice(i, 0, lines[i]!);
    return joinHead(lines, rest);
  },
  // Header lines reordered (the request line may move too).
  (text, rnd) => {
    const { lines, rest } = headLines(text);
    const i = rnd.int(lines.length);
    const j = rnd.int(lines.length);
    [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    return joinHead(lines, rest);
  },
  // Content-Length and Transfer-Encoding mixed in.
  (text, rnd) => {
    const { lines, rest } = headLines(text);
    const field = rnd.pick([
      `Content-Length: ${rnd.int(40)}`,
      'Content-Length: -1',
      `Content-Length: ${rnd.int(9)}, ${rnd.int(9)}`,
      'Transfer-Encoding: chunked',
      'Transfer-Encoding: chunked, chunked',
      'Transfer-Encoding: gzip, chunked',
      'Transfer-Encoding: xchunked',
      'Transfer-Encoding : chunked',
      ' Transfer-Encoding: chunked',
      'Transfer-Encoding:\tchunked',
    ]);
    lines.splice(1 + rnd.int(lines.length), 0, field);
    return joinHead(lines, rest);
  },
  // The body re-chunked with random sizes, sometimes stated wrongly.
  (text, rnd) => {
    const { lines, rest } = headLines(text);
    const body = rest.length > 0 ? rest : 'x'.repeat(1 + rnd.int(30));
    const kept = lines.filter((l) => !/^(content-length|transfer-encoding):/i.test(l));
    kept.push('Transfer-Encoding: chunked');
    let out = '';
    for (let pos = 0; pos < body.length; ) {
      const size = 1 + rnd.int(body.length - pos);
      const stated = rnd.next() < 0.15 ? size + rnd.int(5) - 2 : size;
      out += `${Math.max(0, stated).toString(16)}${rnd.next() < 0.1 ? ';ext=1' : ''}\r\n${body.slice(pos, pos + size)}\r\n`;
      pos += size;
    }
    return joinHead(kept, `${out}0\r\n\r\n`);
  },
  // A random run of bytes inserted.
  (text, rnd) => {
    const at = rnd.int(text.length + 1);
    const run = Array.from({ length: 1 + rnd.int(6) }, () => String.fromCharCode(rnd.pick([0, 9, 10, 13, 32, 58, 127, 255, rnd.int(256)]))).join('');
    return text.slice(0, at) + run + text.slice(at);
  },
  // A slice removed.
  (text, rnd) => {
    const at = rnd.int(text.length);
    return text.slice(0, at) + text.slice(at + 1 + rnd.int(8));
  },
];

/** openFds counts this process's open file descriptors (Linux), or -1 where that cannot be read. */
export function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

/** runFuzz starts a server, sends the run's inputs in batches, checks it after each, and closes it. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const errors: string[] = [];
  const server = await serve(fuzzApp, { host: '127.0.0.1', port: 0, errors: { write: (m) => void errors.push(m) },
    headersTimeout: FUZZ_DEADLINE_MS,
    bodyTimeout: FUZZ_DEADLINE_MS,
    keepAliveTimeout: FUZZ_DEADLINE_MS,
  });
  const report: FuzzReport = { inputs: options.inputs, seed: options.seed, anomalies: [], endings: { fin: 0, rst: 0, 'fin-early': 0, silent: 0 }, statuses: {}, ms: 0 };
  try {
    const batchSize = options.batchSize ?? 50;
    const concurrency = options.concurrency ?? 8;
    await checkServer(server, -1, report);
    const baseline = openFds();
    for (let first = 0; first < options.inputs; first += batchSize) {
      const last = Math.min(options.inputs, first + batchSize);
      let next = first;
      const worker = async (): Promise<void> => {
        while (next < last) {
          const n = next++;
          await sendInput(server.port, n, makeInput(options.seed, n), report);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      for (const line of errors.splice(0)) {
        if (/NSGI_PARSER_BUG|TypeError|ReferenceError|RangeError/.test(line)) report.anomalies.push({ kind: 'server-error', input: -1, detail: line.slice(0, 300) });
      }
      await checkServer(server, first, report);
      if (baseline >= 0 && !(await settles(() => openFds() <= baseline, FD_SETTLE_MS))) {
        report.anomalies.push({ kind: 'fd-leak', input: first, detail: `${openFds()} descriptors open after the batch from ${first}, ${baseline} before` });
      }
      options.progress?.(last, report.anomalies.length);
    }
  } finally {
    await server.close({ timeout: 2_000 });
  }
  report.ms = Date.now() - started;
  return report;
}

/** sendInput sends one input on a fresh connection and records what breaks the invariant. */
async function sendInput(port: number, n: number, input: FuzzInput, report: FuzzReport): Promise<void> {
  report.endings[input.ending]++;
  const socket = net.connect({ port, host: '127.0.0.1' });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()).once('close', () => resolve()));
  let written = 0;
  for (const piece of input.pieces) {
    if (socket.destroyed) break;
    if (input.ending === 'fin-early' && written + piece.length > input.cut) {
      socket.write(piece.subarray(0, input.cut - written));
      break;
    }
    socket.write(piece);
    written += piece.length;
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (input.ending === 'rst') {
    socket.resetAndDestroy();
    await closed;
    return;
  }
  if (input.ending !== 'silent') socket.end();
  const bound = input.ending === 'silent' ? SILENT_HANG_MS : HANG_MS;
  let timer: NodeJS.Timeout | undefined;
  const hung = await Promise.race([closed.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), bound)))]);
  clearTimeout(timer);
  if (hung) {
    const after = input.ending === 'silent' ? 'with the client silent' : "after the client's FIN";
    report.anomalies.push({ kind: 'hang', input: n, detail: `connection still open ${bound} ms ${after}; received ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 120))}` });
    socket.destroy();
    await closed;
  }
  checkResponses(Buffer.concat(chunks), Buffer.concat(input.pieces).subarray(0, 5).toString('latin1') === 'HEAD ', n, report);
}

/**
 * checkResponses checks that `data` is a run of HTTP/1.1 responses, the last possibly cut short,
 * with no 500. `headFirst` says the first request was HEAD, whose response has no body.
 */
function checkResponses(data: Buffer, headFirst: boolean, n: number, report: FuzzReport): void {
  let pos = 0;
  let noBody = headFirst;
  while (pos < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', pos);
    if (headEnd === -1) return; // a head cut by the end of the connection
    const head = data.toString('latin1', pos, headEnd);
    const m = /^HTTP\/1\.1 (\d{3}) [^\r\n]*/.exec(head);
    if (m === null) {
      report.anomalies.push({ kind: 'malformed', input: n, detail: `not a status line: ${JSON.stringify(head.slice(0, 80))}` });
      return;
    }
    const status = m[1]!;
    report.statuses[status] = (report.statuses[status] ?? 0) + 1;
    if (status === '500') report.anomalies.push({ kind: 'server-error', input: n, detail: head.slice(0, 200) });
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    const informational = status.startsWith('1');
    if (informational) {
      pos = headEnd + 4;
      continue;
    }
    if (noBody) {
      noBody = false;
      pos = headEnd + 4;
      continue;
    }
    if (length === null) return; // close-delimited or chunked: the rest is its body
    pos = headEnd + 4 + Number(length[1]);
  }
}

/** checkServer sends a normal request on a fresh connection and records an anomaly unless it gets its 200. */
async function checkServer(server: Server, batch: number, report: FuzzReport): Promise<void> {
  const socket = net.connect({ port: server.port, host: '127.0.0.1' });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.end('GET /check HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const ok = await settles(() => Buffer.concat(chunks).toString('latin1').includes('GET /check 0'), HANG_MS);
  socket.destroy();
  if (!ok) report.anomalies.push({ kind: 'unanswered', input: batch, detail: `a normal request after the batch from ${batch} got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 80))}` });
}

/** settles polls `check` every 20 ms until it holds (true) or `ms` pass (false). */
async function settles(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}
