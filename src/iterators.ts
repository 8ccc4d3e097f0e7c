/**
 * What the response cycle needs to handle an app's body iterator safely: checking what an
 * iterator method made, closing an iterator whatever it does while being closed, and telling a
 * promise from a body.
 */
import type { Chunk, ErrorStream } from '../protocol/nsgi.ts';
import { AppError } from './errors.ts';
import { describe } from './http1/fields.ts';

/** AnyIterator is a body's iterator, sync or async. */
export type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>;

/**
 * callReturn calls `it.return()` if it has one (BODY-16), writing whatever it throws or rejects
 * with to `errors` (BODY-18): nothing an iterator does while being closed escapes. It returns the
 * promise an async iterator's `return()` gave, settled once its `finally` has run, if any.
 */
export function callReturn(it: object, errors: ErrorStream): Promise<void> | null {
  try {
    const close = (it as { return?: unknown }).return;
    if (typeof close !== 'function') return null;
    const r: unknown = close.call(it);
    if (isThenable(r)) return Promise.resolve(r).then(() => undefined, (err) => logCloseError(errors, err));
  } catch (err) {
    logCloseError(errors, err);
  }
  return null;
}

function logCloseError(errors: ErrorStream, err: unknown): void {
  errors.write(`nsgi: error while closing the body iterator: ${err instanceof Error ? (err.stack ?? err.message) : describe(err)}`);
}

/** checkIterator returns what a body's iterator method made, if it is an object (BODY-1), else throws. */
export function checkIterator(it: unknown, body: unknown): object {
  if (it === null || (typeof it !== 'object' && typeof it !== 'function')) {
    throw new AppError('NSGI_BAD_BODY', `the iterator method of the body ${describe(body)} returned ${describe(it)}, not an iterator (SPEC §3, BODY-1)`);
  }
  return it;
}

/** isThenable tells whether `v` has a `then` method, as a promise does. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<unknown>).then === 'function';
}

export function isNonEmptyChunk(chunk: unknown): chunk is Chunk {
  return (typeof chunk === 'string' || chunk instanceof Uint8Array) && chunk.length > 0;
}

export function byteLength(chunk: Chunk): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
}
