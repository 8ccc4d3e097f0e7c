/**
 * The seam between the contract's response rules and the place a response goes. A
 * {@link ResponseCycle} (`cycle.ts`) owns the rules; a {@link ResponseSink} only moves bytes: the
 * reference server's sink frames them with its HTTP/1.1 connection (`server-sink.ts`), the
 * adapters' sinks hand them to a node:http response or a fetch Response (`src/adapters/`).
 */
import type { Chunk, HeaderList, Upgraded } from '../protocol/nsgi.ts';
import type { BodyRule, HeadCache, Status } from './http1/writer.ts';

/** CheckedHeaders is an app's header list once a sink has checked it (SPEC §4.2): what the cycle needs of it. */
export interface CheckedHeaders {
  /** The app's Content-Length, or -1 when it gave none. */
  readonly contentLength: number;
  /** The app asked for `Connection: close` (SR-10). */
  readonly close: boolean;
  /** The app's Upgrade value, '' for none: sent only in a 426 (SR-9). */
  readonly upgrade: string;
}

/**
 * ResponseSink is where a cycle's response goes. The cycle calls it only while the response is
 * under way, in this order: `checkHeaders` for every startResponse, `head` once, `data` for each
 * non-empty chunk of a response that has a body, then `end`, `failBeforeHead` or `cut`, and
 * `done` last.
 */
export interface ResponseSink<H extends CheckedHeaders = CheckedHeaders> {
  /** heads checks the app's status strings (SR-1, SR-7) for the server or adapter the sink belongs to. */
  readonly heads: HeadCache;
  /** gone is true once the client has gone, so that a late call is not blamed on the app. */
  readonly gone: boolean;
  /** checkHeaders checks a startResponse header list, throwing a TypeError naming the problem (SR-7). */
  checkHeaders(headers: unknown): H;
  /**
   * head sends the status and headers under `rule`; `knownLength` is the whole body's length when
   * the cycle holds all of it, else -1. With `flush` (the app called `flushHead()`) the head must
   * leave at once; otherwise it may wait for the first `data` or `end` so that both leave together.
   */
  head(status: Status, headers: H, rule: BodyRule, knownLength: number, flush: boolean): void;
  /** data sends one non-empty chunk and returns false when the receiver is full and the cycle must wait. */
  data(chunk: Chunk): boolean;
  /** drain resolves once the receiver can take more; it rejects with ClientGoneError once the client has gone. */
  drain(): Promise<void>;
  /** end completes the body; with `close`, the connection (if any) closes after it (SR-10, SR-17). */
  end(close: boolean): void;
  /** failBeforeHead answers with an error response; no head has been sent (ERR-1). */
  failBeforeHead(err: unknown, isHead: boolean): void;
  /** cut stops a response whose head has been sent, so that the client sees it truncated (ERR-4). */
  cut(err: unknown): void;
  /** done is called once, when the response is complete, cut, or abandoned. */
  done(): void;
  /** earlyHints sends a `103 Early Hints` response, where the sink offers `nsgi.early_hints` (SPEC §7.1). */
  earlyHints?(headers: HeaderList): void;
  /**
   * trailers records trailers, where the sink offers `nsgi.set_trailers` (SPEC §7.2), and says
   * whether they will be sent. `headSent` tells whether the framing is already chosen; if not,
   * `canStream` tells whether the body may still be chunked (it has a body and no Content-Length).
   */
  trailers?(trailers: HeaderList, headSent: boolean, canStream: boolean): boolean;
  /** upgrade hands the connection to the app (SPEC §6.2), writing a 101 first when `headers` are given. */
  upgrade?(headers: HeaderList | undefined): Upgraded;
  /**
   * idle tells, where the sink can know it, whether no byte handed to `data` is still waiting to
   * be written: the memory of every chunk sent so far may then be reused.
   */
  idle?(): boolean;
}
