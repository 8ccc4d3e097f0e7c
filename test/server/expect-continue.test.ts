/**
 * `Expect: 100-continue` on the real server (RFC 9110 §10.1.1): the interim 100 goes out only when
 * the app first reads `nsgi.input`, never to an app that answers without reading, and curl's own
 * 100-continue upload works. Raw bytes on an ephemeral loopback port, and curl.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import {
  RawClient,
  cleanup,
  curl,
  finalResponses,
  hashApp,
  header,
  parseResponses,
  sha256,
  sleep,
  startServer,
  waitUntil,
  pathApp,
} from '../helpers/server.ts';

afterEach(cleanup);

describe('Expect: 100-continue', () => {
  it('IN-6, IN-7: sends 100 Continue only when the app first reads nsgi.input', async () => {
    let called = false;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const { port } = await startServer(async (environ, startResponse) => {
      called = true;
      await gate;
      const body = await environ['nsgi.input'].text();
      startResponse('200 OK', []);
      return [`got ${body}`];
    });
    const client = await RawClient.connect(port);
    client.write('POST / HTTP/1.1\nHost: t\nContent-Length: 5\nExpect: 100-continue\n\n');
    await waitUntil(() => called, 'the app to be called');
    await sleep(150);
    expect(client.data.length).toBe(0);
    openGate();
    await client.waitForText('\r\n\r\n');
    expect(client.text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    client.write('hello');
    await client.waitForResponses(1);
    const responses = parseResponses(client.data);
    expect(responses.map((r) => r.status)).toEqual([100, 200]);
    expect(responses[1]!.body.toString()).toBe('got hello');
  });

  it('IN-7, IN-8: sends no 100 Continue to an app that answers without reading, and never parses the body as a request', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const inner = 'GET /evil HTTP/1.1\r\nHost: t\r\n\r\n';
    const client = await RawClient.connect(port);
    client.write(`POST /upload HTTP/1.1\nHost: t\nContent-Length: ${inner.length}\nExpect: 100-continue\n\n`);
    await client.waitForResponses(1);
    client.write(inner);
    await client.settle(() => false, 500);
    expect(client.text).not.toContain('100 Continue');
    const responses = finalResponses(client.data, { closed: client.closed });
    expect(responses.map((r) => r.body.toString())).toEqual(['/upload']);
    expect(seen).toEqual(['/upload']);
  });

  const failing: App = () => {
    throw new Error('refused before reading');
  };
  it.each([
    ['Expect: 100-continue and a body not sent yet', 'Content-Length: 100\nExpect: 100-continue\n\n', 200],
    ['a 1 MiB body of which 1 KiB was sent', `Content-Length: ${1024 * 1024}\n\n${'x'.repeat(1024)}`, 200],
    ['Expect: 100-continue and a body not sent yet, by an app that fails', 'Content-Length: 100\nExpect: 100-continue\n\n', 500],
    ['a 1 MiB body of which 1 KiB was sent, by an app that fails', `Content-Length: ${1024 * 1024}\n\n${'x'.repeat(1024)}`, 500],
  ])('announces Connection: close when it answers an unread request with %s and then closes', async (_what, rest, status) => {
    // RFC 9110 §10.1.1: a server that answers before reading the whole request content SHOULD
    // say whether it will close or read and discard the rest; its own 500 is no exception.
    const { port } = await startServer(status === 500 ? failing : pathApp());
    const client = await RawClient.connect(port);
    client.write(`POST /upload HTTP/1.1\nHost: t\n${rest}`);
    await client.waitForResponses(1);
    await client.settle(() => false, 500);
    const [r] = finalResponses(client.data);
    expect(r?.status).toBe(status);
    if (client.closed) expect(header(r!, 'connection')).toBe('close');
    else expect(header(r!, 'connection')).toBeUndefined();
  });

  it('SRV-30, SRV-21: answers 417 to an HTTP/1.1 request with another expectation, without calling the app, and ignores it on HTTP/1.0', async () => {
    const seen: string[] = [];
    const { port } = await startServer(pathApp(seen));
    const refused = await RawClient.connect(port);
    refused.write('POST /upload HTTP/1.1\nHost: t\nExpect: 100-continue, x-fast\nContent-Length: 2\n\nok');
    await refused.waitForClose();
    const [r] = finalResponses(refused.data, { closed: true });
    expect(r?.status).toBe(417);
    expect(header(r!, 'connection')).toBe('close');
    expect(r!.body.toString()).toContain('"x-fast"');
    expect(refused.text).not.toContain('100 Continue');
    // RFC 9110 §10.1.1: an empty member is no expectation, and HTTP/1.0 has no Expect field.
    const ignored = await RawClient.connect(port);
    ignored.write('POST /empty HTTP/1.1\nHost: t\nExpect: ,\nContent-Length: 0\n\nPOST /old HTTP/1.0\nExpect: x-fast\n\n');
    await ignored.waitForClose();
    expect(finalResponses(ignored.data, { closed: true }).map((x) => x.status)).toEqual([200, 200]);
    expect(seen).toEqual(['/empty', '/old']);
  });

  it('IN-6: works with curl -H "Expect: 100-continue" --data-binary @file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nsgi-expect-'));
    try {
      const data = randomBytes(300 * 1024);
      const file = path.join(dir, 'upload.bin');
      await writeFile(file, data);
      const { url } = await startServer(hashApp);
      const result = await curl(['-v', '--expect100-timeout', '10', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `${url}/`]);
      expect(result.code).toBe(0);
      expect(result.stderr).toMatch(/< HTTP\/1\.1 100 Continue/);
      expect(result.stdout.toString()).toBe(`${data.length} ${sha256(data)}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
