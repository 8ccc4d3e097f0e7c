/**
 * How a server connection lets go of its socket, once the driver has decided to: closed when what
 * is written has left, or after a lingering close while the client may still be sending (RFC 9112
 * §9.6); dropped when its peer takes nothing of what is sent; or handed to the app on an upgrade
 * (SPEC §6.2), with the send-stall rule outliving the hand-over. The decisions, and the driver's
 * state, stay in `driver.ts`.
 */
import type { Socket } from 'node:net';
import type { ErrorStream, Upgraded } from '../protocol/nsgi.ts';
import { Phase, type Deadlines } from './deadlines.ts';
import { watchSendStall } from './send-stall.ts';
import { handOver } from './socket-events.ts';

/** Peer is where a connection's client is, for the messages that name it. */
export interface Peer {
  readonly remoteAddress: string;
  readonly remotePort: string;
}

/** DropContext is what dropping a peer needs of the server: its send timeout and where errors go. */
export interface DropContext {
  readonly sendTimeout: number;
  readonly errors: ErrorStream;
}

/** endSocket closes `socket` once its output has left; the send deadline watches a client that does not take it. */
export function endSocket(socket: Socket, deadlines: Deadlines): void {
  socket.destroySoon();
  if (socket.writableLength > 0) deadlines.startSend();
}

/**
 * lingerSocket ends our side of `socket` and keeps reading, and discarding, until the linger
 * deadline (RFC 9112 §9.6): the client may still be sending, and its unread bytes would make our
 * kernel reset the connection before the client has read the response.
 */
export function lingerSocket(socket: Socket, deadlines: Deadlines): void {
  socket.end();
  socket.resume();
  deadlines.arm(Phase.Linger);
}

/** dropSilentPeer destroys `socket`, whose peer read nothing for the send timeout, and says so on `errors`. */
export function dropSilentPeer(socket: Socket, server: DropContext, peer: Peer, what: string): void {
  server.errors.write(`nsgi: dropping ${what}${peer.remoteAddress}:${peer.remotePort}: it read nothing for ${server.sendTimeout} ms`);
  socket.destroy();
}

/**
 * handOverSocket gives an upgraded socket to the app with `rest`, the bytes read past the request
 * head: the server's listeners come off, the socket is left paused, and the app's 101 head
 * (`head101`, '' for none) is written.
 */
export function handOverSocket(socket: Socket, head101: string, rest: Uint8Array, server: DropContext, peer: Peer): Upgraded {
  socket.pause();
  handOver(socket);
  if (head101 !== '') socket.write(head101, 'latin1');
  // The send-stall rule outlives the hand-over: an upgraded peer (a WebSocket) that takes
  // nothing of what is written to it for sendTimeout is dropped as any other would be.
  watchSendStall(socket, server.sendTimeout, () => dropSilentPeer(socket, server, peer, 'upgraded '));
  return { socket, head: rest };
}
