/**
 * The exchange under way on a server connection: the request's `nsgi.input`, its response cycle
 * over the connection's sink, and the environ the app is called with, carrying what only the
 * reference server offers (early hints, trailers, upgrades) and what trusted proxies say. A
 * connection has one Exchange, reused for each of its requests in turn; it is also what the
 * environ knows of the connection (ConnectionInfo), kept here rather than in an object of its
 * own: idle connections are what a streaming server holds most of.
 */
import type net from 'node:net';
import type { ErrorStream } from '../protocol/nsgi.ts';
import { RequestInput, type InputHooks } from './body.ts';
import { ResponseCycle } from './cycle.ts';
import type { Driver } from './driver.ts';
import type { ConnectionInfo } from './environ.ts';
import { ClientGoneError, ServerClosingError } from './errors.ts';
import { applyForwarded } from './forwarded.ts';
import { fileWrapper } from './helpers/file-body.ts';
import type { RequestHead } from './http1/parser.ts';
import type { PreparedHeaders } from './http1/writer.ts';
import type { ServerContext } from './server.ts';
import type { ServerSink } from './server-sink.ts';

/** Exchange is the request under way on one connection, and what the environ knows of the connection. */
export class Exchange implements InputHooks, ConnectionInfo {
  readonly remoteAddress: string;
  readonly remotePort: string;
  readonly localAddress: string;
  readonly localPort: string;
  readonly urlScheme: 'http' | 'https';
  readonly scriptName: string;
  readonly multiprocess: boolean;
  readonly errors: ErrorStream;
  /** cycle is the response cycle of the request under way, null before a request's head. */
  cycle: ResponseCycle<PreparedHeaders> | null = null;
  /** input is the request's `nsgi.input`, null before a request's head. */
  input: RequestInput | null = null;
  private readonly trusted: boolean;
  private requestStart = 0;
  /** The client's address for the access log: REMOTE_ADDR as the app got it, after proxy trust. */
  private clientAddress = '';

  constructor(
    private readonly driver: Driver,
    socket: net.Socket,
    private readonly server: ServerContext,
    private readonly sink: ServerSink,
  ) {
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = String(socket.remotePort ?? '');
    this.localAddress = socket.localAddress ?? '';
    this.localPort = String(socket.localPort ?? '');
    this.scriptName = server.scriptName;
    this.urlScheme = server.urlScheme;
    this.multiprocess = server.multiprocess;
    this.errors = server.errors;
    this.trusted = server.trustedProxies?.trusts(this.remoteAddress) ?? false;
  }

  /** running is true while a response is under way. */
  get running(): boolean {
    const cycle = this.cycle;
    return cycle !== null && !cycle.finished;
  }

  /**
   * start runs the app for a request whose head has arrived. `peerEnded` is the client's FIN
   * having come with the head: the signal fires, but the response may still finish.
   */
  start(head: RequestHead, peerEnded: boolean): void {
    const server = this.server;
    const http = this.driver.http;
    this.requestStart = server.accessLog === undefined ? 0 : Date.now();
    if (server.closing) http.mustClose();
    if (head.method === 'CONNECT') {
      http.sendErrorResponse(501, 'CONNECT is not supported', true);
      // Closed after a linger, whatever the request announced: waiting for a body announced but
      // never sent would hold the connection for ever (SRV-21).
      this.driver.close(true);
      return;
    }
    const input = new RequestInput(this, head.contentLength <= 0 && !head.chunked);
    const cycle = new ResponseCycle(this.sink, head, server.errors);
    const environ = server.environs.build(head, this, input, cycle);
    if (head.version === 'HTTP/1.1') {
      environ['nsgi.early_hints'] = cycle.earlyHints.bind(cycle);
      environ['nsgi.set_trailers'] = cycle.setTrailers.bind(cycle);
      if (head.upgrade) environ['nsgi.upgrade'] = cycle.upgrade.bind(cycle);
    }
    environ['nsgi.file_wrapper'] = fileWrapper;
    if (this.trusted) applyForwarded(environ, server.trustedProxies!, server.forwardedHeaders);
    this.clientAddress = this.trusted ? String(environ.REMOTE_ADDR) : this.remoteAddress;
    this.cycle = cycle;
    this.input = input;
    // A head that finished arriving after close() began: the app learns at once that the server
    // is closing (SRV-28), as the exchanges under way at close() did.
    if (server.closing) cycle.abortSignal(new ServerClosingError());
    if (peerEnded) {
      const reason = new ClientGoneError('the client closed its side of the connection');
      cycle.abortSignal(reason);
      if (!input.complete) input.fail(reason);
    }
    cycle.run(server.app, environ);
  }

  /** clear forgets the finished exchange, before the next request is read. */
  clear(): void {
    this.cycle = null;
    this.input = null;
  }

  /** abort is the client going away: the signal fires, reads fail, the body is closed. */
  abort(reason: Error): void {
    const cycle = this.cycle;
    if (cycle === null) return;
    cycle.abortSignal(reason);
    this.input?.fail(reason);
    cycle.abandon();
  }

  /** firstRead is the input's first read: time for `100 Continue` (SPEC IN-6). */
  firstRead(input: RequestInput): void {
    // An input kept by an app past its own exchange must not speak for the next request.
    if (input !== this.input || !this.running) return;
    this.driver.http.sendContinue();
    this.sink.scheduleFlush();
    // From now on the client owes the body, so its silence counts (SRV-29: never before).
    this.driver.bodyOwed();
  }

  /** resumeInput is the app catching up with the request body: read the socket again. */
  resumeInput(input: RequestInput): void {
    if (input === this.input) this.driver.inputWanted();
  }

  /** logAccess writes the access log line of this exchange; `refused` is the status of a request refused at its head. */
  logAccess(refused: number): void {
    const http = this.driver.http;
    const reachedApp = this.cycle !== null;
    this.server.accessLog!(
      this.server.accessLogFormat({
        remoteAddress: reachedApp ? this.clientAddress : this.remoteAddress,
        request: http.request,
        requestLine: http.request === null ? http.requestLine : null,
        reachedApp,
        status: refused || http.statusCode,
        bodyBytes: http.bodyBytes,
        start: this.requestStart,
      }),
    );
  }
}
