/**
 * File bodies (SPEC §7.3): a file, or a range of one, as a response body.
 *
 * {@link fileBody} is what an app calls: it hands the file to the server's `nsgi.file_wrapper`
 * when the server offers one, and otherwise returns {@link FileReader}, a plain async iterable
 * that any server can pull, so the same app runs everywhere (EXT-1). The reference server offers
 * the extension with this same reader, which is the most efficient path `node:net` has: it reads
 * FILE_READ_SIZE bytes at a time, only when the pump asks for the next chunk (so a slow client
 * slows the reads, SPEC §3.3), and closes the file exactly once however the response ends.
 *
 * Reads go into fresh buffers unless the consumer says when it is done with them: a chunk of
 * 16 KiB or more is handed to `socket.write` by reference, and the pump may pull the next chunk
 * as soon as `write` returns, before the kernel has taken the previous one (`write` returns true
 * while the socket's queue is below its high-water mark), so reading into the same buffer could
 * overwrite bytes still waiting to be sent; and a middleware between the body and the server may
 * keep chunks for longer still. The reference server's pump, when it pulls a FileReader itself,
 * tells it through {@link FileReader.reuseBuffers} when nothing sent is left to write, and the
 * reader then reads into the buffer of its previous chunk: with a fresh 64 KiB buffer per read,
 * the garbage collector took a quarter of the server's time on a large file.
 */
import { read } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Body, Environ, FileSource, FileWrapper, FileWrapperOptions } from '../../protocol/nsgi.ts';

/**
 * FILE_READ_SIZE is how many bytes one read takes: 256 KiB, four times the server's output
 * high-water mark, since each read is a round trip through libuv's thread pool (a wake-up and a
 * switch of threads, on the same core when the server is pinned to one) and one write. Reads of
 * 256 KiB took the server's CPU per GiB of a cached file from 0.91 to 0.61 s (512 KiB: 0.58).
 * The file body holds one such buffer while it is sent.
 */
export const FILE_READ_SIZE = 256 * 1024;

/**
 * fileBody returns a body that sends `file` (a path, or an open `FileHandle` the body then owns
 * and closes), from `options.offset` (default 0) for `options.length` bytes (default: to the end).
 * It uses the server's `nsgi.file_wrapper` when present (SPEC §7.3) and a {@link FileReader}
 * otherwise.
 */
export function fileBody(environ: Environ, file: FileSource, options: FileWrapperOptions = {}): Body {
  const wrapper = environ['nsgi.file_wrapper'];
  if (typeof wrapper === 'function') return wrapper(file, options);
  return new FileReader(file, options);
}

/**
 * fileWrapper is the reference server's `nsgi.file_wrapper` (SPEC §7.3): a {@link FileReader}.
 * `node:net` has no sendfile, so large reads pulled at the client's pace are the efficient path.
 */
export const fileWrapper: FileWrapper = (file, options) => new FileReader(file, options);

/**
 * FileReader is a file, or a range of one, as an async iterable of chunks of up to
 * FILE_READ_SIZE bytes. It opens a path at the first pull, and closes the file exactly once: at
 * the end, at `return()`, or on a read error. A file that turns out shorter than the range asked
 * for is an error (the response is then cut, SPEC §8, so the client sees the truncation).
 * It can be iterated once.
 */
export class FileReader implements AsyncIterableIterator<Uint8Array> {
  private handle: FileHandle | null;
  private position: number;
  private remaining: number | undefined;
  private closed = false;
  private started = false;
  /** The read under way, which closing waits for: the descriptor must not be closed under it. */
  private reading: Promise<number> | null = null;
  /** Says whether the consumer is done with every chunk so far; null while buffers are not reused. */
  private consumerDone: (() => boolean) | null = null;
  /** The buffer of the last read, when buffers are reused. */
  private spare: Buffer | null = null;

  constructor(
    private readonly file: FileSource,
    options: FileWrapperOptions = {},
    /** False when the caller keeps the handle open after this reader is done with it. */
    private readonly ownsHandle = true,
  ) {
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`a file body's offset must be a whole number >= 0, got ${offset}`);
    if (options.length !== undefined && (!Number.isSafeInteger(options.length) || options.length < 0)) {
      throw new RangeError(`a file body's length must be a whole number >= 0, got ${options.length}`);
    }
    if (typeof file !== 'string' && (file === null || typeof file !== 'object' || typeof file.read !== 'function')) {
      throw new TypeError(`a file body takes a path or a FileHandle, got ${file === null ? 'null' : typeof file}`);
    }
    this.handle = typeof file === 'string' ? null : file;
    this.position = offset;
    this.remaining = options.length;
  }

  [Symbol.asyncIterator](): this {
    if (this.started) throw new TypeError('a file body can be iterated once');
    this.started = true;
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    if (this.closed) return { done: true, value: undefined };
    try {
      // return() may come during any await below; each one is followed by a look.
      if (this.handle === null) {
        const opened = await open(this.file as string, 'r');
        // close() found no handle to close: the file opened too late is closed here.
        if (this.closed) {
          await opened.close();
          return { done: true, value: undefined };
        }
        this.handle = opened;
      }
      if (this.remaining === undefined) {
        const { size } = await this.handle.stat();
        if (this.closed) return { done: true, value: undefined };
        this.remaining = Math.max(0, size - this.position);
      }
      if (this.remaining === 0) {
        await this.close();
        return { done: true, value: undefined };
      }
      const size = Math.min(FILE_READ_SIZE, this.remaining);
      const buffer = this.bufferFor(size);
      const reading = readAt(this.handle.fd, buffer, size, this.position);
      this.reading = reading;
      const bytesRead = await reading;
      this.reading = null;
      if (this.closed) return { done: true, value: undefined }; // return() came while reading
      if (bytesRead === 0) throw new Error(`the file ended ${this.remaining} bytes before the end of its body (was it truncated while being sent?)`);
      this.position += bytesRead;
      this.remaining -= bytesRead;
      return { done: false, value: bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead) };
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /**
   * reuseBuffers lets the reader read into the buffer of its previous chunk whenever `done()`
   * says that the consumer is finished with every chunk it was given (for a server: that all of
   * them have been written to the socket). Only the one consumer that pulls this reader can say
   * so; nothing that passes the chunks on to another may call it.
   */
  reuseBuffers(done: () => boolean): void {
    this.consumerDone = done;
  }

  /** bufferFor gives the buffer a read of `size` bytes goes into. */
  private bufferFor(size: number): Buffer {
    const done = this.consumerDone;
    if (done === null) return Buffer.allocUnsafe(size);
    // Reads never grow (each is the smaller of FILE_READ_SIZE and what remains), so the buffer
    // of an earlier one always has room.
    const spare = this.spare;
    if (spare !== null && done()) return spare.length === size ? spare : spare.subarray(0, size);
    return (this.spare = Buffer.allocUnsafe(size));
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /** close closes the file once; later calls do nothing. */
  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const handle = this.handle;
    this.handle = null;
    // A read made on the bare descriptor is not counted by the FileHandle, whose close() would
    // not wait for it; the descriptor could then be reused under it.
    if (this.reading !== null) await this.reading.catch(() => undefined);
    if (handle !== null && this.ownsHandle) await handle.close();
  }
}

/**
 * readAt reads up to `size` bytes at `position` into `buffer`. It calls `fs.read` on the handle's
 * descriptor: a FileHandle's own read() goes through the promise API, which costs several times
 * more per read in allocations and collector work (a request object with a stats array, promise
 * bookkeeping) than the callback API.
 */
function readAt(fd: number, buffer: Buffer, size: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, 0, size, position, (err, bytesRead) => (err === null ? resolve(bytesRead) : reject(err)));
  });
}
