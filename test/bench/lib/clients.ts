/**
 * The small Node clients for what wrk cannot measure: a download that counts body bytes (chunked
 * or Content-Length framing), many idle event-stream connections, and a reader throttled to a
 * fixed rate. Each one is bounded in time.
 */
import net from 'node:net';

const HEAD_END = '\r\n\r\n';

/** BodyCounter follows a response's framing and counts its body bytes without copying them. */
export class BodyCounter {
  head = '';
  status = 0;
  bodyBytes = 0;
  done = false;
  private headDone = false;
  private chunked = false;
  private length = -1;
  // Chunked state: 0 size line, 1 data, 2 CRLF after data, 3 trailer section.
  private state = 0;
  private sizeLine = '';
  private remaining = 0;
  private line = '';

  feed(buf: Buffer): void {
    let i = 0;
    if (!this.headDone) {
      this.head += buf.toString('latin1');
      const end = this.head.indexOf(HEAD_END);
      if (end < 0) {
        if (this.head.length > 64 * 1024) throw new Error('response head too large');
        return;
      }
      const headLength = end + HEAD_END.length;
      i = buf.length - (this.head.length - headLength);
      this.head = this.head.slice(0, end);
      this.headDone = true;
      this.status = Number(this.head.slice(9, 12));
      this.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(this.head);
      const cl = /\r\ncontent-length:\s*(\d+)/i.exec(this.head);
      if (!this.chunked) {
        if (cl === null) throw new Error(`response has neither chunked coding nor a Content-Length:\n${this.head}`);
        this.length = Number(cl[1]);
        if (this.length === 0) this.done = true;
      }
    }
    if (!this.chunked) {
      this.bodyBytes += buf.length - i;
      if (this.bodyBytes >= this.length) this.done = true;
      return;
    }
    while (i < buf.length && !this.done) {
      if (this.state === 1) {
        const n = Math.min(this.remaining, buf.length - i);
        this.remaining -= n;
        this.bodyBytes += n;
        i += n;
        if (this.remaining === 0) {
          this.state = 2;
          this.remaining = 2;
        }
      } else if (this.state === 2) {
        const n = Math.min(this.remaining, buf.length - i);
        this.remaining -= n;
        i += n;
        if (this.remaining === 0) this.state = 0;
      } else {
        const lf = buf.indexOf(0x0a, i);
        const end = lf < 0 ? buf.length : lf;
        const part = buf.toString('latin1', i, end);
        i = lf < 0 ? buf.length : lf + 1;
        if (this.state === 0) {
          this.sizeLine += part;
          if (lf < 0) continue;
          const size = parseInt(this.sizeLine, 16);
          this.sizeLine = '';
          if (!Number.isFinite(size)) throw new Error(`bad chunk size line`);
          if (size === 0) this.state = 3;
          else {
            this.state = 1;
            this.remaining = size;
          }
        } else {
          this.line += part;
          if (lf < 0) continue;
          const blank = this.line === '\r' || this.line === '';
          this.line = '';
          if (blank) this.done = true;
        }
      }
    }
  }
}

/** DownloadResult is one download's size and timing. */
export interface DownloadResult {
  bodyBytes: number;
  seconds: number;
}

/**
 * download sends `GET path` on a new connection and resolves when the whole body has arrived.
 * `beforeRequest` runs just before the request is written (to read the server's CPU time).
 */
export function download(port: number, path: string, timeoutMs: number, beforeRequest: () => void = () => {}): Promise<DownloadResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const counter = new BodyCounter();
    let start = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`download of ${path} took more than ${timeoutMs} ms (${counter.bodyBytes} bytes)`));
    }, timeoutMs);
    socket.on('connect', () => {
      beforeRequest();
      start = performance.now();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    });
    socket.on('data', (buf: Buffer) => {
      try {
        counter.feed(buf);
      } catch (err) {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
        return;
      }
      if (!counter.done) return;
      const seconds = (performance.now() - start) / 1000;
      clearTimeout(timer);
      socket.destroy();
      if (counter.status !== 200) reject(new Error(`${path}: status ${counter.status}`));
      else resolve({ bodyBytes: counter.bodyBytes, seconds });
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!counter.done) reject(new Error(`${path}: connection closed after ${counter.bodyBytes} body bytes`));
    });
  });
}

/**
 * openEventStreams opens `count` connections that each send `GET /sse` and resolves once every
 * one has received its response head and first event (or what `ready` waits for). `concurrency` bounds the connects in
 * flight, and the whole thing is bounded by `timeoutMs`.
 */
export async function openEventStreams(
  port: number,
  count: number,
  concurrency: number,
  timeoutMs: number,
  ready: (seen: string) => boolean = (seen) => seen.includes('data: hello'),
): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  const deadline = Date.now() + timeoutMs;
  let next = 0;
  const openOne = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      sockets.push(socket);
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`event stream ${sockets.length} not ready in time`)), Math.max(0, deadline - Date.now()));
      socket.on('connect', () => socket.write('GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n'));
      const onData = (buf: Buffer): void => {
        seen += buf.toString('latin1');
        if (!ready(seen)) return;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.on('data', () => {});
        if (!seen.startsWith('HTTP/1.1 200')) reject(new Error(`event stream answered ${seen.slice(0, 40)}`));
        else resolve();
      };
      socket.on('data', onData);
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await openOne();
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } catch (err) {
    closeAbruptly(sockets);
    throw err;
  }
  return sockets;
}

/**
 * closeAbruptly resets the sockets instead of closing them gracefully, so thousands of client
 * ports do not sit in TIME_WAIT and run the ephemeral range dry across runs.
 */
export function closeAbruptly(sockets: net.Socket[]): void {
  for (const socket of sockets) {
    socket.on('error', () => {});
    if (socket.destroyed) continue;
    if (socket.readyState === 'open') socket.resetAndDestroy();
    else socket.destroy();
  }
}

/**
 * slowRead downloads `path` at no more than `bytesPerSecond` for `seconds`, then drops the
 * connection. `sample` is called every `sampleMs` while it reads. Resolves with the bytes read.
 */
export function slowRead(
  port: number,
  path: string,
  bytesPerSecond: number,
  seconds: number,
  sampleMs: number,
  sample: () => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let bytes = 0;
    let start = 0;
    let resumeTimer: NodeJS.Timeout | null = null;
    const sampler = setInterval(sample, sampleMs);
    const finish = (err: Error | null): void => {
      clearInterval(sampler);
      clearTimeout(stopTimer);
      if (resumeTimer !== null) clearTimeout(resumeTimer);
      closeAbruptly([socket]);
      if (err !== null) reject(err);
      else resolve(bytes);
    };
    const stopTimer = setTimeout(() => finish(null), seconds * 1000);
    socket.on('connect', () => {
      start = performance.now();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    });
    socket.on('data', (buf: Buffer) => {
      bytes += buf.length;
      const due = (bytes / bytesPerSecond) * 1000;
      const elapsed = performance.now() - start;
      if (due > elapsed && resumeTimer === null) {
        socket.pause();
        resumeTimer = setTimeout(() => {
          resumeTimer = null;
          socket.resume();
        }, due - elapsed);
      }
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`${path}: server closed the slow reader after ${bytes} bytes`)));
  });
}
