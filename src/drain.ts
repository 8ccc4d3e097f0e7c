/**
 * Waiting for drain, for every writer that pulls only as fast as its receiver takes: the server's
 * socket, a node:http response, a fetch Response's stream (SPEC §3.3).
 */

/**
 * DrainWaiter is the one promise a writer awaits until its receiver can take more. Every wait
 * made before the drain shares it; it is made on the first wait, so a receiver that never fills
 * up costs nothing.
 */
export class DrainWaiter {
  private promise: Promise<void> | null = null;
  private resolveWait: (() => void) | null = null;
  private rejectWait: ((err: Error) => void) | null = null;

  /** waiting is true while a wait is pending. */
  get waiting(): boolean {
    return this.promise !== null;
  }

  /** wait returns the pending wait, making it if there is none. */
  wait(): Promise<void> {
    return (this.promise ??= new Promise<void>((resolve, reject) => {
      this.resolveWait = resolve;
      this.rejectWait = reject;
    }));
  }

  /** drained ends the pending wait, if any: the receiver can take more. */
  drained(): void {
    const resolve = this.resolveWait;
    this.promise = this.resolveWait = this.rejectWait = null;
    resolve?.();
  }

  /** fail rejects the pending wait, if any, with `err`: the receiver has gone. */
  fail(err: Error): void {
    const reject = this.rejectWait;
    this.promise = this.resolveWait = this.rejectWait = null;
    reject?.(err);
  }
}
