/**
 * The nsgi contract's types. Nothing here runs: servers, adapters, middleware and apps import these
 * names so that they all agree on one shape. Each type cites the section of `protocol/SPEC.md` that
 * gives its rules.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';

/** Chunk is one piece of a response body: bytes, or a string sent as UTF-8 (SPEC §3.1). */
export type Chunk = Uint8Array | string;

/**
 * Body is what an app returns: any sync or async iterable of chunks (SPEC §3). Generators are the
 * normal case; arrays work too. The server pulls it only as fast as the client reads and calls its
 * iterator's `return()` exactly once when it stops early (SPEC §3.3, §3.4).
 */
export type Body = Iterable<Chunk> | AsyncIterable<Chunk>;

/** HeaderList is a list of `[name, value]` pairs in the order they are sent (SPEC §4.2). */
export type HeaderList = Array<[string, string]>;

/**
 * ExcInfo is the error an app caught, passed to `startResponse` to replace a response whose head
 * is not yet on the wire (SPEC §4.4). Any thrown value is allowed, as JavaScript allows.
 */
export type ExcInfo = unknown;

/**
 * Write is what `startResponse` returns: the push-style channel for apps that write instead of
 * yield (SPEC §4.5).
 */
export interface Write {
  /**
   * Sends `chunk` before any chunk of the returned body. The promise resolves once the server can
   * take more (the client is keeping up) and rejects if the client has gone away.
   */
  (chunk: Chunk): Promise<void>;
  /**
   * Sends the status line and headers now, before any body chunk exists (SPEC §4.6). Without a
   * Content-Length the body is then framed as chunked (HTTP/1.1) or by closing (HTTP/1.0).
   * Calling it again, or after the head has left, does nothing.
   */
  flushHead(): void;
}

/**
 * StartResponse begins the response (SPEC §4). `status` is a three-digit code, a space and a reason
 * phrase (`"200 OK"`). A second call is an error unless `excInfo` is given; with `excInfo` it
 * replaces the status and headers if the head has not been sent, and rethrows `excInfo` if it has.
 */
export type StartResponse = (status: string, headers: HeaderList, excInfo?: ExcInfo) => Write;

/**
 * Input is the request body as it arrives (SPEC §5): an async iterable of byte chunks, with
 * chunked coding already removed. Reading it the first time answers `Expect: 100-continue`. It can
 * be iterated once.
 */
export interface Input extends AsyncIterable<Uint8Array> {
  /** Reads the whole remaining body into one buffer. */
  bytes(): Promise<Uint8Array>;
  /** Reads the whole remaining body and decodes it as UTF-8. */
  text(): Promise<string>;
}

/** ErrorStream is where an app and the server write diagnostics (SPEC §2.3, `nsgi.errors`). */
export interface ErrorStream {
  /** Writes one message; a missing final newline is added. */
  write(message: string): void;
}

/**
 * EarlyHints sends a `103 Early Hints` interim response with the given headers (SPEC §7.1). It is
 * a no-op once the final head has been sent or for an HTTP/1.0 client.
 */
export type EarlyHints = (headers: HeaderList) => void;

/**
 * SetTrailers records trailer fields to send after the last chunk of a chunked body (SPEC §7.2).
 * It returns false when the response is not chunked, so the trailers cannot be sent.
 */
export type SetTrailers = (trailers: HeaderList) => boolean;

/** FileSource is the file a file body sends: a path, or an open handle the body then owns (SPEC §7.3). */
export type FileSource = string | FileHandle;

/** FileWrapperOptions picks the part of the file a file body sends (SPEC §7.3). */
export interface FileWrapperOptions {
  /** The first byte to send; default 0. */
  offset?: number;
  /** How many bytes to send; default: from `offset` to the end of the file. */
  length?: number;
}

/**
 * FileWrapper turns a file, or a range of one, into a body the server sends efficiently
 * (SPEC §7.3). The body is also an ordinary async iterable of chunks, so middleware can wrap it.
 */
export type FileWrapper = (file: FileSource, options?: FileWrapperOptions) => Body;

/** UpgradeOptions tells the server how to switch protocols (SPEC §6.2). */
export interface UpgradeOptions {
  /**
   * When given, the server writes `101 Switching Protocols` with these headers before handing
   * the connection over. When absent, the app writes the 101 itself (the `ws` package does).
   */
  headers?: HeaderList;
}

/** Upgraded is what an accepted upgrade hands the app (SPEC §6.2). */
export interface Upgraded {
  /** The connection, paused, with none of the server's listeners or timers left on it. */
  socket: Socket;
  /** Bytes the client sent after the request head, to be read before anything from the socket. */
  head: Uint8Array;
}

/**
 * Upgrade is the hook through which an app takes over a connection that asks to switch
 * protocols (SPEC §6). It is present only on such requests.
 */
export type Upgrade = (options?: UpgradeOptions) => Upgraded;

/**
 * Environ describes one request (SPEC §2): CGI-style keys, one `HTTP_*` key per request header,
 * and the `nsgi.*` keys. Optional keys are absent, not empty, when they do not apply.
 */
export interface Environ {
  /** The method, case preserved: `"GET"`. */
  REQUEST_METHOD: string;
  /** The mount point of the app, `""` at the root; never ends with `/` (SPEC §2.2). */
  SCRIPT_NAME: string;
  /** The rest of the path, percent-decoded as UTF-8 (SPEC §2.2). */
  PATH_INFO: string;
  /** The part of the target after `?`, undecoded; `""` when there is none. */
  QUERY_STRING: string;
  /** The request-target exactly as received, undecoded. */
  REQUEST_URI: string;
  /** The Content-Type header, when the request has one. */
  CONTENT_TYPE?: string;
  /** The Content-Length header, when the request has one (absent for chunked bodies). */
  CONTENT_LENGTH?: string;
  /** The host the client addressed (from Host, else the bound address). */
  SERVER_NAME: string;
  /** The port the client addressed, as a string. */
  SERVER_PORT: string;
  /** `"HTTP/1.1"` or `"HTTP/1.0"`; `"HTTP/2"` on a server that speaks h2. */
  SERVER_PROTOCOL: string;
  /** The peer's address. */
  REMOTE_ADDR: string;
  /** The peer's port, as a string. */
  REMOTE_PORT: string;

  /** The contract version, `[1, 0]`. */
  'nsgi.version': readonly [number, number];
  /** `"http"` or `"https"`. */
  'nsgi.url_scheme': string;
  /** The request body (SPEC §5). */
  'nsgi.input': Input;
  /** The diagnostics stream. */
  'nsgi.errors': ErrorStream;
  /** Aborted when the client goes away or the server shuts down (SPEC §2.4). */
  'nsgi.signal': AbortSignal;
  /** The request's header fields as received, names in their original case (SPEC §2.3). */
  'nsgi.headers': ReadonlyArray<readonly [string, string]>;
  /** True if another thread may call the same app object at the same time. */
  'nsgi.multithread': boolean;
  /** True if other processes run the same app (workers). */
  'nsgi.multiprocess': boolean;
  /** True if the app is called once and the process then exits (CGI-like). */
  'nsgi.run_once': boolean;

  /** Extension: 103 Early Hints (SPEC §7.1). */
  'nsgi.early_hints'?: EarlyHints;
  /** Extension: response trailers (SPEC §7.2). */
  'nsgi.set_trailers'?: SetTrailers;
  /** Extension: file bodies (SPEC §7.3). */
  'nsgi.file_wrapper'?: FileWrapper;
  /** Extension: the upgrade hook, on upgrade requests only (SPEC §6). */
  'nsgi.upgrade'?: Upgrade;

  /** One key per request header: `HTTP_` plus the name upper-cased with `-` as `_` (SPEC §2.1). */
  [key: `HTTP_${string}`]: string | undefined;
  /** Keys added by middleware or servers; middleware should prefix its keys with its own name. */
  [key: string]: unknown;
}

/**
 * App is the application side of the contract (SPEC §1): called once per request, it calls
 * `startResponse` (now or later, before its first non-empty chunk) and returns the body.
 */
export type App = (environ: Environ, startResponse: StartResponse) => Body | Promise<Body>;
