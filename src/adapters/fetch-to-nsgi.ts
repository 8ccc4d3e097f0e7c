/**
 * A fetch-style handler served as an nsgi app: {@link fromFetch}, for Hono, itty-router, and Deno
 * or Bun style handlers. The request body is a `ReadableStream` fed from `nsgi.input` only as the
 * handler reads it, the response body is pulled from the `Response`'s stream only as fast as the
 * server can send it, and `request.signal` aborts when the client leaves.
 */
import { STATUS_CODES } from 'node:http';
import type { ReadableStreamReadResult } from 'node:stream/web';
import type { App, Body, Environ, HeaderList, Input, StartResponse } from '../../protocol/nsgi.ts';

/**
 * FetchHandler is a fetch-style request handler. {@link fromFetch} passes the request's environ
 * as the second argument, where Hono's `app.fetch` takes its bindings (`c.env`): the client's
 * address (`REMOTE_ADDR`), `nsgi.signal` and the rest are then in reach of the handler.
 */
export type FetchHandler = (request: Request, environ: Environ) => Response | Promise<Response>;

/** Request fields that describe one connection, not the message; not passed to the handler. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade']);
/** Methods undici refuses to build a Request for (Fetch §2.2.1 forbidden methods). */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);
/** How many bytes fromFetch gathers, when the handler's body has them ready, before it sends the head. */
const READY_BYTES_LIMIT = 64 * 1024;

/**
 * fromFetch turns a fetch handler into an nsgi app.
 *
 * The Request: its URL is `nsgi.url_scheme`, the Host field (else, or when it is only a port,
 * SERVER_NAME and SERVER_PORT) and REQUEST_URI, the target exactly as received (so a middleware's
 * SCRIPT_NAME/PATH_INFO rewrite is not seen by the handler); a URL the WHATWG parser refuses (a
 * Host with a port above 65535, say) gets 400 without calling the handler. Its headers are
 * `nsgi.headers` less the hop-by-hop fields. It has a body when the request declares one
 * (Content-Length or Transfer-Encoding) and the method is not GET or HEAD in any case; the body is
 * read from `nsgi.input` only when the handler reads it, so `Expect: 100-continue` is answered
 * then. `request.signal` is `nsgi.signal`.
 *
 * The Response: its status and headers go to `startResponse` (several Set-Cookie fields stay
 * several). Body chunks the stream has ready at once (a string or JSON body) are sent with the
 * head, and a body that ends at once is returned as an array, so the server can send a
 * Content-Length. A body whose first chunk is not ready by the next turn of the event loop (a
 * stream, server-sent events) gets its head sent at once with `flushHead()`: in fetch, a resolved
 * Response means the head is decided, and a client waiting on an event stream should see it.
 * Stopping the body early (client gone, HEAD) cancels the Response's stream.
 */
export function fromFetch(handler: FetchHandler): App {
  if (typeof handler !== 'function') throw new TypeError(`fromFetch() needs a handler function, got ${typeof handler}`);
  return async (environ, startResponse) => {
    const method = environ.REQUEST_METHOD;
    if (FORBIDDEN_METHODS.has(method.toUpperCase())) {
      return refuse(startResponse, '501 Not Implemented', `${method} is not supported by a fetch handler\n`);
    }
    const signal = environ['nsgi.signal'];
    const init: RequestInit & { duplex?: 'half' } = { method, headers: requestHeaders(environ), signal };
    const hasBody = environ.CONTENT_LENGTH !== undefined || environ.HTTP_TRANSFER_ENCODING !== undefined;
    // A Request normalizes `get` and `head` to GET and HEAD (Fetch §2.2.1), which take no body.
    const upper = method.toUpperCase();
    if (hasBody && upper !== 'GET' && upper !== 'HEAD') {
      init.body = inputStream(environ['nsgi.input']);
      // undici needs this for a streamed request body: the body is sent as it is produced.
      init.duplex = 'half';
    }
    const url = requestUrl(environ);
    let request: Request;
    try {
      request = new Request(url, init);
    } catch (err) {
      // The server accepts any RFC 3986 uri-host, and some are no host to a WHATWG URL (a port
      // above 65535, a %00, a name ending in a number that is no IPv4 address): the client's fault.
      if (!URL.canParse(url)) return refuse(startResponse, '400 Bad Request', `a fetch Request cannot hold the URL ${JSON.stringify(url)}\n`);
      throw err;
    }
    const response = await handler(request, environ);
    if (!(response instanceof Response) || response.type === 'error') {
      throw new TypeError(`the fetch handler resolved to ${response instanceof Response ? 'a network error (Response.error())' : typeof response}, not a Response`);
    }
    const write = startResponse(`${response.status} ${response.statusText || STATUS_CODES[response.status] || ''}`.trimEnd(), responseHeaders(response.headers, response.status));
    const body = response.body;
    if (body === null) return [];
    const reader = body.getReader();
    // Take what the stream has ready now, so a small body leaves with the head.
    const ready: Uint8Array[] = [];
    let readyBytes = 0;
    let pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
    for (;;) {
      pending = reader.read();
      let r: ReadableStreamReadResult<Uint8Array> | typeof NOT_READY;
      try {
        r = await withinThisTurn(pending);
      } catch (err) {
        // Nothing sent yet: the server answers 500. Else the ready chunks go out, then the error.
        if (ready.length === 0) throw err;
        break;
      }
      if (r === NOT_READY) break;
      pending = null;
      if (r.done) {
        reader.releaseLock();
        return ready;
      }
      ready.push(r.value);
      readyBytes += r.value.length;
      if (readyBytes >= READY_BYTES_LIMIT) break;
    }
    if (ready.length === 0) write.flushHead();
    return responseBody(reader, ready, pending, signal);
  };
}

const NOT_READY = Symbol('not ready');

/** withinThisTurn settles as `p` if it settles before the event loop's next turn, else as NOT_READY. */
function withinThisTurn<T>(p: Promise<T>): Promise<T | typeof NOT_READY> {
  return Promise.race([p, new Promise<typeof NOT_READY>((resolve) => setImmediate(resolve, NOT_READY))]);
}

/**
 * responseBody yields a Response stream's chunks, reading the next one only when the server asks.
 * Its `finally` cancels the stream when the server stops early (BODY-16), and a client that leaves
 * while a read is pending cancels it at once through `nsgi.signal`.
 */
async function* responseBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ready: Uint8Array[],
  pending: Promise<ReadableStreamReadResult<Uint8Array>> | null,
  signal: AbortSignal,
): AsyncGenerator<Uint8Array> {
  let ended = false;
  pending?.catch(() => {});
  const onAbort = (): void => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (const chunk of ready) yield chunk;
    for (;;) {
      const r: ReadableStreamReadResult<Uint8Array> = await (pending ?? reader.read());
      pending = null;
      if (r.done) {
        ended = true;
        return;
      }
      yield r.value;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!ended) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** refuse answers a request the handler cannot be given, with a plain-text reason. */
function refuse(startResponse: StartResponse, status: string, text: string): Body {
  startResponse(status, [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Length', String(Buffer.byteLength(text))]]);
  return [text];
}

/** requestUrl rebuilds the request's URL from the environ. */
function requestUrl(environ: Environ): string {
  const uri = environ.REQUEST_URI;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(uri)) return uri; // absolute-form
  let host = environ.HTTP_HOST;
  // A Host with an empty uri-host (only a port) names no host: the server's own name stands in (ENV-7).
  if (host === undefined || host === '' || host.charCodeAt(0) === 0x3a) {
    const scheme = environ['nsgi.url_scheme'];
    const port = environ.SERVER_PORT;
    const isDefault = (scheme === 'http' && port === '80') || (scheme === 'https' && port === '443');
    host = isDefault ? environ.SERVER_NAME : `${environ.SERVER_NAME}:${port}`;
  }
  // OPTIONS * has no path a URL can hold; the handler sees "/".
  const path = uri.startsWith('/') ? uri : '/';
  return `${environ['nsgi.url_scheme']}://${host}${path}`;
}

function requestHeaders(environ: Environ): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of environ['nsgi.headers']) {
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push([name, value]);
  }
  return out;
}

function responseHeaders(headers: Headers, status: number): HeaderList {
  const out: HeaderList = [];
  for (const [name, value] of headers) {
    // Connection: close is the one hop-by-hop field an app may give (SR-10, SR-11); toFetch passes
    // it on. A 426 keeps its Upgrade (SR-9).
    if (name === 'connection' && /^[ \t]*close[ \t]*$/i.test(value)) out.push([name, 'close']);
    if (name === 'upgrade' && status === 426) out.push([name, value]);
    if (name === 'set-cookie' || HOP_BY_HOP.has(name)) continue;
    out.push([name, value]);
  }
  for (const cookie of headers.getSetCookie()) out.push(['set-cookie', cookie]);
  return out;
}

/** inputStream is a pull-based ReadableStream over `nsgi.input`: each read of it is one read of the input. */
function inputStream(input: Input): ReadableStream<Uint8Array> {
  let it: AsyncIterator<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        it ??= input[Symbol.asyncIterator]();
        const r = await it.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      async cancel() {
        await it?.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

