/**
 * express: an Express 5 app on nsgi's server, and an nsgi app inside Express.
 *
 * `app` is an ordinary Express app. The `nsgi` command recognises it (`--interface auto` finds
 * Express's `handle` and `use`) and serves it through `fromNodeListener`: Express gets node:http's
 * own request and response objects, with the request body pulled from `nsgi.input` and
 * `res.write()` backpressure tied to the client. In the other direction, `/nsgi` mounts an nsgi
 * app inside Express with `toNodeListener`; it sees SCRIPT_NAME `/nsgi` (from `req.baseUrl`), so
 * it can build links to itself.
 *
 *   node bin/nsgi.js examples/express.ts          (prints: ... as a node:http listener)
 *   curl http://127.0.0.1:8000/users/7
 *   curl -d '{"hello":"express"}' -H 'Content-Type: application/json' http://127.0.0.1:8000/echo
 *   curl http://127.0.0.1:8000/nsgi/anything
 *   curl -N http://127.0.0.1:8000/countdown
 */
import express from 'express';
import type { App } from '../protocol/nsgi.ts';
import { toNodeListener } from '../src/adapters/node-http.ts';

/** COUNTDOWN_TICK_MS is the time between the lines of `/countdown`. */
const COUNTDOWN_TICK_MS = 500;

/** whoami is the nsgi app mounted inside Express: it reports where it was mounted. */
const whoami: App = (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  return [`nsgi app at ${environ.SCRIPT_NAME}, asked for ${JSON.stringify(environ.PATH_INFO)} (${environ.REQUEST_URI})\n`];
};

/** app is the Express app. */
export const app = express();
app.use(express.json());
app.get('/', (_req, res) => {
  res.type('text').send('Express on nsgi: try /users/7, POST /echo, /nsgi/x, /countdown\n');
});
app.get('/users/:id', (req, res) => {
  res.json({ id: req.params.id, via: 'express' });
});
app.post('/echo', (req, res) => {
  res.json({ received: req.body as unknown });
});
app.get('/countdown', (req, res) => {
  // A streamed response: one line per tick; a client that leaves stops the timer ('close').
  res.type('text');
  let n = 5;
  const timer = setInterval(() => {
    res.write(`${n}\n`);
    if (--n < 0) {
      clearInterval(timer);
      res.end('liftoff\n');
    }
  }, COUNTDOWN_TICK_MS);
  req.on('close', () => clearInterval(timer));
});
app.use('/nsgi', toNodeListener(whoami));

export default app;
