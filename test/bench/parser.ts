/**
 * The parser micro-benchmark: requests per second through the sans-I/O `RequestParser` alone (no
 * socket, no app), for three realistic requests. Beside each figure, for scale only, a naive
 * split-based parse of the same bytes (string splits, no validation, no limits, no streaming):
 * not a real parser, just what the simplest possible code costs.
 *
 *   node --import tsx test/bench/parser.ts [--quick]
 */
import { pathToFileURL } from 'node:url';
import { RequestParser } from '../../src/index.ts';
import { summarize, fmt, fmtRatio, ratios, type Summary } from './lib/stats.ts';

const crlf = (text: string): Buffer => Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');

/** BROWSER_GET is a Chrome-like navigation with 12 header fields. */
const BROWSER_GET = crlf(`GET /articles/2024/nsgi-benchmarks?ref=home&utm_source=feed HTTP/1.1
Host: www.example.com
Connection: keep-alive
Cache-Control: max-age=0
Upgrade-Insecure-Requests: 1
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8
Sec-Fetch-Site: same-origin
Sec-Fetch-Mode: navigate
Sec-Fetch-Dest: document
Accept-Encoding: gzip, deflate, br, zstd
Accept-Language: en-GB,en;q=0.9,fr;q=0.8
Cookie: session=3b1f0c2a9d7e4f6b8a5c1d2e3f4a5b6c; theme=dark; consent=1

`);

const POST_BODY = '{"user":"ada","action":"subscribe","list":"weekly","source":"footer-form"}';
/** SMALL_POST is a JSON form post with a Content-Length. */
const SMALL_POST = crlf(`POST /api/subscribe HTTP/1.1
Host: api.example.com
User-Agent: fetch/1.0
Content-Type: application/json
Accept: application/json
Content-Length: ${POST_BODY.length}

${POST_BODY}`);

const KIB = 'u'.repeat(1024);
/** CHUNKED_UPLOAD is a 4 KiB upload in four 1 KiB chunks. */
const CHUNKED_UPLOAD = Buffer.concat([
  crlf(`POST /upload HTTP/1.1
Host: files.example.com
User-Agent: curl/8.5.0
Content-Type: application/octet-stream
Transfer-Encoding: chunked

`),
  Buffer.from(`400\r\n${KIB}\r\n`.repeat(4) + '0\r\n\r\n', 'latin1'),
]);

/** CASES are the requests benchmarked, each a whole request in one buffer. */
export const CASES: ReadonlyArray<{ name: string; bytes: Buffer }> = [
  { name: 'browser GET, 12 headers', bytes: BROWSER_GET },
  { name: `small POST, ${POST_BODY.length}-byte JSON body`, bytes: SMALL_POST },
  { name: 'chunked upload, 4 x 1 KiB', bytes: CHUNKED_UPLOAD },
];

/**
 * parseWithNsgi runs one request through a kept-alive parser: feed, events until PAUSED, then
 * nextCycle, as the server does. It returns the body bytes seen, so nothing is optimised away.
 */
function parseWithNsgi(parser: RequestParser, bytes: Buffer): number {
  parser.feed(bytes);
  let body = 0;
  for (;;) {
    const event = parser.next();
    if (event.kind === 'data') body += event.data.length;
    else if (event.kind === 'head') body += event.head.headers.length;
    else if (event.kind === 'paused') break;
    else if (event.kind === 'need-data') throw new Error('request incomplete');
  }
  parser.nextCycle();
  return body;
}

/** parseNaively splits strings: no validation, no limits, no streaming. For scale only. */
function parseNaively(bytes: Buffer): number {
  const text = bytes.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  const lines = text.slice(0, headEnd).split('\r\n');
  const [method, target, version] = (lines[0] ?? '').split(' ');
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = lines.length + (method?.length ?? 0) + (target?.length ?? 0) + (version?.length ?? 0);
  let pos = headEnd + 4;
  if (headers['transfer-encoding'] === 'chunked') {
    for (;;) {
      const lineEnd = text.indexOf('\r\n', pos);
      const size = parseInt(text.slice(pos, lineEnd), 16);
      pos = lineEnd + 2;
      if (size === 0) break;
      body += bytes.subarray(pos, pos + size).length;
      pos += size + 2;
    }
  } else if (headers['content-length'] !== undefined) {
    body += bytes.subarray(pos, pos + Number(headers['content-length'])).length;
  }
  return body;
}

/** measure calls `parseOne` in batches for about `ms` milliseconds and returns calls per second. */
function measure(parseOne: () => number, ms: number): number {
  let count = 0;
  let sink = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 1000; i++) sink += parseOne();
    count += 1000;
    now = performance.now();
  }
  if (sink < 0) throw new Error('unreachable');
  return count / ((now - start) / 1000);
}

/** ParserRow is one request's figures. */
export interface ParserRow {
  name: string;
  bytes: number;
  nsgi: Summary;
  naive: Summary;
  /** Median over runs of nsgi/naive from the same run. */
  ratio: number;
}

/** runParserBench measures every case `runs` times for `ms` each, nsgi and naive interleaved. */
export function runParserBench(runs: number, ms: number, progress: (line: string) => void = () => {}): ParserRow[] {
  const rows: ParserRow[] = [];
  for (const c of CASES) {
    const parser = new RequestParser();
    // Warm up both so the first run is not the JIT's.
    measure(() => parseWithNsgi(parser, c.bytes), ms / 2);
    measure(() => parseNaively(c.bytes), ms / 2);
    const nsgi: number[] = [];
    const naive: number[] = [];
    for (let k = 0; k < runs; k++) {
      nsgi.push(measure(() => parseWithNsgi(parser, c.bytes), ms));
      naive.push(measure(() => parseNaively(c.bytes), ms));
      progress(`[parser] ${c.name}: run ${k + 1} of ${runs}: nsgi ${fmt(nsgi[k]!)} req/s, naive split ${fmt(naive[k]!)} req/s`);
    }
    rows.push({ name: c.name, bytes: c.bytes.length, nsgi: summarize(nsgi), naive: summarize(naive), ratio: summarize(ratios(nsgi, naive)).median });
  }
  return rows;
}

/** parserTable renders the rows as a Markdown table. */
export function parserTable(rows: ParserRow[]): string {
  const lines = [
    '| request | bytes | nsgi RequestParser req/s (median) | min | max | naive split req/s (median, no validation) | nsgi / naive |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(`| ${r.name} | ${r.bytes} | ${fmt(r.nsgi.median)} | ${fmt(r.nsgi.min)} | ${fmt(r.nsgi.max)} | ${fmt(r.naive.median)} | ${fmtRatio(r.ratio)} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const rows = runParserBench(quick ? 3 : 5, quick ? 300 : 1000, (line) => console.log(line));
  console.log('\n' + parserTable(rows));
}
