/**
 * demo: every example behind one server, the app `npm start` serves on port 8080.
 *
 * `/` is a plain HTML page (no framework, no build; see demo-page.ts) with a live clock over
 * server-sent events (`/events/clock`), a WebSocket echo box (`/ws/echo`), a long-polling chat
 * (`/chat`, examples/chat.ts), a large streamed download, a download server with resume (`/files`,
 * examples/files.ts), an Express app (`/express`, examples/express.ts), and links to each example. Each example is mounted
 * under a prefix by `mount` (src/helpers/mount.ts): it moves the prefix from PATH_INFO to
 * SCRIPT_NAME, as WSGI's `shift_path_info` does, so the mounted app sees the same paths as when
 * it is served alone, and can still build links to itself from SCRIPT_NAME. Anything else is a 404.
 *
 *   npm start                      (or: node bin/nsgi.js examples/demo.ts --port 8080)
 *   open http://127.0.0.1:8080/
 *   curl http://127.0.0.1:8080/hello/user/1
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { App, Environ } from '../protocol/nsgi.ts';
import { fromNodeListener } from '../src/adapters/node-listener.ts';
import { mount } from '../src/helpers/mount.ts';
import { lastEventId, sse, type SseEvent } from '../src/helpers/sse.ts';
import { websocketApp } from '../src/websocket.ts';
import { createChat } from './chat.ts';
import { app as clock } from './clock.ts';
import { demoPage } from './demo-page.ts';
import { app as errors } from './errors.ts';
import { app as expressApp } from './express.ts';
import { app as files } from './files.ts';
import { app as hello } from './hello.ts';
import { app as stream } from './stream.ts';
import { app as upload } from './upload.ts';

/** home serves the index page at `/` and a 404 for every other unmounted path. */
const home: App = (environ, startResponse) => {
  const found = environ.PATH_INFO === '/' || environ.PATH_INFO === '';
  const page = found ? demoPage(environ.SCRIPT_NAME) : `Not Found: ${environ.PATH_INFO}\n`;
  startResponse(found ? '200 OK' : '404 Not Found', [
    ['Content-Type', found ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(page))],
  ]);
  return [page];
};

/** CLOCK_TICK_MS is the time between the clock's events. */
const CLOCK_TICK_MS = 1000;

/**
 * clockTicks is the event source of `/events/clock`: the time now and then once a second, each
 * event numbered so that a reconnecting EventSource carries on from its `Last-Event-ID`.
 */
async function* clockTicks(environ: Environ): AsyncGenerator<SseEvent> {
  const signal = environ['nsgi.signal'];
  const last = Number(lastEventId(environ));
  let n = Number.isSafeInteger(last) && last > 0 ? last : 0;
  for (;;) {
    yield { event: 'tick', id: String(++n), data: new Date().toISOString() };
    try {
      await sleep(CLOCK_TICK_MS, undefined, { signal });
    } catch {
      return; // the client left or the server is closing
    }
  }
}

/** ECHO_HIGH_WATER_MARK is how many bytes of replies may wait for a client before the echo stops reading from it. */
const ECHO_HIGH_WATER_MARK = 64 * 1024;

/**
 * echo sends every WebSocket message back as it came, text as text and binary as binary. It
 * stops reading a client whose replies pile up and reads on once they have gone out, so a client
 * that sends faster than it reads is slowed down instead of filling the server's memory.
 */
const echo = websocketApp(
  (ws) => {
    const resumeWhenCaughtUp = (): void => {
      if (ws.isPaused && ws.bufferedAmount < ECHO_HIGH_WATER_MARK) ws.resume();
    };
    ws.on('message', (data, isBinary) => {
      ws.send(data as Buffer, { binary: isBinary }, resumeWhenCaughtUp);
      if (ws.bufferedAmount >= ECHO_HIGH_WATER_MARK) ws.pause();
    });
  },
  { maxPayload: 64 * 1024, heartbeatMs: 30_000 },
);

/** chat is the demo's chat room; exported so that tests can see its waiting polls. */
export const chat = createChat();

/** app is the demo: the examples mounted under their prefixes, the index at `/`. */
export const app: App = mount({
  '/hello': hello,
  '/stream': stream,
  '/clock': clock,
  '/upload': upload,
  '/errors': errors,
  '/events/clock': sse(clockTicks),
  '/ws/echo': echo,
  '/chat': chat.app,
  '/files': files,
  '/express': fromNodeListener(expressApp),
  '/': home,
});

export default app;
