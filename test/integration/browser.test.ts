/**
 * The demo page in a real browser: headless Chromium from Debian's `chromium` package, driven by
 * playwright-core (which never downloads a browser of its own here). The page must receive server-
 * sent events, round-trip a WebSocket message, and carry a chat message from one page to another
 * by long polling. A screenshot of the page goes to test/.artifacts/ (ignored by git).
 *
 * The browser is required: without /usr/bin/chromium these tests fail, saying how to install it.
 */

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { app as demo, chat } from '../../examples/demo.ts';
import { serve, type Server } from '../../src/index.ts';
import { CHROMIUM, CHROMIUM_ARGS, MISSING_CHROMIUM } from '../helpers/chromium.ts';

/** document is the page's, inside the functions Playwright runs there; the tests compile without the DOM library. */
declare const document: {
  getElementById(id: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): Iterable<{ textContent: string | null }>;
};

/** ARTIFACTS is where the screenshot goes; .gitignore keeps it out of the repository. */
const ARTIFACTS = fileURLToPath(new URL('../.artifacts/', import.meta.url));

/** BROWSER_TEST_MS bounds each test: the clock alone needs two seconds for three events. */
const BROWSER_TEST_MS = 30_000;

let browser: Browser | undefined;
let server: Server | undefined;
const contexts = new Set<BrowserContext>();
const pageErrors: string[] = [];

beforeAll(async () => {
  // Each test fails on its own with MISSING_CHROMIUM (openDemo), rather than being skipped.
  if (!existsSync(CHROMIUM)) return;
  // A launch without a user-data dir gets a fresh temporary profile, removed on close.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS], headless: true, timeout: 20_000 });
  server = await serve(demo, { host: '127.0.0.1', port: 0, errors: { write: () => {} } });
}, BROWSER_TEST_MS);

afterEach(async () => {
  await Promise.all([...contexts].map((context) => context.close()));
  contexts.clear();
});

afterAll(async () => {
  await browser?.close();
  await server?.close({ timeout: 2000 });
});

/** openDemo opens the demo page in a fresh browser context and records any script error it throws. */
async function openDemo(): Promise<Page> {
  if (browser === undefined) throw new Error(MISSING_CHROMIUM);
  const context = await browser.newContext();
  contexts.add(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.setDefaultTimeout(10_000);
  await page.goto(`${server!.url}/`, { waitUntil: 'domcontentloaded' });
  return page;
}

describe('the demo page in Chromium', () => {
  it('receives at least three server-sent events', { timeout: BROWSER_TEST_MS }, async () => {
    const page = await openDemo();
    await page.waitForFunction(() => Number(document.getElementById('clock-count')?.textContent) >= 3, undefined, { timeout: 10_000 });
    expect(await page.textContent('#sse-state')).toBe('open');
    expect(await page.textContent('#clock')).toMatch(/\d/);
    expect(pageErrors).toEqual([]);
  });

  it('round-trips a message over the WebSocket', { timeout: BROWSER_TEST_MS }, async () => {
    const page = await openDemo();
    await page.waitForFunction(() => document.getElementById('ws-state')?.textContent === 'open');
    await page.fill('#ws-input', 'hello from chromium');
    await page.press('#ws-input', 'Enter');
    await page.waitForFunction(() => [...document.querySelectorAll('#ws-log li')].some((li) => li.textContent === '< hello from chromium'));
    expect(await page.$$eval('#ws-log li', (items) => items.map((li) => li.textContent))).toEqual(['> hello from chromium', '< hello from chromium']);
    expect(pageErrors).toEqual([]);
  });

  it('delivers a chat message from one page to another by long polling, and takes a screenshot', { timeout: BROWSER_TEST_MS }, async () => {
    const writer = await openDemo();
    const reader = await openDemo();
    // Both pages are parked in GET /chat/poll before anything is sent, so the message can only
    // reach the reader by a poll being answered.
    await expect.poll(() => chat.topic.waiterCount, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    const text = `long-polled ${Date.now()}`;
    await writer.fill('#chat-name', 'writer');
    await writer.fill('#chat-text', text);
    await writer.press('#chat-text', 'Enter');
    await reader.waitForFunction((expected) => [...document.querySelectorAll('#chat-log li')].some((li) => li.textContent === expected), `writer: ${text}`);
    await writer.waitForFunction((expected) => [...document.querySelectorAll('#chat-log li')].some((li) => li.textContent === expected), `writer: ${text}`);

    // The screenshot shows every part working: wait for a few ticks and an echo on this page too.
    await writer.waitForFunction(() => Number(document.getElementById('clock-count')?.textContent) >= 2);
    await writer.waitForFunction(() => document.getElementById('ws-state')?.textContent === 'open');
    await writer.fill('#ws-input', 'echo for the screenshot');
    await writer.press('#ws-input', 'Enter');
    await writer.waitForFunction(() => [...document.querySelectorAll('#ws-log li')].some((li) => li.textContent === '< echo for the screenshot'));
    await mkdir(ARTIFACTS, { recursive: true });
    const path = `${ARTIFACTS}demo.png`;
    await writer.screenshot({ path, fullPage: true });
    expect(existsSync(path)).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
