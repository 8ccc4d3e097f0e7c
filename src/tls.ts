/**
 * TLS for the reference server: the certificate files read into the options node:tls takes, and
 * the logging of failed handshakes. node:tls hands the server sockets it already drives, so the
 * HTTP/1.1 side does not change; only `nsgi.url_scheme` becomes `https`.
 */
import { readFile } from 'node:fs/promises';
import type tls from 'node:tls';
import type { ErrorStream } from '../protocol/nsgi.ts';

/** TlsFiles names the PEM files of a TLS listener. */
export interface TlsFiles {
  /** The certificate chain, leaf first. */
  readonly certfile: string;
  /** The private key. */
  readonly keyfile: string;
  /** CA certificates to verify client certificates against; asking for one, never requiring it. */
  readonly caCerts?: string;
}

/** TlsOptions is what `serve()` needs for TLS: node:tls's secure context options, PEM loaded. */
export type TlsOptions = Pick<tls.SecureContextOptions, 'cert' | 'key' | 'ca'> & {
  /** Ask clients for a certificate (verified against `ca`); a client without one is still served. */
  readonly requestCert?: boolean;
};

/**
 * loadTlsFiles reads the PEM files into {@link TlsOptions}, rejecting with the file and the reason
 * when one cannot be read. Called again on SIGHUP, so renewed certificates take effect without a
 * restart.
 */
export async function loadTlsFiles(files: TlsFiles): Promise<TlsOptions> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new Error(`cannot read the ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const [cert, key, ca] = await Promise.all([
    read(files.certfile, 'certificate'),
    read(files.keyfile, 'key'),
    files.caCerts === undefined ? undefined : read(files.caCerts, 'CA certificates'),
  ]);
  return ca === undefined ? { cert, key } : { cert, key, ca, requestCert: true };
}

/**
 * HANDSHAKE_LOG_PEERS bounds how many peers' failed handshakes are remembered as logged: a scanner
 * or a client with a wrong CA fails again and again, and one line per peer says all there is.
 */
const HANDSHAKE_LOG_PEERS = 1024;

/**
 * handshakeLogger returns the handler for a TLS server's `tlsClientError`: it writes one line per
 * peer address (not per attempt) to `errors`, and the socket is already being destroyed by
 * node:tls, so nothing else is needed and nothing can crash.
 */
export function handshakeLogger(errors: ErrorStream): (err: Error, socket: tls.TLSSocket) => void {
  const logged = new Set<string>();
  return (err, socket) => {
    const peer = socket.remoteAddress ?? 'unknown';
    if (logged.has(peer)) return;
    if (logged.size >= HANDSHAKE_LOG_PEERS) logged.clear();
    logged.add(peer);
    // OpenSSL's message is a line of internals; its reason ("http request", "no shared cipher")
    // is what an operator can act on.
    const { code, reason } = err as { code?: unknown; reason?: unknown };
    const why = typeof reason === 'string' ? reason : (err.message.split('\n')[0] ?? '').trim();
    errors.write(`nsgi: TLS handshake with ${peer} failed: ${typeof code === 'string' ? `${code}, ` : ''}${why} (further failures from this address are not logged)`);
  };
}
