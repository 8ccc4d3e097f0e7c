/**
 * The two kinds of failure nsgi reports. A {@link ProtocolError} is the peer's fault: the client
 * sent something HTTP/1.1 does not allow, and the server answers with its `status` and closes. An
 * {@link AppError} is our caller's fault: the app broke the contract, and the server logs it and
 * answers 500 (or cuts the connection if the head has already left). {@link STDERR} is where
 * such reports go unless the server is given another `nsgi.errors`.
 */
import type { ErrorStream } from '../protocol/nsgi.ts';
import { describe } from './http1/fields.ts';

/** ProtocolError is a malformed or unacceptable request; `status` is the response to send. */
export class ProtocolError extends Error {
  /** A stable machine-readable name for the failure, such as `NSGI_HEADERS_TOO_LARGE`. */
  readonly code: string;
  /** The HTTP status to answer with (400, 413, 414, 431, 501, 505, ...). */
  readonly status: number;

  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.status = status;
  }
}

/** AppError is a breach of the contract by the app, named by the SPEC rule it breaks. */
export class AppError extends Error {
  /** A stable machine-readable name for the failure, such as `NSGI_CONTENT_LENGTH_EXCEEDED`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AppError';
    this.code = code;
  }
}

/** ClientGoneError is what pending writes and input reads reject with once the client has left. */
export class ClientGoneError extends Error {
  /** Always `NSGI_CLIENT_GONE`. */
  readonly code = 'NSGI_CLIENT_GONE';

  constructor(message = 'the client closed the connection') {
    super(message);
    this.name = 'ClientGoneError';
  }
}

/** quote renders a peer-supplied value for an error message: JSON-escaped and cut to 64 chars. */
export function quote(value: string): string {
  const cut = value.length > 64 ? value.slice(0, 64) + '...' : value;
  return JSON.stringify(cut);
}

/** ServerClosingError is the reason `nsgi.signal` fires when the server shuts down. */
export class ServerClosingError extends Error {
  /** Always `NSGI_SERVER_CLOSING`. */
  readonly code = 'NSGI_SERVER_CLOSING';

  constructor() {
    super('the server is shutting down');
    this.name = 'ServerClosingError';
  }
}

/**
 * STDERR is the default `nsgi.errors`: each message on its own line of the process's stderr. It
 * never throws (ENV-24): a message that is not a string is written as `String(message)`.
 */
export const STDERR: ErrorStream = {
  write(message: string): void {
    const text = typeof message === 'string' ? message : String(message);
    process.stderr.write(text.endsWith('\n') ? text : text + '\n');
  },
};

/**
 * logAppError writes what an app threw while serving `request` to `errors` (ERR-3): an Error with
 * its stack, anything else described, so that a thrown string or object is still named.
 */
export function logAppError(errors: ErrorStream, request: { readonly method: string; readonly target: string }, err: unknown): void {
  const what = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `non-Error value thrown: ${describe(err)}`;
  errors.write(`nsgi: error in app for ${request.method} ${request.target}: ${what}`);
}
