/**
 * The output side of a connection: an {@link OutBuffer} gathers the bytes a connection is to send
 * (heads, chunk framing, body data) until the server flushes them to its socket, and small appends
 * are copied into a {@link Slab} shared by the connections of one server. Nothing here touches a
 * socket.
 */

/** Appends of at least this many bytes are queued by reference instead of copied. */
const COPY_LIMIT = 16 * 1024;
/** Size of a slab: room for many flushes' worth of heads and small chunks before a new one is made. */
const SLAB_SIZE = 64 * 1024;
/**
 * Size of a buffer's own memory (see {@link OutBuffer.useOwn}): a flush at the server's 64 KiB
 * high-water mark plus the largest copied append and its framing, so that one flush is one
 * contiguous write.
 */
const OWN_SIZE = 64 * 1024 + COPY_LIMIT + 64;

const HEX_DIGITS = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

// Buffer's own latin1Write and utf8Write skip the argument checks of buf.write(); they are not in
// Node's type definitions, so they are looked up once and write() stands in where they are missing.
interface RawWrites {
  latin1Write?(s: string, offset: number, length: number): number;
  utf8Write?(s: string, offset: number, length: number): number;
}
const rawWrites = Buffer.prototype as unknown as RawWrites;
const writeLatin1: (b: Buffer, s: string, at: number, n: number) => void =
  typeof rawWrites.latin1Write === 'function'
    ? (b, s, at, n) => void (b as unknown as Required<RawWrites>).latin1Write(s, at, n)
    : (b, s, at, n) => void b.write(s, at, n, 'latin1');
const writeUtf8: (b: Buffer, s: string, at: number, n: number) => void =
  typeof rawWrites.utf8Write === 'function'
    ? (b, s, at, n) => void (b as unknown as Required<RawWrites>).utf8Write(s, at, n)
    : (b, s, at, n) => void b.write(s, at, n, 'utf8');

/**
 * Slab is the memory the OutBuffers of one server copy small appends into, as Node's Buffer pool
 * is for small Buffers: bytes are appended and never rewritten, and a full slab is left to the
 * parts that still point into it while a new one takes its place.
 */
export class Slab {
  /** buf is the current slab. */
  buf: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  /** used is how many bytes of `buf` are taken. */
  used = 0;
}

/**
 * OutBuffer gathers a connection's outgoing bytes until the server flushes them, so that a head,
 * small chunks and their framing, or several pipelined responses leave in one write. It extends
 * its open part of the slab only while no other buffer has appended after it. An idle OutBuffer
 * holds no memory of its own.
 */
export class OutBuffer {
  // Made when the first part is sealed, so an idle buffer holds no array.
  private parts: Uint8Array[] | null = null;
  private open: Buffer | null = null;
  private openStart = 0;
  private openEnd = 0;
  // Whether copies go to memory of this buffer's own, that memory once made, and how much of it is taken.
  private ownWanted = false;
  private own: Buffer | null = null;
  private ownUsed = 0;
  /** size is the number of bytes waiting to be flushed. */
  size = 0;

  /** `slab` is shared by the connections of one server; a buffer made alone gets its own. */
  constructor(private readonly slab: Slab = new Slab()) {}

  /** latin1 appends a string of characters up to U+00FF, one byte each. */
  latin1(s: string): void {
    const n = s.length;
    if (n === 0) return;
    const at = this.reserve(n);
    writeLatin1(this.open!, s, at, n);
  }

  /** utf8 appends a string as UTF-8, given its length in bytes. */
  utf8(s: string, byteLength: number): void {
    if (byteLength === 0) return;
    if (byteLength >= COPY_LIMIT) return this.bytes(Buffer.from(s, 'utf8'));
    const at = this.reserve(byteLength);
    writeUtf8(this.open!, s, at, byteLength);
  }

  /**
   * chunkFrame appends the size line of a chunk (RFC 9112 §7.1), or, with `crlfFirst`, the CRLF
   * that ends the previous chunk and then the size line: byte stores, no string made.
   */
  chunkFrame(size: number, crlfFirst: boolean): void {
    let digits = 1;
    while (size >>> (digits * 4) !== 0 && digits < 8) digits++;
    if (size > 0xffffffff) digits = size.toString(16).length;
    const n = digits + 2 + (crlfFirst ? 2 : 0);
    let at = this.reserve(n);
    const s = this.open!;
    if (crlfFirst) {
      s[at++] = 0x0d;
      s[at++] = 0x0a;
    }
    if (size > 0xffffffff) {
      s.write(size.toString(16), at, digits, 'latin1');
      at += digits;
    } else {
      for (let i = digits - 1; i >= 0; i--) s[at++] = HEX_DIGITS[(size >>> (i * 4)) & 0xf]!;
    }
    s[at++] = 0x0d;
    s[at] = 0x0a;
  }

  /** crlf appends CRLF. */
  crlf(): void {
    const at = this.reserve(2);
    const s = this.open!;
    s[at] = 0x0d;
    s[at + 1] = 0x0a;
  }

  /** bytes appends raw bytes: copied when small, queued by reference when large. */
  bytes(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) return;
    if (n >= COPY_LIMIT) {
      this.seal();
      (this.parts ??= []).push(data);
      this.size += n;
      return;
    }
    const at = this.reserve(n);
    this.open!.set(data, at);
  }

  /** take returns everything gathered, in order, and leaves the buffer empty. */
  take(): Uint8Array[] {
    this.seal();
    const parts = this.parts ?? [];
    this.parts = null;
    this.size = 0;
    return parts;
  }

  /**
   * useOwn makes the buffer copy into memory of its own from here on, memory that
   * {@link recycle} lets it reuse. A connection sending a large body in small chunks then copies
   * into the same few cache-warm pages instead of filling a new slab every 64 KiB (each one
   * fresh pages to fault in and a backing store for the garbage collector to reclaim). The
   * memory is made on the first copy, so a body of large chunks alone (a file) makes none.
   */
  useOwn(): void {
    this.ownWanted = true;
  }

  /**
   * recycle says that every byte taken from this buffer so far has been written (the socket
   * holds none of them): its own memory is reused from the start. Nothing gathered since the
   * last take may point into it, so with bytes waiting it does nothing.
   */
  recycle(): void {
    if (this.size === 0) this.ownUsed = 0;
  }

  /** dropOwn goes back to the shared slab, so that an idle connection holds no memory of its own. */
  dropOwn(): void {
    this.ownWanted = false;
    this.own = null;
  }

  private reserve(n: number): number {
    this.size += n;
    if (this.ownWanted) return this.reserveOwn(n);
    const slab = this.slab;
    if (this.open === slab.buf && this.openEnd === slab.used && slab.used + n <= slab.buf.length) {
      slab.used += n;
      this.openEnd = slab.used;
      return slab.used - n;
    }
    this.seal();
    if (slab.used + n > slab.buf.length) {
      slab.buf = Buffer.allocUnsafe(n > SLAB_SIZE ? n : SLAB_SIZE);
      slab.used = 0;
    }
    this.open = slab.buf;
    this.openStart = slab.used;
    slab.used += n;
    this.openEnd = slab.used;
    return this.openStart;
  }

  private reserveOwn(n: number): number {
    const own = this.own;
    const at = this.ownUsed;
    if (own !== null && at + n <= own.length) {
      this.ownUsed = at + n;
      if (this.open === own && this.openEnd === at) {
        this.openEnd = at + n;
        return at;
      }
      this.seal();
      this.open = own;
      this.openStart = at;
      this.openEnd = at + n;
      return at;
    }
    // None yet, or full while the socket may still hold parts of it: those keep it, and a fresh
    // one takes its place.
    this.seal();
    const fresh = Buffer.allocUnsafe(n > OWN_SIZE ? n : OWN_SIZE);
    this.own = fresh;
    this.ownUsed = n;
    this.open = fresh;
    this.openStart = 0;
    this.openEnd = n;
    return 0;
  }

  private seal(): void {
    if (this.open !== null) {
      (this.parts ??= []).push(this.open.subarray(this.openStart, this.openEnd));
      this.open = null;
    }
  }
}
