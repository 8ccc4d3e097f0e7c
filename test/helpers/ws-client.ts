/**
 * A `ws` client for the stream tests that records every text message it receives; each one is
 * remembered until {@link closeWebSockets} terminates it.
 */
import { WebSocket } from 'ws';

const open = new Set<WebSocket>();

/** Peer is a connected client and what it has received so far. */
export interface Peer {
  readonly ws: WebSocket;
  readonly received: string[];
}

/** connectWebSocket opens `url` and resolves once the handshake is done. */
export async function connectWebSocket(url: string, options: { perMessageDeflate?: boolean } = {}): Promise<Peer> {
  const ws = new WebSocket(url, { perMessageDeflate: options.perMessageDeflate ?? false });
  open.add(ws);
  const received: string[] = [];
  ws.on('message', (data) => received.push(String(data)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, received };
}

/** closeWebSockets terminates every client {@link connectWebSocket} opened. */
export function closeWebSockets(): void {
  for (const ws of open) ws.terminate();
  open.clear();
}
