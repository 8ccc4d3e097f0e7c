/**
 * Watching a socket for a peer that has stopped reading: the send-stall rule applied to sockets
 * whose writes the server no longer makes itself (upgraded connections, WebSockets). Progress is
 * any byte the kernel takes: a write request completing (`bytesWritten` counts every byte accepted
 * by `write()`, `writableLength` those whose request has not completed), or the request in flight
 * shrinking (libuv's `writeQueueSize`: a large request completes only when its last byte is taken,
 * so a slow reader of a big burst would otherwise look stalled). A peer that reads slowly but
 * steadily is never cut, however much its writer queues, and nothing is timed while nothing is
 * pending.
 */
import type { Socket } from 'node:net';

/** STALL_CHECKS_PER_LIMIT is how many checks one stall limit spans: a stall is seen within 5/4 of it. */
const STALL_CHECKS_PER_LIMIT = 4;

/**
 * watchSendStall calls `onStall` once when `socket` has had output pending for `stallMs` without
 * the peer taking a byte of it. The watch ends when the socket closes, after `onStall`, or when the
 * returned function is called. A `stallMs` that is not a positive finite number watches nothing.
 */
export function watchSendStall(socket: Socket, stallMs: number, onStall: () => void): () => void {
  if (!(stallMs > 0) || !Number.isFinite(stallMs)) return () => {};
  const step = Math.max(1, Math.ceil(stallMs / STALL_CHECKS_PER_LIMIT));
  let taken = takenBytes(socket);
  let inFlight = inFlightBytes(socket);
  let stalled = 0;
  const timer = setInterval(() => {
    const nowTaken = takenBytes(socket);
    const nowInFlight = inFlightBytes(socket);
    if (socket.writableLength > 0 && nowTaken === taken && nowInFlight >= inFlight) stalled += step;
    else stalled = 0;
    taken = nowTaken;
    inFlight = nowInFlight;
    if (stalled >= stallMs) {
      stop();
      onStall();
    }
  }, step);
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    socket.off('close', stop);
  };
  socket.once('close', stop);
  return stop;
}

/** takenBytes is how many of the bytes written to `socket` the kernel has accepted so far. */
function takenBytes(socket: Socket): number {
  return (socket.bytesWritten ?? 0) - socket.writableLength;
}

/** inFlightBytes is what libuv still holds of the write requests handed to it, or 0 where the handle does not say. */
function inFlightBytes(socket: Socket): number {
  const handle = (socket as Socket & { _handle?: { writeQueueSize?: number } | null })._handle;
  return handle?.writeQueueSize ?? 0;
}
