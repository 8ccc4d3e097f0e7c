/**
 * An accepted WebSocket's watchers, from the 101 to its close: peer errors become lines on
 * `nsgi.errors`, the server's shutdown closes it with 1001, the heartbeat drops a peer that stops
 * answering, and the send limits close with 1008 a peer that does not read what it is sent. The
 * handshake and the hand-over live in `websocket.ts`.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Environ } from '../protocol/nsgi.ts';
import { watchSendStall } from './send-stall.ts';
import type { WebSocketOptions } from './websocket.ts';

/** CLOSE_GOING_AWAY is the close code sent when the server shuts down (RFC 6455 §7.4.1). */
export const CLOSE_GOING_AWAY = 1001;

/**
 * CLOSE_POLICY_VIOLATION is the close code sent to a peer that does not read what it is sent
 * (RFC 6455 §7.4.1): its send buffer went over `maxBufferedBytes`, or it took nothing for
 * `sendStallMs`.
 */
export const CLOSE_POLICY_VIOLATION = 1008;

/**
 * DEFAULT_WEBSOCKET_MAX_BUFFERED is the most bytes queued for one peer, unless `maxBufferedBytes`
 * says otherwise: 4 MiB, four messages of the default `maxPayload`. Without a bound, a client that
 * floods an echo and reads nothing makes the server queue every reply: hundreds of MiB in seconds.
 */
export const DEFAULT_WEBSOCKET_MAX_BUFFERED = 4 * 1024 * 1024;

/**
 * DEFAULT_WEBSOCKET_SEND_STALL_MS is how long a peer may take nothing of what is queued for it,
 * unless `sendStallMs` says otherwise: 30 s, half the server's own send timeout, so that the peer
 * gets a close frame it could still read before the server drops the connection.
 */
export const DEFAULT_WEBSOCKET_SEND_STALL_MS = 30_000;

/** DROP_GRACE_MS is how long a peer closed for not reading has to take its close frame before the socket is destroyed. */
const DROP_GRACE_MS = 1000;

/**
 * watch ties a socket to its request: peer errors are logged instead of thrown, the server's
 * shutdown closes it with 1001, and the heartbeat, if any, drops a peer that stops answering.
 */
export function watch(ws: WebSocket, environ: Environ, heartbeatMs: number): void {
  const signal = environ['nsgi.signal'];
  const errors = environ['nsgi.errors'];
  ws.on('error', (err: Error & { code?: string }) => {
    errors.write(`websocket: ${environ.REQUEST_URI}: ${err.code ?? 'error'}: ${err.message}`);
  });
  const onAbort = (): void => {
    const reason = signal.reason as { code?: unknown } | undefined;
    if (reason?.code === 'NSGI_SERVER_CLOSING') ws.close(CLOSE_GOING_AWAY, 'server shutting down');
    else ws.terminate();
  };
  let heartbeat: NodeJS.Timeout | undefined;
  if (heartbeatMs > 0) {
    let answered = true;
    ws.on('pong', () => {
      answered = true;
    });
    heartbeat = setInterval(() => {
      if (!answered) {
        ws.terminate();
        return;
      }
      answered = false;
      ws.ping();
    }, heartbeatMs);
    heartbeat.unref();
  }
  ws.once('close', () => {
    if (heartbeat !== undefined) clearInterval(heartbeat);
    signal.removeEventListener('abort', onAbort);
  });
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
}

/**
 * limitSending closes, with 1008, a socket whose peer does not read what it is sent: once more
 * than `maxBufferedBytes` wait for it (checked on every send, so a burst cannot outrun the
 * bound), or once it has taken nothing for `sendStallMs`. The close frame itself may never get
 * through to such a peer, so the socket is destroyed if it is still open a moment later.
 */
export function limitSending(ws: WebSocket, socket: Socket, environ: Environ, options: WebSocketOptions): void {
  const maxBuffered = options.maxBufferedBytes ?? DEFAULT_WEBSOCKET_MAX_BUFFERED;
  let dropping = false;
  const drop = (why: string): void => {
    if (dropping) return;
    dropping = true;
    stopStallWatch();
    environ['nsgi.errors'].write(`websocket: ${environ.REQUEST_URI}: closing with ${CLOSE_POLICY_VIOLATION}: ${why}`);
    ws.close(CLOSE_POLICY_VIOLATION, 'peer does not read');
    // Stop reading too: a peer that floods must not go on costing parsing and app work.
    ws.pause();
    const grace = setTimeout(() => ws.terminate(), DROP_GRACE_MS).unref();
    ws.once('close', () => clearTimeout(grace));
  };
  const stopStallWatch = watchSendStall(socket, options.sendStallMs ?? DEFAULT_WEBSOCKET_SEND_STALL_MS, () =>
    drop(`it took nothing of its ${ws.bufferedAmount} queued bytes for ${options.sendStallMs ?? DEFAULT_WEBSOCKET_SEND_STALL_MS} ms`),
  );
  ws.once('close', stopStallWatch);
  const send = ws.send;
  // Only this socket's send is wrapped: the check must follow every send the app makes.
  ws.send = function sendWithinBound(this: WebSocket, ...args: Parameters<WebSocket['send']>): void {
    (send as (...a: unknown[]) => void).apply(this, args);
    if (!dropping && ws.bufferedAmount > maxBuffered) drop(`${ws.bufferedAmount} bytes queued for it, over the bound of ${maxBuffered}`);
  } as WebSocket['send'];
}
