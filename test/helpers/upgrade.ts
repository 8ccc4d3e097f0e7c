/**
 * An app for upgrade tests, shared by the reference server's and the node:http adapter's: it takes
 * every upgrade through `nsgi.upgrade` (the server writes the 101) and echoes what the client sends.
 */
import type { Socket } from 'node:net';
import type { App, Environ } from '../../protocol/nsgi.ts';

/** UPGRADE_REQUEST asks for the `x-echo` protocol. */
export const UPGRADE_REQUEST = 'GET /echo HTTP/1.1\nHost: t\nConnection: Upgrade\nUpgrade: x-echo\n\n';

/** UPGRADE_OFFER_CASES are requests with and without what it takes to be offered `nsgi.upgrade` (UPG-1). */
export const UPGRADE_OFFER_CASES: ReadonlyArray<{ name: string; request: string; offered: boolean }> = [
  { name: 'HTTP/1.1 with Connection: upgrade and Upgrade', request: UPGRADE_REQUEST, offered: true },
  { name: 'Connection listing upgrade among other options', request: 'GET / HTTP/1.1\nHost: t\nConnection: keep-alive, Upgrade\nUpgrade: websocket\n\n', offered: true },
  { name: 'Upgrade without Connection: upgrade', request: 'GET / HTTP/1.1\nHost: t\nUpgrade: websocket\n\n', offered: false },
  { name: 'Connection: upgrade without Upgrade', request: 'GET / HTTP/1.1\nHost: t\nConnection: upgrade\n\n', offered: false },
  { name: 'an HTTP/1.0 request', request: 'GET / HTTP/1.0\nConnection: upgrade\nUpgrade: websocket\n\n', offered: false },
  { name: 'an ordinary request', request: 'GET / HTTP/1.1\nHost: t\n\n', offered: false },
];

/** UpgradeRecord is what echoOnUpgrade saw: the bytes handed over, the socket and the environ. */
export interface UpgradeRecord {
  head?: Buffer;
  socket?: Socket;
  environ?: Environ;
}

/** echoOnUpgrade accepts every upgrade with a server-written 101 and echoes what the client sends. */
export function echoOnUpgrade(record: UpgradeRecord = {}): App {
  return (environ, startResponse) => {
    const upgrade = environ['nsgi.upgrade'];
    if (upgrade === undefined) {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['plain http\n'];
    }
    const { socket, head } = upgrade({ headers: [['Upgrade', 'x-echo']] });
    record.head = Buffer.from(head);
    record.socket = socket;
    record.environ = environ;
    if (head.length > 0) socket.write(head);
    socket.on('data', (data: Buffer) => socket.write(data));
    socket.on('end', () => socket.end());
    socket.resume();
    return [];
  };
}
