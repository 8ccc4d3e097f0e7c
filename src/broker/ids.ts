/**
 * Broker ids: `TTTTTTTTTTTTT-SSSSSSSSSSSSSSSS`, a time in milliseconds and a sequence number, both
 * zero-padded to a fixed width so that ids sort as plain strings in publishing order. Redis Streams
 * ids (`ms-seq`) map onto the same shape one to one; the memory and cluster backends put the time
 * their log was created first, so the ids of a later run sort after those of an earlier one.
 */
import { BEGINNING } from './types.ts';

/** ID_TIME_DIGITS is the width of the time part: 13 digits hold every millisecond until the year 2286. */
export const ID_TIME_DIGITS = 13;

/** ID_SEQUENCE_DIGITS is the width of the sequence part: 16 digits, more publishes than any log sees. */
export const ID_SEQUENCE_DIGITS = 16;

const ID_PATTERN = /^(\d{13})-(\d{16})$/;

/**
 * LATEST is the greatest id there can be. Reading after it answers no entries and the topic's
 * `lastId` (an id beyond the latest counts as the latest), which is how a new reader learns where
 * "from now on" starts without copying the history.
 */
export const LATEST = `${'9'.repeat(ID_TIME_DIGITS)}-${'9'.repeat(ID_SEQUENCE_DIGITS)}`;

/** makeId renders a time and a sequence number as an id. */
export function makeId(time: number | string, sequence: number | string): string {
  return `${String(time).padStart(ID_TIME_DIGITS, '0')}-${String(sequence).padStart(ID_SEQUENCE_DIGITS, '0')}`;
}

/** parseId splits an id into its time and sequence digits, or answers undefined for a string that is not one. */
export function parseId(id: string): { time: string; sequence: string } | undefined {
  const match = ID_PATTERN.exec(id);
  return match === null ? undefined : { time: match[1] as string, sequence: match[2] as string };
}

/**
 * normaliseCursor turns what a client sent as its position into a cursor: absent, empty or
 * {@link BEGINNING} is the beginning; a well-formed id is itself; anything else is refused with a
 * TypeError naming it, since guessing where a garbled cursor points would replay or skip entries.
 */
export function normaliseCursor(after: string | undefined): string {
  if (after === undefined || after === '' || after === BEGINNING) return BEGINNING;
  if (typeof after !== 'string' || parseId(after) === undefined) {
    throw new TypeError(`a broker cursor must be an id this broker made (digits-digits) or "${BEGINNING}", got ${JSON.stringify(after)}`);
  }
  return after;
}

/** isCursor tells whether `text` would be accepted by {@link normaliseCursor}, for apps that answer 400 to a bad one. */
export function isCursor(text: string | undefined): boolean {
  return text === undefined || text === '' || text === BEGINNING || parseId(text) !== undefined;
}

/** fromRedisId maps a Redis Streams id (`1700000000000-3`) to a broker id. */
export function fromRedisId(id: string): string {
  const dash = id.indexOf('-');
  return makeId(id.slice(0, dash), id.slice(dash + 1));
}

/** toRedisId maps a broker cursor back to a Redis Streams id, {@link BEGINNING} to `0-0`. */
export function toRedisId(cursor: string): string {
  const parts = parseId(cursor);
  if (parts === undefined) return '0-0';
  return `${BigInt(parts.time)}-${BigInt(parts.sequence)}`;
}
