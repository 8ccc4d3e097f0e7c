/**
 * The parsers of option values: ports, seconds, byte counts, whole numbers, the mount path. Each
 * takes the label the value was given under (`--port` or `NSGI_PORT (environment)`) so that its
 * {@link CliError} names the option the user wrote.
 */

import { CliError } from './errors.ts';

/** parsePort accepts a decimal integer from 0 to 65535. */
export function parsePort(label: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${label} must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  const port = Number(text);
  if (port > 65535) throw new CliError(`${label} must be from 0 to 65535, got ${text}`);
  return port;
}

/** parseSeconds accepts a non-negative decimal number of seconds and returns milliseconds. */
export function parseSeconds(label: string, text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) {
    throw new CliError(`${label} must be a number of seconds such as 5 or 0.5, got ${JSON.stringify(text)}`);
  }
  const ms = Math.round(Number(text) * 1000);
  if (!Number.isSafeInteger(ms)) throw new CliError(`${label} is too large: ${text}`);
  return ms;
}

/**
 * SIZE_UNITS are the suffixes a byte count may carry, in powers of 1024 as nginx's
 * `client_max_body_size` counts them: `10M` is 10 MiB, `1G` is 1 GiB.
 */
const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** parseByteCount accepts a whole number of bytes, optionally with a K, M or G suffix. */
export function parseByteCount(label: string, text: string): number {
  const m = /^(\d+)([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (m === null) {
    throw new CliError(`${label} must be a whole number of bytes, optionally with K, M or G (such as 10M), got ${JSON.stringify(text)}`);
  }
  const bytes = Number(m[1]) * (SIZE_UNITS[m[2]!.toLowerCase()] as number);
  if (!Number.isSafeInteger(bytes)) throw new CliError(`${label} is too large: ${text}`);
  return bytes;
}

/** parseCount accepts a whole number of at least 1. */
export function parseCount(label: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new CliError(`${label} must be a whole number of at least 1, got ${JSON.stringify(text)}`);
  return parseWhole(label, text);
}

/** parseWhole accepts a whole number, zero included. */
export function parseWhole(label: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${label} must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new CliError(`${label} is too large: ${text}`);
  return n;
}

/**
 * parseRootPath checks a mount path and drops its trailing slashes, because SCRIPT_NAME never
 * ends with `/` (SPEC §2.2): `/api/` becomes `/api`, `/` becomes `''`.
 */
export function parseRootPath(label: string, text: string): string {
  if (text === '') return '';
  if (!text.startsWith('/')) throw new CliError(`${label} must start with /, got ${JSON.stringify(text)}`);
  if (/[?#\s]/.test(text)) throw new CliError(`${label} must be a plain path, got ${JSON.stringify(text)}`);
  return text.replace(/\/+$/, '');
}

/** parseBroker accepts `memory`, `cluster`, or a `redis://` / `rediss://` URL. */
export function parseBroker(where: string, text: string): string {
  if (text === 'memory' || text === 'cluster' || /^rediss?:\/\/[^/\s]+(\/\d+)?\/?$/i.test(text)) return text;
  throw new CliError(`${where} must be memory, cluster or redis://host:port/db, got ${JSON.stringify(text)}`);
}
