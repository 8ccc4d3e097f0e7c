/**
 * Listening on several addresses at once: one node:net (or node:tls) server per address, all
 * handing their connections to the same server, so that one process (each worker, with workers)
 * serves a TCP port on IPv4 and IPv6, a unix socket for the proxy and an inherited socket side by
 * side. Either every address listens or none stays listening, and a failure names its address.
 */
import net from 'node:net';

/** ListenTarget is one address to listen on: a host and port, a unix socket path, or an inherited descriptor. */
export type ListenTarget =
  | { readonly host: string; readonly port: number }
  | { readonly path: string }
  | { readonly fd: number };

/** BoundAddress is where one listener turned out to listen. */
export interface BoundAddress {
  /** The address; the socket's path for a unix socket. */
  readonly host: string;
  /** The port; 0 for a unix socket. */
  readonly port: number;
  /** `http://host:port` for clients; `http+unix:PATH` (the path URI-encoded) for a unix socket. */
  readonly url: string;
}

/** ListenFailure is an address that could not be listened on; `cause` says why, `target` which. */
export class ListenFailure extends Error {
  constructor(
    readonly target: ListenTarget,
    override readonly cause: unknown,
  ) {
    super(`cannot listen on ${describeTarget(target)}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ListenFailure';
  }

  /** code is the cause's system error code (`EADDRINUSE`), so that callers read it as the cause's own. */
  get code(): unknown {
    return (this.cause as { code?: unknown } | null)?.code;
  }
}

/** describeTarget names an address as `--bind` writes it: `127.0.0.1:8000`, `[::1]:8000`, `unix:PATH`, `fd://N`. */
export function describeTarget(target: ListenTarget): string {
  if ('path' in target) return `unix:${target.path}`;
  if ('fd' in target) return `fd://${target.fd}`;
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

/**
 * listenAll makes a server with `make` for each target and listens on it, in order. If one fails,
 * those already listening are closed and a {@link ListenFailure} naming the address is thrown.
 */
export async function listenAll(make: () => net.Server, targets: readonly ListenTarget[]): Promise<net.Server[]> {
  if (targets.length === 0) throw new TypeError('listen needs at least one address');
  const listening: net.Server[] = [];
  for (const target of targets) {
    const server = make();
    try {
      await listenOn(server, target);
    } catch (err) {
      await Promise.all(listening.map((s) => new Promise((resolve) => s.close(resolve))));
      throw new ListenFailure(target, err);
    }
    listening.push(server);
  }
  return listening;
}

function listenOn(server: net.Server, target: ListenTarget): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // net.Server.listen takes `{ fd }` as a handle; its ListenOptions type does not name it.
    server.listen(target as net.ListenOptions, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** boundAddress is where `server` listens, with its URL under `scheme`. */
export function boundAddress(server: net.Server, scheme: string): BoundAddress {
  const address = server.address();
  // A unix socket has no host or port: the path stands for the host, and the URL names it the
  // way clients that speak HTTP over unix sockets write it.
  if (typeof address === 'string' || address === null) {
    const path = address ?? '';
    return { host: path, port: 0, url: `${scheme}+unix:${encodeURIComponent(path)}` };
  }
  const host = address.address;
  return { host, port: address.port, url: `${scheme}://${address.family === 'IPv6' ? `[${host}]` : host}:${address.port}` };
}
