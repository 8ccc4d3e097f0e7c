/**
 * The HTTP/1.1 driver's deadlines, brought to HTTP/2 where they make sense for it (RFC 9113):
 * {@link HeadWatch} ends a session whose client began a header block and never finished it, and
 * {@link StreamDeadlines} resets one stream whose client trickles its request body under the
 * minimum rate or takes none of its response for the send-stall timeout. The timers and their
 * rules are the driver's own (`deadlines.ts`); this module says what each deadline does to an h2
 * stream or session. A stream that is merely quiet (a long poll, an event stream) is never timed:
 * the body deadlines run only while the app reads a body, the send one only while output waits.
 */
import http2 from 'node:http2';
import { Deadlines, type DeadlineOwner, type DeadlineTimes } from './deadlines.ts';
import { ProtocolError } from './errors.ts';

/**
 * HEAD_CHECKS is how many times per head deadline a session is looked at for a header block in
 * progress: the session is ended between one and `1 + 1/HEAD_CHECKS` deadlines after its block
 * began, so the deadline is never cut short and overrun by a quarter at most.
 */
const HEAD_CHECKS = 4;

/**
 * HeadWatch ends a session whose client began a request's header block (HEADERS without
 * END_HEADERS) and has not finished it within the head deadline. node:http2 makes a stream known
 * only once its block is whole, and until then RFC 9113 §6.10 allows the client no frame but
 * CONTINUATION on the whole connection: the session is stuck, not one stream. nghttp2 counts the
 * block's stream as processed from its first frame (`state.lastProcStreamID`) while no `'stream'`
 * has come for it; a PING the client has not answered confirms it (a stream nghttp2 refused on
 * its own, also never seen here, leaves the client free to answer). The session is then told
 * GOAWAY naming the last stream served, whose responses may still finish, and closed.
 */
export class HeadWatch {
  private lastSeen = 0;
  private pending = 0;
  private pendingSince = 0;
  private pinged = false;
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    private readonly session: http2.ServerHttp2Session,
    private readonly headersTimeout: number,
    private readonly onTimeout: () => void,
  ) {
    this.timer = headersTimeout > 0 && Number.isFinite(headersTimeout)
      ? setInterval(onHeadCheck, Math.max(1, Math.ceil(headersTimeout / HEAD_CHECKS)), this).unref()
      : null;
  }

  /** onStream is a stream whose header block is whole. */
  readonly onStream = (stream: http2.ServerHttp2Stream): void => {
    const id = stream.id ?? 0;
    if (id > this.lastSeen) this.lastSeen = id;
  };

  /** check looks for a header block in progress, and ends the session once it has outlasted the deadline. */
  check(): void {
    const session = this.session;
    if (session.closed || session.destroyed) return this.stop();
    const processed = session.state.lastProcStreamID ?? 0;
    if (processed <= this.lastSeen) {
      this.pending = 0;
      return;
    }
    const now = Date.now();
    if (processed !== this.pending) {
      this.pending = processed;
      this.pendingSince = now;
      this.pinged = false;
      return;
    }
    if (!this.pinged) {
      this.pinged = true;
      // An answer means the client is free to send frames other than CONTINUATION: no block is open.
      session.ping((err) => {
        if (err === null && this.pending === processed) this.lastSeen = Math.max(this.lastSeen, processed);
      });
    }
    if (now - this.pendingSince < this.headersTimeout) return;
    this.stop();
    this.onTimeout();
    // RFC 9113 §6.8: the last stream id tells the client that the unfinished one was not processed.
    session.goaway(http2.constants.NGHTTP2_NO_ERROR, this.lastSeen);
    session.close();
  }

  /** stop stops watching: the session is gone. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
  }
}

function onHeadCheck(watch: HeadWatch): void {
  watch.check();
}

/** StreamOwner is the response on an h2 stream, told when one of its deadlines passed. */
export interface StreamOwner {
  /** The stream is to be reset with `code` for `reason`: the signal fires, the body is closed. */
  timedOut(reason: Error, code: number): void;
}

/**
 * StreamDeadlines holds the body and send deadlines of one h2 stream, the driver's
 * {@link Deadlines} watching the stream in place of a socket. Either passing resets the stream
 * with CANCEL (RFC 9113 §8.1: the server no longer needs it) rather than answering 408: the
 * client may already be reading a response, and the session's other streams go on.
 */
export class StreamDeadlines implements DeadlineOwner {
  private readonly deadlines: Deadlines;

  constructor(
    private readonly owner: StreamOwner,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly times: DeadlineTimes,
  ) {
    this.deadlines = new Deadlines(this, times, stream);
    stream.once('close', () => this.deadlines.stopAll());
  }

  /**
   * readingBody is the app's first read of a body still arriving: the body deadlines run from now
   * until its end. The stream is already flowing (the compatibility request listens to it), so
   * counting its data takes nothing from the app.
   */
  readingBody(): void {
    const stream = this.stream;
    if (stream.readableEnded || stream.destroyed) return;
    this.deadlines.startBody();
    stream.on('data', (chunk: Buffer) => this.deadlines.bodyProgress(chunk.length));
    stream.once('end', () => this.deadlines.stopBody());
  }

  /** sendWaits is output waiting on the client (a write over the high-water mark, or the last one): the send deadline runs. */
  sendWaits(): void {
    if (this.stream.writableLength > 0) this.deadlines.startSend();
  }

  onHeadTimeout(): void {}

  /**
   * onBodyTimeout: a stream paused because the app is not reading was not the client's to fill,
   * so its body deadlines start over; otherwise the stream is reset and the app's read fails with
   * `err`, a 408 as on HTTP/1.1.
   */
  onBodyTimeout(err: ProtocolError): void {
    if (this.stream.isPaused()) {
      this.deadlines.restartBodyWindow();
      this.deadlines.startBody();
      return;
    }
    this.owner.timedOut(err, http2.constants.NGHTTP2_CANCEL);
  }

  onSendTimeout(): void {
    const ms = this.times.sendTimeout;
    this.owner.timedOut(new ProtocolError('NSGI_SEND_TIMEOUT', 408, `the client read nothing of the response for ${ms} ms`), http2.constants.NGHTTP2_CANCEL);
  }
}
