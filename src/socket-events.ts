/**
 * The socket listeners of the reference server's connections. They are shared by every socket
 * and find the socket's owner on the socket itself, rather than being five closures per
 * connection: idle connections are what a streaming server holds most of.
 */
import type net from 'node:net';

/** SocketOwner is what a socket's events are handed to. */
export interface SocketOwner {
  /** Bytes arrived. */
  onData(data: Buffer): void;
  /** The client sent its FIN. */
  onEnd(): void;
  /** The socket closed, for whatever reason. */
  onClose(): void;
  /** The socket can take more. */
  onDrain(): void;
}

const OWNER = Symbol('nsgi.socketOwner');
type OwnedSocket = net.Socket & { [OWNER]: SocketOwner };

/** listen hands `socket`'s events to `owner`. */
export function listen(socket: net.Socket, owner: SocketOwner): void {
  (socket as OwnedSocket)[OWNER] = owner;
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('error', onError);
  socket.on('close', onClose);
  socket.on('drain', onDrain);
}

/** handOver takes off the listeners of reading and writing; 'close' and 'error' stay (an upgrade). */
export function handOver(socket: net.Socket): void {
  socket.off('data', onData);
  socket.off('end', onEnd);
  socket.off('drain', onDrain);
}

function onData(this: net.Socket, data: Buffer): void {
  (this as OwnedSocket)[OWNER].onData(data);
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
