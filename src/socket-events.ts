/**
 * The socket listeners of the reference server's connections. They are shared by every socket
 * and find the socket's owner on the socket itself, rather than being five closures per
 * connection: idle connections are what a streaming server holds most of.
 *
 * Reads into one buffer. A plain TCP (or unix) socket reads into {@link READ_BUFFER}, one buffer
 * for the whole process, the way `net.Socket`'s `onread` option does it: each read is handed to
 * the owner as a view of that buffer, with no new buffer made per read and no trip through the
 * socket's readable stream. The next read overwrites the view, so an owner must copy whatever it
 * keeps past its `onData` (see {@link SocketOwner.onData}). A node:net server gives its accepted
 * sockets no way to ask for `onread`, so the socket is given the same fields `onread` would have
 * set, found by name on a socket made with it; where they cannot be found (another runtime, a
 * Node that reads differently), and on TLS sockets, reads arrive as `'data'` events, each a
 * buffer of its own.
 */
import net from 'node:net';

/** SocketOwner is what a socket's events are handed to. */
export interface SocketOwner {
  /**
   * Bytes arrived. With `transient`, `data` is a view of a buffer the next read reuses: nothing
   * of it may be kept, or handed on, once onData returns, unless copied.
   */
  onData(data: Buffer, transient: boolean): void;
  /** The client sent its FIN. */
  onEnd(): void;
  /** The socket closed, for whatever reason. */
  onClose(): void;
  /** The socket can take more. */
  onDrain(): void;
}

const OWNER = Symbol('nsgi.socketOwner');
type OwnedSocket = net.Socket & { [OWNER]: SocketOwner };

/**
 * READ_BUFFER_SIZE is the size of the shared read buffer: 64 KiB, the most libuv reads at once
 * into a buffer of its own, so reads are no smaller than they would be without it.
 */
const READ_BUFFER_SIZE = 64 * 1024;

/** The fields `onread` sets on a net.Socket: its buffer, its callback, and its buffer factory. */
interface ReadFields {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly factory: symbol;
}

/** What a socket's native handle offers for reading into a buffer of the caller's. */
interface UserBufferHandle {
  useUserBuffer?(buffer: Uint8Array): void;
}

/** readFields finds the fields `onread` sets, by making a socket with it; null where that fails. */
function findReadFields(): ReadFields | null {
  const buffer = Buffer.alloc(1);
  const callback = (): void => {};
  let probe: net.Socket;
  try {
    // `onread` is missing from some versions of Node's type definitions.
    probe = new net.Socket({ onread: { buffer, callback } } as net.SocketConstructorOpts);
  } catch {
    return null;
  }
  const named = (description: string): symbol | undefined =>
    Object.getOwnPropertySymbols(probe).find((s) => s.description === description);
  const fields = { buffer: named('kBuffer'), callback: named('kBufferCb'), factory: named('kBufferGen') };
  const own = probe as unknown as Record<symbol, unknown>;
  if (fields.buffer === undefined || fields.callback === undefined || fields.factory === undefined) return null;
  if (own[fields.buffer] !== buffer || own[fields.callback] !== callback || own[fields.factory] !== null) return null;
  return fields as ReadFields;
}

const READ_FIELDS = findReadFields();
/** READ_BUFFER is the buffer every plain socket of the process reads into; see the top of this file. */
const READ_BUFFER = READ_FIELDS === null ? null : Buffer.allocUnsafe(READ_BUFFER_SIZE);

/** listen hands `socket`'s events to `owner`. */
export function listen(socket: net.Socket, owner: SocketOwner): void {
  (socket as OwnedSocket)[OWNER] = owner;
  if (!readIntoSharedBuffer(socket, onRead)) socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('error', onError);
  socket.on('close', onClose);
  socket.on('drain', onDrain);
}

/**
 * readIntoSharedBuffer makes `socket` read into READ_BUFFER and call `callback` with each read;
 * false where it cannot. Done when the socket is accepted, before its first read.
 */
function readIntoSharedBuffer(socket: net.Socket, callback: (this: net.Socket, n: number, buffer: Buffer) => boolean): boolean {
  const handle = (socket as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (READ_FIELDS === null || (socket as net.Socket & { encrypted?: boolean }).encrypted === true) return false;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[READ_FIELDS.buffer] = READ_BUFFER;
  fields[READ_FIELDS.callback] = callback;
  fields[READ_FIELDS.factory] = null;
  handle.useUserBuffer(READ_BUFFER!);
  return true;
}

/**
 * handOver takes off the listeners of reading and writing; 'close' and 'error' stay (an upgrade).
 * A socket reading into the shared buffer goes on doing so, but each read is now copied and pushed
 * into the socket's readable stream, so the app reads it as from any socket ('data', `read()`,
 * async iteration), with the stream's own backpressure.
 */
export function handOver(socket: net.Socket): void {
  if (READ_FIELDS !== null && (socket as unknown as Record<symbol, unknown>)[READ_FIELDS.callback] === onRead) {
    (socket as unknown as Record<symbol, unknown>)[READ_FIELDS.callback] = pushRead;
  }
  socket.off('data', onData);
  socket.off('end', onEnd);
  socket.off('drain', onDrain);
}

function onRead(this: net.Socket, n: number, buffer: Buffer): boolean {
  (this as OwnedSocket)[OWNER].onData(buffer.subarray(0, n), true);
  return true;
}

/** pushRead is a read of a handed-over socket: a copy goes into its readable stream; false stops reading while that is full. */
function pushRead(this: net.Socket, n: number, buffer: Buffer): boolean {
  return this.push(Buffer.from(buffer.subarray(0, n)));
}

function onData(this: net.Socket, data: Buffer): void {
  (this as OwnedSocket)[OWNER].onData(data, false);
}

function onEnd(this: net.Socket): void {
  (this as OwnedSocket)[OWNER].onEnd();
}

function onError(): void {
  // 'close' follows; a reset client is an ordinary event, not a server error.
}

function onClose(this: net.Socket): void {
  (this as OwnedSocket)[OWNER].onClose();
}

function onDrain(this: net.Socket): void {
  (this as OwnedSocket)[OWNER].onDrain();
}
