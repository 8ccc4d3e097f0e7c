/**
 * Why the TLS listener speaks h2, shown in headless Chromium: a page opens twelve `EventSource`s
 * to one origin. Over HTTP/1.1 a browser keeps at most six connections per origin, and each open
 * event stream holds one, so the seventh stream never starts; over h2 all twelve are streams of
 * one connection and all receive events. The certificate is made by openssl in a temp dir; the
 * browser is told to accept it.
 *
 * The browser is required: without /usr/bin/chromium these tests fail, saying how to install it.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { App, Environ } from '../../protocol/nsgi.ts';
import { serve, type Server } from '../../src/index.ts';
import { makeCert, type Cert } from '../helpers/certs.ts';
import { CHROMIUM, CHROMIUM_ARGS, MISSING_CHROMIUM } from '../helpers/chromium.ts';

/** window is the page's, inside the functions Playwright runs there; the tests compile without the DOM library. */
declare const window: { opened: number[] };

/** STREAMS is how many event streams the page opens: twice the six connections HTTP/1.1 allows. */
const STREAMS = 12;

/** HTTP1_CONNECTIONS is Chromium's limit of connections per origin (and most browsers'). */
const HTTP1_CONNECTIONS = 6;

/** STALL_MS is how long the HTTP/1.1 page is watched after its sixth stream opened, for a seventh that must not come. */
const STALL_MS = 1500;

const BROWSER_TEST_MS = 30_000;

/** PAGE opens the streams and records, by index, each that received its first event. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>twelve streams</title><script>
window.opened = [];
for (let i = 0; i < ${STREAMS}; i++) {
  const source = new EventSource('/events/' + i);
  source.onmessage = () => { if (!window.opened.includes(i)) window.opened.push(i); };
}
</script>`;

/** protocols records the SERVER_PROTOCOL of each event stream the app served. */
const protocols: string[] = [];

const app: App = async function* (environ: Environ, startResponse) {
  if (!environ.PATH_INFO.startsWith('/events/')) {
    startResponse('200 OK', [['Content-Type', 'text/html; charset=utf-8'], ['Cache-Control', 'no-store']]);
    yield PAGE;
    return;
  }
  protocols.push(environ.SERVER_PROTOCOL);
  startResponse('200 OK', [['Content-Type', 'text/event-stream'], ['Cache-Control', 'no-store']]);
  const signal = environ['nsgi.signal'];
  yield `data: ${environ.PATH_INFO}\n\n`;
  // The stream stays open, as an event stream does, until the browser or the server leaves.
  while (!signal.aborted) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve(undefined);
      }, { once: true });
    });
    if (!signal.aborted) yield ': keep-alive\n\n';
  }
};

let dir = '';
let cert: Cert;
let browser: Browser | undefined;
const servers = new Set<Server>();
const contexts = new Set<BrowserContext>();

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nsgi-browser-h2-'));
  cert = makeCert(dir, 'server');
  if (!existsSync(CHROMIUM)) return;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, '--ignore-certificate-errors'], headless: true, timeout: 20_000 });
}, BROWSER_TEST_MS);

afterEach(async () => {
  await Promise.all([...contexts].map((context) => context.close()));
  contexts.clear();
  await Promise.all([...servers].map((server) => server.close({ timeout: 2000 })));
  servers.clear();
  protocols.length = 0;
});

afterAll(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** openStreams serves the page (h2 on or off), opens it, and waits until `least` streams have an event. */
async function openStreams(http2: boolean, least: number): Promise<() => Promise<number[]>> {
  if (browser === undefined) throw new Error(MISSING_CHROMIUM);
  const server = await serve(app, { host: '127.0.0.1', port: 0, tls: { cert: cert.cert, key: cert.key }, http2, errors: { write: () => {} } });
  servers.add(server);
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  contexts.add(context);
  const page = await context.newPage();
  await page.goto(`${server.url}/`, { waitUntil: 'domcontentloaded', timeout: 10_000 });
  await page.waitForFunction((n) => window.opened.length >= n, least, { timeout: 10_000 });
  return () => page.evaluate(() => [...window.opened]);
}

describe('twelve EventSources to one origin in Chromium', () => {
  it('all receive events over h2', { timeout: BROWSER_TEST_MS }, async () => {
    const opened = await openStreams(true, STREAMS);
    expect((await opened()).sort((a, b) => a - b)).toEqual([...Array(STREAMS).keys()]);
    expect(protocols).toHaveLength(STREAMS);
    expect(new Set(protocols)).toEqual(new Set(['HTTP/2']));
  });

  it('over HTTP/1.1 (http2: false) only six open and the seventh stalls', { timeout: BROWSER_TEST_MS }, async () => {
    const opened = await openStreams(false, HTTP1_CONNECTIONS);
    await new Promise((resolve) => setTimeout(resolve, STALL_MS));
    expect(await opened()).toHaveLength(HTTP1_CONNECTIONS);
    expect(protocols).toHaveLength(HTTP1_CONNECTIONS);
    expect(new Set(protocols)).toEqual(new Set(['HTTP/1.1']));
  });
});
