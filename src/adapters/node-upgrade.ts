/**
 * The requests node:http hands to its `'upgrade'` event, with their sockets
 * ({@link toNodeUpgradeListener} in `node-http.ts`). node:http has let go of such a connection:
 * it does not parse the body nor read another request. So the adapter reads the socket itself:
 * the body, if any, into `nsgi.input` through nsgi's own parser (Content-Length or chunked), and
 * what follows into the parser's buffer, which becomes `head` if the app upgrades. A refusal is
 * an ordinary response on a ServerResponse bound to the socket, which closes after it.
 */
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { HeaderList, Upgraded } from '../../protocol/nsgi.ts';
import { RequestInput, type InputHooks } from '../body.ts';
import { LazySignal } from '../environ.ts';
import { ClientGoneError } from '../errors.ts';
import { RequestParser } from '../http1/parser.ts';
import { upgradeHead } from '../upgrade.ts';
import { NodeSink, connectionInfo, describeRequest, type NodeRequest, type NodeSettings } from './node-exchange.ts';

/** UPGRADE_BUFFER_LIMIT is how many bytes past the body are read, for `head`, before reading stops. */
const UPGRADE_BUFFER_LIMIT = 64 * 1024;

/**
 * UpgradeExchange serves one request that node:http handed to its `'upgrade'` event. Once the app
 * has taken the connection, the response and the parser are dropped: an upgraded connection keeps
 * little more than its signal.
 */
export class UpgradeExchange implements InputHooks {
  /** The request's `nsgi.signal`: it outlives the response, to fire when the server closes (UPG-7). */
  private readonly signal = new LazySignal();
  private readonly request: NodeRequest;
  private readonly input: RequestInput;
  private response: NodeSink | null;
  private parser: RequestParser | null;
  private readonly onData = this.readData.bind(this);
  private readonly onEnd = this.peerEnded.bind(this);
  private pausedForInput = false;
  private closed = false;

  constructor(
    private readonly settings: NodeSettings,
    req: IncomingMessage,
    private readonly socket: Socket,
    head: Buffer,
    private readonly registry: Set<UpgradeExchange> | null,
  ) {
    this.request = describeRequest(req);
    const res = new http.ServerResponse(req);
    // node:http no longer reads this connection, so it ends after the response (Connection: close).
    res.shouldKeepAlive = false;
    this.response = new NodeSink(res, socket, settings, this.request);
    this.response.upgrader = this.handOver.bind(this);
    const { contentLength, chunked } = this.request;
    this.input = new RequestInput(this, !chunked && !(Number(contentLength) > 0));
    const parser = new RequestParser();
    this.parser = parser;
    try {
      parser.startBody(contentLength, chunked);
    } catch (err) {
      // A Content-Length node:http took and nsgi's parser does not (over 15 digits): reads fail.
      this.input.fail(err);
    }
    parser.feed(head);
  }

  /** start takes the socket over from node:http: from here its errors and its closing are the adapter's. */
  start(): void {
    const socket = this.socket;
    this.registry?.add(this);
    socket.on('error', ignoreSocketError);
    socket.on('close', this.socketClosed.bind(this));
    this.whenSocketFree();
  }

  /**
   * whenSocketFree runs the app once the socket carries no response: node:http hands over an
   * upgrade request pipelined behind others while it is still sending their responses.
   */
  private whenSocketFree(): void {
    if (this.closed) return;
    // node:http keeps the response it is sending on the socket in this field and offers no
    // public way to learn that one is still under way; answering now would interleave the two.
    const earlier = (this.socket as { _httpMessage?: http.ServerResponse | null })._httpMessage;
    if (earlier != null) {
      earlier.once('finish', this.whenSocketFree.bind(this));
      return;
    }
    this.run(this.response!);
  }

  /** run reads the socket and calls the app. */
  private run(response: NodeSink): void {
    const socket = this.socket;
    response.res.assignSocket(socket);
    response.res.on('finish', this.responseFinished.bind(this));
    // node:http's keep-alive and request timeouts no longer apply (UPG-4).
    socket.setTimeout(0);
    socket.on('end', this.onEnd);
    socket.on('data', this.onData);
    const cycle = response.cycle;
    const environ = this.settings.environs.build(this.request, connectionInfo(this.settings, socket), this.input, this.signal);
    // UPG-1: the hook is offered on HTTP/1.1 only.
    if (this.request.version === 'HTTP/1.1') environ['nsgi.upgrade'] = cycle.upgrade.bind(cycle);
    cycle.run(this.settings.app, environ);
    // The body that came with the head is read after the app's first call, as the reference
    // server reads it: an app that upgrades at once has not read it (UPG-3).
    this.process();
  }

  /** handOver gives the app the socket (SPEC §6.2), once the cycle has allowed the upgrade. */
  private handOver(headers: HeaderList | undefined): Upgraded {
    if (this.closed) throw new ClientGoneError();
    const response = this.response!;
    const parser = this.parser!;
    const head101 = upgradeHead(this.input.complete, headers, this.request.headers);
    // UPG-4: the adapter's listeners come off, except 'close' (for the signal) and 'error'.
    const socket = this.socket;
    response.res.detachSocket(socket);
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.pause();
    const rest = parser.takeBuffered();
    this.response = this.parser = null;
    if (head101 !== '') socket.write(head101, 'latin1');
    return { socket, head: rest };
  }

  /** serverClosing fires `nsgi.signal` because the server is shutting down (UPG-7). */
  serverClosing(reason: Error): void {
    this.signal.abortSignal(reason);
  }

  firstRead(): void {
    this.response?.firstRead();
  }

  resumeInput(): void {
    if (!this.pausedForInput || this.parser === null) return;
    this.pausedForInput = false;
    if (this.parser.buffered <= UPGRADE_BUFFER_LIMIT) this.socket.resume();
  }

  private readData(data: Buffer): void {
    this.parser?.feed(data);
    this.process();
  }

  /** process turns what the parser holds into body for `nsgi.input`; the rest stays buffered. */
  private process(): void {
    const parser = this.parser;
    if (parser === null) return;
    const input = this.input;
    try {
      for (;;) {
        const event = parser.next();
        if (event.kind === 'data') {
          if (!input.push(event.data)) this.pausedForInput = true;
        } else if (event.kind === 'end') {
          input.end();
        } else {
          break;
        }
      }
    } catch (err) {
      // A malformed body: the app's read fails, and nothing more is read.
      input.fail(err);
      this.socket.pause();
      return;
    }
    if (this.pausedForInput || parser.buffered > UPGRADE_BUFFER_LIMIT) this.socket.pause();
  }

  /** peerEnded is a FIN before the upgrade: the client has left, unless its response is complete (ENV-27). */
  private peerEnded(): void {
    if (this.response?.cycle.finished === false) this.socket.destroy();
  }

  private responseFinished(): void {
    this.socket.destroySoon();
  }

  /** socketClosed fires the signal (ENV-27, UPG-7) and, before an upgrade, fails the body and the response. */
  private socketClosed(): void {
    this.closed = true;
    this.registry?.delete(this);
    const reason = new ClientGoneError();
    this.signal.abortSignal(reason);
    this.input.fail(reason);
    this.response?.leave(reason);
  }
}

/** startUpgradeExchange serves a request of node:http's `'upgrade'` event. */
export function startUpgradeExchange(settings: NodeSettings, req: IncomingMessage, socket: Socket, head: Buffer, registry: Set<UpgradeExchange> | null): void {
  new UpgradeExchange(settings, req, socket, head, registry).start();
}

function ignoreSocketError(): void {
  // 'close' follows; a reset client is an ordinary event, not a server error.
}
