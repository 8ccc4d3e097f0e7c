/**
 * The request body as the app sees it: `nsgi.input` (SPEC §5), an async iterable fed by the
 * server as bytes arrive, with backpressure in both directions.
 */
import { InputBase } from './input.ts';

/** INPUT_HIGH_WATER_MARK is how many unread body bytes make the server stop reading the socket. */
export const INPUT_HIGH_WATER_MARK = 64 * 1024;

/** InputHooks is how a RequestInput talks back to its connection. */
export interface InputHooks {
  /** Called at the app's first read of a body still to come: time to send `100 Continue`. */
  firstRead(input: RequestInput): void;
  /** Called when the queue falls below the high-water mark: time to read the socket again. */
  resumeInput(input: RequestInput): void;
}

type Waiter = {
  resolve: (r: IteratorResult<Uint8Array>) => void;
  reject: (e: unknown) => void;
};

const DONE: IteratorResult<Uint8Array> = Object.freeze({ done: true, value: undefined });

/**
 * RequestInput is one request's body stream. The server pushes chunks with `push()` (which says
 * when to stop reading), ends it with `end()` or fails it with `fail()`; the app pulls with
 * `for await`. It can be iterated once.
 */
export class RequestInput extends InputBase implements AsyncIterator<Uint8Array> {
  // Made for the first chunk that arrives before the app asks for it: a request without a body,
  // or one read as it arrives, never needs it.
  private queue: Uint8Array[] | null = null;
  private queued = 0;
  private ended = false;
  private error: unknown = null;
  private waiter: Waiter | null = null;
  private started = false;
  /** abandoned is true once the app has stopped reading early (`return()`), or never will. */
  abandoned = false;

  constructor(private readonly hooks: InputHooks, empty: boolean) {
    super();
    this.ended = empty;
  }

  /** push queues body bytes and returns false when the queue is above the high-water mark. */
  push(data: Uint8Array): boolean {
    if (this.abandoned) return true;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve({ done: false, value: data });
      return true;
    }
    (this.queue ??= []).push(data);
    this.queued += data.length;
    return this.queued < INPUT_HIGH_WATER_MARK;
  }

  /** end marks the end of the body. */
  end(): void {
    this.ended = true;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve(DONE);
    }
  }

  /** fail makes the pending and all later reads reject with `error`, unless the body had ended. */
  fail(error: unknown): void {
    if (this.ended && (this.queue === null || this.queue.length === 0)) return;
    this.error = error;
    this.queue = null;
    this.queued = 0;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.reject(error);
    }
  }

  /**
   * discard is the server throwing away the rest of the body (the response ended before the app
   * read it): what arrives is dropped, and reads fail with `reason`.
   */
  discard(reason: unknown): void {
    this.fail(reason);
    this.abandoned = true;
  }

  /** complete is true when every byte of the body has been received. */
  get complete(): boolean {
    return this.ended;
  }

  protected iterate(): AsyncIterator<Uint8Array> {
    return this;
  }

  /** next returns the next piece of the body, waiting for it if need be. */
  next(): Promise<IteratorResult<Uint8Array>> {
    if (!this.started) {
      this.started = true;
      if (this.error === null && !this.ended) this.hooks.firstRead(this);
    }
    if (this.queue !== null && this.queue.length > 0) {
      const value = this.queue.shift()!;
      const wasFull = this.queued >= INPUT_HIGH_WATER_MARK;
      this.queued -= value.length;
      if (wasFull && this.queued < INPUT_HIGH_WATER_MARK) this.hooks.resumeInput(this);
      return Promise.resolve({ done: false, value });
    }
    if (this.error !== null) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve(DONE);
    if (this.waiter !== null) return Promise.reject(new TypeError('nsgi.input read again before the previous read finished'));
    this.hooks.resumeInput(this);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** return stops reading; the server discards the rest of the body. */
  return(): Promise<IteratorResult<Uint8Array>> {
    this.abandoned = true;
    this.queue = null;
    this.queued = 0;
    this.hooks.resumeInput(this);
    return Promise.resolve(DONE);
  }
}
