/**
 * room: a WebSocket chat room on a broker topic. Every text message a socket sends goes to every
 * socket in the room, on every worker and every instance sharing the broker, framed once per
 * process; a socket that stops reading is closed with 1013 rather than buffering without bound.
 *
 *   node bin/nsgi.js examples/room.ts --workers 2
 *   then, in two terminals: npx wscat -c ws://127.0.0.1:8000/
 */
import type { App } from '../protocol/nsgi.ts';
import { websocketApp } from '../src/websocket.ts';
import { WebSocketTopics } from '../src/websocket-topics.ts';

/** ROOM_TOPIC is the broker topic of the room. */
export const ROOM_TOPIC = 'room';

/** MAX_ROOM_MESSAGE is the largest message a socket may send: 4 KiB. */
export const MAX_ROOM_MESSAGE = 4096;

/** topics holds this process's sockets in the room; exported so that tests can count them. */
export const topics = new WebSocketTopics();

/** app accepts WebSocket connections into the room. */
export const app: App = websocketApp(
  (ws, environ) => {
    topics.subscribe(ws, ROOM_TOPIC);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      topics.publish(ROOM_TOPIC, String(data)).catch((err: unknown) => {
        environ['nsgi.errors'].write(`room: a message was not published: ${err instanceof Error ? err.message : String(err)}`);
        // 1011: the server could not do what the message needed (RFC 6455 §7.4.1).
        ws.close(1011, 'the room is unavailable');
      });
    });
  },
  { maxPayload: MAX_ROOM_MESSAGE },
);

export default app;
