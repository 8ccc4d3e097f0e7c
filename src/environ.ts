/**
 * Building the environ (SPEC §2) from a request's description and what the server knows of the
 * connection.
 */
import type { Environ, ErrorStream, Input } from '../protocol/nsgi.ts';

/**
 * RequestDescription is what the environ is made from: the request line and header fields as
 * received. The reference parser's RequestHead is one; the adapters describe their requests so.
 */
export interface RequestDescription {
  /** The method, case preserved. */
  readonly method: string;
  /** The request-target exactly as received. */
  readonly target: string;
  /** `"HTTP/1.1"`, `"HTTP/1.0"`, or `"HTTP/2"` for a request served over h2. */
  readonly version: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';
  /** The header fields in order, names in their original case. */
  readonly headers: Array<[string, string]>;
  /** The Host field value, or undefined when there is none. */
  readonly host: string | undefined;
}

/** ConnectionInfo is what the environ needs to know about the socket and the server. */
export interface ConnectionInfo {
  remoteAddress: string;
  remotePort: string;
  localAddress: string;
  localPort: string;
  urlScheme: string;
  scriptName: string;
  multiprocess: boolean;
  errors: ErrorStream;
}

const VERSION = Object.freeze([1, 0] as const);

/** SignalSource makes a request's AbortSignal when it is first asked for. */
export interface SignalSource {
  readonly signal: AbortSignal;
}

/**
 * LazySignal is the source of a request's `nsgi.signal` (SPEC §2.4): the AbortController behind it
 * is made when the app first asks for the signal, already aborted if the reason came first.
 */
export class LazySignal implements SignalSource {
  private controller: AbortController | null = null;
  private abortReason: Error | null = null;

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.abortReason !== null) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** aborted is true once the signal has fired (or will have, when it is made). */
  get aborted(): boolean {
    return this.abortReason !== null;
  }

  /** abortSignal fires `nsgi.signal` once, with `reason`. */
  abortSignal(reason: Error): void {
    if (this.abortReason !== null) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }
}

// `nsgi.signal` is an accessor that asks the SignalSource, so the AbortController behind it is only
// made for apps that use it: making one costs more than everything else a small request needs.
// The accessor is one shared descriptor, defined after the other keys (an accessor in the object
// literal would make every later key slow); it is own and enumerable, so `{...environ}` copies the
// signal, and assigning the key replaces the accessor with a plain value.
const SIGNAL_SOURCE = Symbol('nsgi.signalSource');
const SIGNAL_PROPERTY: PropertyDescriptor = {
  get(this: { [SIGNAL_SOURCE]: SignalSource }): AbortSignal {
    return this[SIGNAL_SOURCE].signal;
  },
  set(value: unknown): void {
    Object.defineProperty(this, 'nsgi.signal', { value, writable: true, enumerable: true, configurable: true });
  },
  enumerable: true,
  configurable: true,
};

/** Most header names whose `HTTP_*` key an EnvironBuilder remembers. */
const MAX_HEADER_KEYS = 2048;

/**
 * EnvironBuilder makes the environs of one server (or adapter). It remembers what repeats from
 * request to request, so two servers in one process share nothing: the `HTTP_*` key of each
 * header name (computing it costs an upper-casing and a replace per header per request), and the
 * last Host split into SERVER_NAME and SERVER_PORT (nearly every request repeats it).
 */
export class EnvironBuilder {
  private readonly headerKeys = new Map<string, string | null>();
  private lastHost = '';
  private lastScheme = '';
  private lastServerName = '';
  private lastServerPort = '';

  /**
   * build makes the environ for one request. `signal` is the request's AbortSignal, or a
   * SignalSource that makes it on first use. Per SPEC §2.2, PATH_INFO is the target's path,
   * percent-decoded and read as UTF-8, with the mount path moved to SCRIPT_NAME.
   */
  build(request: RequestDescription, conn: ConnectionInfo, input: Input, signal: AbortSignal | SignalSource): Environ {
    const lazySignal = !(signal instanceof AbortSignal);
    const target = request.target;
    let path: string;
    let query = '';
    let host = request.host;
    let scheme = conn.urlScheme;
    const q = target.indexOf('?');
    if (target.charCodeAt(0) === 0x2f) {
      path = q === -1 ? target : target.slice(0, q);
      if (q !== -1) query = target.slice(q + 1);
    } else if (target === '*' || request.method === 'CONNECT') {
      path = target === '*' ? '*' : '';
    } else {
      // absolute-form (RFC 9112 §3.2.2): the authority in the target replaces Host, and the
      // target's scheme gives the default port. The parser has checked the authority as a Host.
      const end = q === -1 ? target.length : q;
      const authorityStart = target.indexOf('//') + 2;
      let pathStart = target.indexOf('/', authorityStart);
      if (pathStart === -1 || pathStart > end) pathStart = end;
      host = target.slice(authorityStart, pathStart);
      scheme = authorityStart === 8 ? 'https' : 'http';
      path = pathStart === end ? '/' : target.slice(pathStart, end);
      if (q !== -1) query = target.slice(q + 1);
    }
    if (path.includes('%')) path = decodePath(path);

    let scriptName = conn.scriptName;
    if (scriptName !== '') {
      if (path === scriptName || (path.startsWith(scriptName) && path.charCodeAt(scriptName.length) === 0x2f)) {
        path = path.slice(scriptName.length);
      } else {
        scriptName = '';
      }
    }

    let serverName = conn.localAddress;
    let serverPort = conn.localPort;
    if (host !== undefined && host !== '') {
      if (host !== this.lastHost || scheme !== this.lastScheme) this.splitHost(host, scheme);
      // The same text: keeping the latest string makes the next compare with it, on the same
      // connection, a pointer compare (the parser gives a connection's repeated Host as one string).
      else this.lastHost = host;
      // A Host of only a port (`:80`) names no host: the listening address and port stand (ENV-7).
      if (this.lastServerName !== '') {
        serverName = this.lastServerName;
        serverPort = this.lastServerPort;
      }
    }

    const environ = {
      REQUEST_METHOD: request.method,
      SCRIPT_NAME: scriptName,
      PATH_INFO: path,
      QUERY_STRING: query,
      REQUEST_URI: target,
      SERVER_NAME: serverName,
      SERVER_PORT: serverPort,
      SERVER_PROTOCOL: request.version,
      REMOTE_ADDR: conn.remoteAddress,
      REMOTE_PORT: conn.remotePort,
      'nsgi.version': VERSION,
      'nsgi.url_scheme': conn.urlScheme,
      'nsgi.input': input,
      'nsgi.errors': conn.errors,
      'nsgi.headers': request.headers,
      'nsgi.multithread': false,
      'nsgi.multiprocess': conn.multiprocess,
      'nsgi.run_once': false,
    } as unknown as Environ;
    // Set after the literal: a computed key in it would make V8 build the literal the slow way.
    (environ as unknown as Record<symbol, unknown>)[SIGNAL_SOURCE] = signal;
    const headers = request.headers;
    for (let i = 0; i < headers.length; i++) {
      const field = headers[i]!;
      const key = this.headerKey(field[0]);
      if (key === null) continue;
      const prev = environ[key] as string | undefined;
      if (prev === undefined) environ[key] = field[1];
      else environ[key] = prev + (key === 'HTTP_COOKIE' ? '; ' : ', ') + field[1];
    }
    if (lazySignal) Object.defineProperty(environ, 'nsgi.signal', SIGNAL_PROPERTY);
    else environ['nsgi.signal'] = signal;
    return environ;
  }

  /** headerKey is the `HTTP_*` key of a header name as received, null for a name kept out of the environ. */
  private headerKey(name: string): string | null {
    let key = this.headerKeys.get(name);
    if (key === undefined) {
      const upper = name.toUpperCase();
      // A name with "_" would collide with its "-" twin (X_Forwarded_For vs X-Forwarded-For), a
      // way to spoof a header a proxy vouched for; such names only appear in nsgi.headers.
      key = name.includes('_')
        ? null
        : upper === 'CONTENT-TYPE'
          ? 'CONTENT_TYPE'
          : upper === 'CONTENT-LENGTH'
            ? 'CONTENT_LENGTH'
            : 'HTTP_' + upper.replace(/-/g, '_');
      if (this.headerKeys.size < MAX_HEADER_KEYS) this.headerKeys.set(name, key);
    }
    return key;
  }

  private splitHost(host: string, scheme: string): void {
    const colon = host.lastIndexOf(':');
    if (colon !== -1 && colon > host.lastIndexOf(']')) {
      this.lastServerName = host.slice(0, colon);
      this.lastServerPort = host.slice(colon + 1) || defaultPort(scheme);
    } else {
      this.lastServerName = host;
      this.lastServerPort = defaultPort(scheme);
    }
    this.lastHost = host;
    this.lastScheme = scheme;
  }
}

function defaultPort(scheme: string): string {
  return scheme === 'https' ? '443' : '80';
}

const utf8 = new TextDecoder('utf-8');

/**
 * decodePath percent-decodes a path and reads the bytes as UTF-8 (invalid sequences become
 * U+FFFD). A `%` not followed by two hex digits stays as it is.
 */
export function decodePath(path: string): string {
  const bytes = Buffer.allocUnsafe(path.length);
  let n = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 && i + 2 < path.length) {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        bytes[n++] = hi * 16 + lo;
        i += 2;
        continue;
      }
    }
    bytes[n++] = c;
  }
  return utf8.decode(bytes.subarray(0, n));
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}
