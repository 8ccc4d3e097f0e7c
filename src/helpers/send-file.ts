/**
 * sendFile: one file as a complete HTTP response, with everything a download needs: validators
 * (ETag, Last-Modified) and the conditional requests they answer (304, 412), byte ranges (206,
 * `multipart/byteranges`, 416, If-Range), HEAD, the media type, and precompressed `.br` / `.gz`
 * siblings chosen by `Accept-Encoding`.
 *
 * The file is opened once and every decision is made from that open handle's `stat`, so a file
 * replaced while the response is under way cannot mix the old validators with the new bytes.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants, type Stats } from 'node:fs';
import type { Body, Environ, HeaderList, StartResponse } from '../../protocol/nsgi.ts';
import { evaluatePreconditions, httpDate, ifRangeHolds, type Validators } from './conditional.ts';
import { FileReader, fileBody } from './file-body.ts';
import { mediaTypeFor } from './mime.ts';
import { preferredCoding } from './negotiate.ts';
import { contentRange, multipartFraming, parseRange, type ByteRange } from './ranges.ts';

/** SendFileOptions configures {@link sendFile}. */
export interface SendFileOptions {
  /** The Content-Type; by default from the file's extension (see `src/helpers/mime.ts`). */
  contentType?: string;
  /** A Cache-Control value, sent on 200, 206 and 304 responses. */
  cacheControl?: string;
  /**
   * Serve `FILE.br` or `FILE.gz` beside the file, when present and the client accepts that coding
   * (its own validators, `Vary: Accept-Encoding`); default false.
   */
  precompressed?: boolean;
  /** More headers for 200 and 206 responses, such as Content-Disposition. */
  headers?: HeaderList;
}

/** PRECOMPRESSED lists the sibling files {@link sendFile} looks for, in order of preference. */
const PRECOMPRESSED: ReadonlyArray<readonly [coding: string, suffix: string]> = [
  ['br', '.br'],
  ['gzip', '.gz'],
];

/** Opened is a regular file open for reading, with its stat and, for a sibling, its coding. */
interface Opened {
  handle: FileHandle;
  stats: Stats;
  coding: string | undefined;
}

/**
 * sendFile answers the request with the file at `path` and returns the body to return from the
 * app. A missing file, or one that is not a regular file, gets a 404; a method other than GET
 * and HEAD a 405. The file is closed however the response ends.
 */
export async function sendFile(environ: Environ, startResponse: StartResponse, path: string, options: SendFileOptions = {}): Promise<Body> {
  const method = environ.REQUEST_METHOD;
  if (method !== 'GET' && method !== 'HEAD') return textResponse(environ, startResponse, '405 Method Not Allowed', undefined, [['Allow', 'GET, HEAD']]);
  const plainFile = await openRegular(path);
  if (plainFile === undefined) return textResponse(environ, startResponse, '404 Not Found');
  let file = plainFile;
  const vary: HeaderList = [];
  if (options.precompressed === true) {
    const siblings: Opened[] = [];
    for (const [coding, suffix] of PRECOMPRESSED) {
      // O_NOFOLLOW: a sibling that is a symbolic link could point anywhere, out of a served
      // tree too, and the file's own path was the only one the caller checked.
      const sibling = await openRegular(path + suffix, coding, constants.O_NOFOLLOW);
      if (sibling !== undefined) siblings.push(sibling);
    }
    if (siblings.length > 0) {
      // The response depends on Accept-Encoding whichever file is chosen (RFC 9110 §12.5.5).
      vary.push(['Vary', 'Accept-Encoding']);
      const coding = preferredCoding(environ.HTTP_ACCEPT_ENCODING, siblings.map((s) => s.coding!));
      file = siblings.find((s) => s.coding === coding) ?? plainFile;
      for (const other of [plainFile, ...siblings]) if (other !== file) await other.handle.close();
    }
  }
  try {
    return await respond(environ, startResponse, path, file, options, vary);
  } catch (err) {
    await file.handle.close();
    throw err;
  }
}

/** respond answers from an open file; it hands the handle to the body or closes it. */
async function respond(environ: Environ, startResponse: StartResponse, path: string, file: Opened, options: SendFileOptions, vary: HeaderList): Promise<Body> {
  const method = environ.REQUEST_METHOD;
  const { size, mtimeMs } = file.stats;
  const validators: Validators = {
    // Size and modification time change with the content in practice; a strong tag lets
    // If-Range resume a download (RFC 9110 §8.8.3). Each coding is its own representation.
    etag: `"${Math.floor(mtimeMs).toString(16)}-${size.toString(16)}${file.coding === undefined ? '' : `-${file.coding}`}"`,
    lastModified: mtimeMs,
  };
  const cache: HeaderList = [['ETag', validators.etag!], ['Last-Modified', httpDate(mtimeMs)], ...vary];
  if (options.cacheControl !== undefined) cache.push(['Cache-Control', options.cacheControl]);

  const outcome = evaluatePreconditions(
    {
      method,
      ifMatch: environ.HTTP_IF_MATCH,
      ifNoneMatch: environ.HTTP_IF_NONE_MATCH,
      ifModifiedSince: environ.HTTP_IF_MODIFIED_SINCE,
      ifUnmodifiedSince: environ.HTTP_IF_UNMODIFIED_SINCE,
    },
    validators,
  );
  if (outcome !== 'proceed') {
    await file.handle.close();
    // A 304 carries the fields a 200 would have for caching (RFC 9110 §15.4.5).
    if (outcome === 'not-modified') {
      startResponse('304 Not Modified', cache);
      return [];
    }
    return textResponse(environ, startResponse, '412 Precondition Failed');
  }

  const type = options.contentType ?? mediaTypeFor(path);
  const entity: HeaderList = [['Accept-Ranges', 'bytes'], ...cache, ...(options.headers ?? [])];
  if (file.coding !== undefined) entity.push(['Content-Encoding', file.coding]);

  // Range applies to GET only (RFC 9110 §14.2), and If-Range may turn it off (RFC 9110 §13.1.5).
  const ifRange = environ.HTTP_IF_RANGE;
  const wanted = method === 'GET' && (ifRange === undefined || ifRangeHolds(ifRange, validators)) ? parseRange(environ.HTTP_RANGE, size) : { kind: 'ignore' as const };
  if (wanted.kind === 'unsatisfiable') {
    await file.handle.close();
    return textResponse(environ, startResponse, '416 Range Not Satisfiable', undefined, [['Content-Range', `bytes */${size}`], ...cache]);
  }
  if (wanted.kind === 'ranges' && wanted.ranges.length === 1) {
    const range = wanted.ranges[0]!;
    const length = range.end - range.start + 1;
    startResponse('206 Partial Content', [['Content-Type', type], ['Content-Length', String(length)], ['Content-Range', contentRange(range, size)], ...entity]);
    return fileBody(environ, file.handle, { offset: range.start, length });
  }
  if (wanted.kind === 'ranges') {
    const framing = multipartFraming(wanted.ranges, size, type);
    startResponse('206 Partial Content', [['Content-Type', framing.contentType], ['Content-Length', String(framing.length)], ...entity]);
    return multipartBody(file.handle, wanted.ranges, framing.partHeads, framing.tail);
  }
  startResponse('200 OK', [['Content-Type', type], ['Content-Length', String(size)], ...entity]);
  if (method === 'HEAD') {
    await file.handle.close();
    return [];
  }
  return fileBody(environ, file.handle, { offset: 0, length: size });
}

/**
 * multipartBody sends several ranges of one open file, each after its part head, then the
 * closing boundary. The file is closed exactly once however the body ends, even when `return()`
 * comes before the first pull (a generator not yet started skips its `finally`).
 */
function multipartBody(handle: FileHandle, ranges: readonly ByteRange[], heads: readonly string[], tail: string): AsyncIterableIterator<Uint8Array | string> {
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  const parts = (async function* () {
    try {
      for (let i = 0; i < ranges.length; i++) {
        yield heads[i]!;
        const { start, end } = ranges[i]!;
        yield* new FileReader(handle, { offset: start, length: end - start + 1 }, false);
      }
      yield tail;
    } finally {
      await close();
    }
  })();
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next: () => parts.next(),
    async return() {
      await parts.return(undefined);
      await close();
      return { done: true, value: undefined };
    },
  };
}

/** openRegular opens `path` for reading, with extra open `flags`, if it is a regular file, else gives undefined. */
async function openRegular(path: string, coding?: string, flags = 0): Promise<Opened | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | flags);
  } catch {
    return undefined; // missing, unreadable, or a path through a non-directory
  }
  const stats = await handle.stat();
  if (!stats.isFile()) {
    await handle.close();
    return undefined;
  }
  return { handle, stats, coding };
}

/**
 * textResponse answers with a one-line plain-text body, by default the status's reason phrase;
 * a HEAD request gets the head only.
 */
export function textResponse(environ: Environ, startResponse: StartResponse, status: string, message = status.slice(4), headers: HeaderList = []): Body {
  const text = `${message}\n`;
  startResponse(status, [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(Buffer.byteLength(text))], ...headers]);
  return environ.REQUEST_METHOD === 'HEAD' ? [] : [text];
}
