/**
 * `--bind` (`-b`), as gunicorn writes its addresses: `HOST:PORT`, `[IPv6]:PORT`, `HOST` alone
 * (the default port), `unix:PATH` and `fd://N`, given as often as there are addresses; and
 * `NSGI_BIND`, the same addresses separated by commas or spaces. How they combine with `--host`,
 * `--port`, `--uds` and `--fd` is decided here too.
 */

import net from 'node:net';
import type { ListenTarget } from '../listen-all.ts';
import { CliError } from './errors.ts';
import { parsePort, parseWhole } from './values.ts';

/** ADDRESS_OPTIONS are the options that name the one address `--bind` replaces. */
export const ADDRESS_OPTIONS = ['host', 'port', 'uds', 'fd'] as const;

/** parseBind reads one `--bind` address; `defaultPort` serves a host given without one. */
export function parseBind(label: string, text: string, defaultPort: number): ListenTarget {
  const what = `${label} ${JSON.stringify(text)}`;
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') throw new CliError(`${what} needs a socket path after unix:`);
    return { path };
  }
  if (text.startsWith('fd://')) return { fd: parseWhole(`${what}: the descriptor`, text.slice('fd://'.length)) };
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) throw new CliError(`${what} opens [ for an IPv6 address without closing it`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new CliError(`${what}: expected :PORT after ]`);
    portText = rest === '' ? undefined : rest.slice(1);
    if (!net.isIPv6(host)) throw new CliError(`${what}: ${JSON.stringify(host)} is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    // An IPv6 address has several colons: without brackets it cannot carry a port.
    if (colon !== -1 && text.indexOf(':') !== colon) {
      throw new CliError(`${what}: write an IPv6 address in brackets, as [::1]:8000`);
    }
    host = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
  }
  if (host === '') throw new CliError(`${what} needs a host (such as 127.0.0.1:8000, [::1]:8000, unix:PATH or fd://3)`);
  return { host, port: portText === undefined ? defaultPort : parsePort(`${what}: the port`, portText) };
}

/** splitBindList reads `NSGI_BIND`: addresses separated by commas or white space. */
export function splitBindList(text: string): string[] {
  return text.split(/[\s,]+/).filter((a) => a !== '');
}

/**
 * bindTargets decides where to listen from the `--bind` addresses given on the command line and in
 * the environment. `--bind` on the command line with `--host`, `--port`, `--uds` or `--fd` on it too
 * is refused: gunicorn has only `--bind`, and silently dropping one of the two would surprise
 * either kind of user. Otherwise the command line wins over the environment, as for every option:
 * `NSGI_BIND` gives way to an address option on the command line, and `--bind` to `HOST`, `PORT`
 * and other address variables. Returns undefined when there is no `--bind`.
 */
export function bindTargets(
  fromCommandLine: readonly string[],
  fromEnvironment: { label: string; text: string } | undefined,
  addressOnCommandLine: readonly string[],
  defaultPort: number,
): ListenTarget[] | undefined {
  if (fromCommandLine.length > 0) {
    if (addressOnCommandLine.length > 0) {
      throw new CliError(`--bind and --${addressOnCommandLine[0]} both say where to listen; give every address as a --bind`);
    }
    return fromCommandLine.map((text) => parseBind('--bind', text, defaultPort));
  }
  if (fromEnvironment === undefined || addressOnCommandLine.length > 0) return undefined;
  const list = splitBindList(fromEnvironment.text);
  if (list.length === 0) return undefined;
  return list.map((text) => parseBind(fromEnvironment.label, text, defaultPort));
}
