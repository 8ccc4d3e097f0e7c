/**
 * The request body as the app sees it: `nsgi.input` (SPEC §5), an async iterable fed by the
 * server as bytes arrive, with backpressure in both directions.
 */
import { InputBase } from './input.ts';

/**
 * INPUT_HIGH_WATER_MARK is how much memory unread body pieces may take before the server stops
 * reading the socket, counted by {@link RequestInput.bufferedCost}: their bytes and their objects.
 */
export const INPUT_HIGH_WATER_MARK = 64 * 1024;

/**
 * INPUT_READ_AHEAD is how many unparsed bytes are read past a full request input before the socket
 * is paused: enough to see a client's FIN behind the rest of a body it sent in tiny chunks, at a
 * bounded cost of compact bytes per connection (beside the input's own INPUT_HIGH_WATER_MARK).
 */
export const INPUT_READ_AHEAD = 256 * 1024;

/**
 * CHUNK_COST is what one queued piece costs beyond its bytes: the Buffer view and its queue slot,
 * about 100 bytes on V8. Counting bytes alone, a chunked body of 1-byte chunks queued 65,536
 * objects (8 MiB) before the mark was reached.
 */
export const CHUNK_COST = 128;

/**
 * SMALL_PIECE is the size below which a piece is copied into a shared buffer of
 * COALESCE_BUFFER_SIZE bytes rather than queued as an object of its own. The copy also lets go of
 * the socket read it was cut from, which a small view would keep alive whole.
 */
const SMALL_PIECE = 4096;
const COALESCE_BUFFER_SIZE = 16 * 1024;

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
  // What each queued piece costs (its bytes, or a shared buffer's size, plus CHUNK_COST), in step with queue.
  private costs: number[] | null = null;
  private queued = 0;
  // The shared buffer small pieces are copied into, while it is the queue's last piece, and how much of it is used.
  private tail: Buffer | null = null;
  private tailUsed = 0;
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

  /** push queues body bytes and returns false when the queue's cost is above the high-water mark. */
  push(data: Uint8Array): boolean {
    if (this.abandoned) return true;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w.resolve({ done: false, value: data });
      return true;
    }
    const tail = this.tail;
    if (data.length < SMALL_PIECE) {
      if (tail !== null && this.tailUsed + data.length <= tail.length) {
        tail.set(data, this.tailUsed);
        this.tailUsed += data.length;
        return this.queued < INPUT_HIGH_WATER_MARK;
      }
      const fresh = Buffer.allocUnsafe(COALESCE_BUFFER_SIZE);
      fresh.set(data, 0);
      this.tail = fresh;
      this.tailUsed = data.length;
      this.enqueue(fresh, COALESCE_BUFFER_SIZE + CHUNK_COST);
    } else {
      this.tail = null;
      this.enqueue(data, data.length + CHUNK_COST);
    }
    return this.queued < INPUT_HIGH_WATER_MARK;
  }

  private enqueue(piece: Uint8Array, cost: number): void {
    (this.queue ??= []).push(piece);
    (this.costs ??= []).push(cost);
    this.queued += cost;
  }

  /** bufferedCost is what the pieces waiting for the app cost in memory: bytes and objects, as the high-water mark counts them. */
  get bufferedCost(): number {
    return this.queued;
  }

  /** bufferedPieces is how many objects hold the bytes waiting for the app. */
  get bufferedPieces(): number {
    return this.queue?.length ?? 0;
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
    this.clearQueue();
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
      let value = this.queue.shift()!;
      if (value === this.tail) {
        value = this.tail.subarray(0, this.tailUsed);
        this.tail = null;
      }
      const wasFull = this.queued >= INPUT_HIGH_WATER_MARK;
      this.queued -= this.costs!.shift()!;
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
    this.clearQueue();
    this.hooks.resumeInput(this);
    return Promise.resolve(DONE);
  }

  private clearQueue(): void {
    this.queue = this.costs = this.tail = null;
    this.queued = this.tailUsed = 0;
  }
}
