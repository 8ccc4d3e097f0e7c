/**
 * The WebSocket helper with and without `ws`'s optional native helpers (`bufferutil` for masking,
 * `utf-8-validate` for text frames): a real nsgi process, started with `ws` told to use them or to
 * skip them, echoes a large binary message (masked natively when the helper loads, since `ws`
 * masks in JavaScript only under 48 bytes) and multi-byte text, and closes with 1007 on text that
 * is not UTF-8 (RFC 6455 §8.1).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';

const FIXTURE = fileURLToPath(new URL('../fixtures/websocket-echo.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** START_TIMEOUT_MS bounds how long the child may take to listen (tsx compiles first). */
const START_TIMEOUT_MS = 20_000;
/** CLOSE_INVALID_PAYLOAD is the close code for text that is not UTF-8 (RFC 6455 §7.4.1). */
const CLOSE_INVALID_PAYLOAD = 1007;

const children = new Set<ChildProcess>();
const clients = new Set<WebSocket>();

afterEach(() => {
  for (const ws of clients) ws.terminate();
  clients.clear();
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});

/** startEcho runs the echo fixture with `env` added and resolves with its port. */
function startEcho(env: Record<string, string>): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no port within ${START_TIMEOUT_MS} ms: ${err}`)), START_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the echo server exited with ${code}: ${err}`));
    });
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /port=(\d+)/.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      resolve(Number(m[1]));
    });
  });
}

/** open connects a `ws` client to the echo server. */
function open(port: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  clients.add(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** nextMessage resolves with the next message and whether it was binary. */
function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary })));
}

const CASES: Array<{ name: string; env: Record<string, string> }> = [
  { name: 'with bufferutil and utf-8-validate', env: {} },
  { name: 'without them (ws falls back to JavaScript)', env: { WS_NO_BUFFER_UTIL: '1', WS_NO_UTF_8_VALIDATE: '1' } },
];

describe.each(CASES)('the WebSocket helper $name', ({ env }) => {
  it('echoes a 64 KiB binary message and multi-byte text, byte for byte', async () => {
    const ws = await open(await startEcho(env));
    const big = randomBytes(64 * 1024);
    let reply = nextMessage(ws);
    ws.send(big, { binary: true });
    const binary = await reply;
    expect(binary.isBinary).toBe(true);
    expect(binary.data.equals(big)).toBe(true);
    const text = 'échos, エコー, 🔁 '.repeat(20);
    reply = nextMessage(ws);
    ws.send(text);
    const echoed = await reply;
    expect(echoed.isBinary).toBe(false);
    expect(echoed.data.toString('utf8')).toBe(text);
  }, 30_000);

  it('closes with 1007 on a text message that is not UTF-8', async () => {
    const ws = await open(await startEcho(env));
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    // A lone continuation byte is not UTF-8; the client sends the bytes as they are.
    ws.send(Buffer.from([0x68, 0x69, 0x80]), { binary: false });
    expect(await closed).toBe(CLOSE_INVALID_PAYLOAD);
  }, 30_000);
});
