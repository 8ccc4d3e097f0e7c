/**
 * The body pump: the loops that pull an app's body from its iterator, one chunk at a time, and
 * hand each chunk to its {@link ResponseCycle}, waiting for drain whenever the receiver is full
 * (SPEC §3.3). A sync iterator is pulled in a plain loop with no await between chunks; an async
 * one is awaited chunk by chunk. The life of a response is told at the top of `cycle.ts`.
 */
import type { ResponseCycle } from './cycle.ts';
import { AppError } from './errors.ts';
import { FileReader } from './helpers/file-body.ts';
import { describe } from './http1/fields.ts';
import { BodyRule } from './http1/writer.ts';
import { checkIterator, isNonEmptyChunk } from './iterators.ts';

/** pump opens the body an app returned and pulls it to its end, or fails the cycle with the reason it cannot. */
export function pump(c: ResponseCycle, body: unknown): void {
  if (body === null || typeof body !== 'object' || body instanceof Uint8Array) {
    const hint =
      typeof body === 'string' || body instanceof Uint8Array ? '; wrap it in an array: [body]'
      : typeof body === 'function' ? '; is the export a factory that makes the app? Export the app it returns'
      : '';
    c.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks${hint} (SPEC §3, BODY-1)`));
    return;
  }
  try {
    const asyncFn = (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
    const syncFn = (body as Partial<Iterable<unknown>>)[Symbol.iterator];
    // BODY-2: an object that is both is iterated asynchronously.
    if (typeof asyncFn === 'function') {
      const it = checkIterator(asyncFn.call(body), body) as AsyncIterator<unknown>;
      c.iterator = it;
      // A file body pulled by nothing but this pump may read into the memory of a chunk the
      // receiver has finished with, when the sink can tell.
      const sink = c.sink;
      if (it instanceof FileReader && sink.idle !== undefined) it.reuseBuffers(sink.idle.bind(sink));
      // A body that comes after the client left is opened only to be closed.
      if (c.finished) return c.closeIterator();
      void pumpAsync(c, it);
    } else if (typeof syncFn === 'function') {
      const it = checkIterator(syncFn.call(body), body) as Iterator<unknown>;
      c.iterator = it;
      if (c.finished) return c.closeIterator();
      void pumpSync(c, it);
    } else {
      c.fail(new AppError('NSGI_BAD_BODY', `the app returned ${describe(body)}, not an iterable of chunks (SPEC §3, BODY-1)`));
    }
  } catch (err) {
    c.fail(err);
  }
}

async function pumpSync(c: ResponseCycle, it: Iterator<unknown>): Promise<void> {
  try {
    for (;;) {
      // A bodiless head already out (through write() or a peek) ends the pulling (SR-21).
      if (c.headSent && c.rule !== BodyRule.Body) return c.finish();
      const r = pullSync(c, it);
      if (c.finished) return c.closeIterator();
      if (r.done) return c.finish();
      let chunk = r.value;
      if (!c.headSent && c.started && isNonEmptyChunk(chunk) && c.canPeek()) {
        // The head leaves with the first chunk; peek once more so that a body of one chunk
        // gets a Content-Length (the MAY of SPEC §3.2).
        c.hold(chunk);
        let peek: IteratorResult<unknown>;
        try {
          peek = pullSync(c, it);
        } catch (err) {
          c.releaseHeld();
          throw err;
        }
        if (c.finished) return c.closeIterator();
        if (c.held !== null && peek.done && c.canPeek()) return c.sendWhole();
        if (!c.releaseHeld()) await c.drain();
        if (c.finished) return c.closeIterator();
        if (c.rule !== BodyRule.Body || peek.done) return c.finish();
        chunk = peek.value;
      }
      if (!c.send(chunk)) await c.drain();
      if (c.finished) return c.closeIterator();
    }
  } catch (err) {
    c.fail(err);
  }
}

async function pumpAsync(c: ResponseCycle, it: AsyncIterator<unknown>): Promise<void> {
  try {
    for (;;) {
      if (c.headSent && c.rule !== BodyRule.Body) return c.finish();
      const r = await it.next();
      if (c.finished) return c.closeIterator();
      if (r.done) return c.finish();
      if (!c.send(r.value)) await c.drain();
      if (c.finished) return c.closeIterator();
    }
  } catch (err) {
    c.fail(err);
  }
}

/**
 * pullSync calls a sync iterator's `next()` with the cycle's `pulling` set. While it runs, the
 * iterator cannot be closed (a running generator throws from `return()`), so closing waits for it.
 */
function pullSync(c: ResponseCycle, it: Iterator<unknown>): IteratorResult<unknown> {
  c.pulling = true;
  try {
    return it.next();
  } finally {
    c.pulling = false;
  }
}
