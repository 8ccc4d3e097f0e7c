/**
 * How the Redis broker stores an entry in a stream and reads it back: the publish script that
 * appends `d` (the data) and `p` (the id of the entry before it), and the parsing of XRANGE,
 * XREAD and XINFO replies into broker entries and ids. The broker's connections and commands
 * live in `redis.ts`.
 */
import { fromRedisId } from './ids.ts';
import { BEGINNING, type BrokerEntry } from './types.ts';

/**
 * PUBLISH_SCRIPT appends one entry (KEYS[1]; ARGV: data, capacity, max age in ms or 0) with the
 * id of the entry before it, trims, and answers the new id. The predecessor is the newest kept
 * entry, or the stream's last generated id when age trimming emptied it. Age is measured on
 * Redis's clock, the one its ids come from.
 */
export const PUBLISH_SCRIPT = `
local key = KEYS[1]
local prev = '0-0'
local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if #newest > 0 then
  prev = newest[1][1]
elseif redis.call('EXISTS', key) == 1 then
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then prev = info[i + 1] end
  end
end
local id = redis.call('XADD', key, 'MAXLEN', '~', ARGV[2], '*', 'd', ARGV[1], 'p', prev)
local age = tonumber(ARGV[3])
if age > 0 then
  local now = redis.call('TIME')
  local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age
  redis.call('XTRIM', key, 'MINID', '~', oldest)
end
return id
`;

/** fromStreamId maps a Redis id to a broker id, the empty stream's `0-0` to {@link BEGINNING}. */
export function fromStreamId(id: string): string {
  return id === '0-0' ? BEGINNING : fromRedisId(id);
}

/** predecessor is the broker id of the entry published before `raw`, from its `p` field. */
export function predecessor(raw: RawEntry): string {
  return fromStreamId(fieldValue(raw[1], 'p') || '0-0');
}

/** RawEntry is one stream entry as Redis replies it: the id and the flat field list. */
export type RawEntry = [string, string[]];

/** toEntries turns an XRANGE or XREAD reply into broker entries (a missing reply into none). */
export function toEntries(raw: RawEntry[] | null): BrokerEntry[] {
  if (raw === null) return [];
  return raw.map(([id, values]) => ({ id: fromRedisId(id), data: fieldValue(values, 'd') }));
}

function fieldValue(values: string[], name: string): string {
  for (let i = 0; i + 1 < values.length; i += 2) if (values[i] === name) return values[i + 1] as string;
  return '';
}

/** fields turns a flat XINFO reply (name, value, name, value...) into a map. */
export function fields(flat: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
}
