/**
 * The states of the response under way on an HTTP/1.1 server connection, and the moves between
 * them (`connection.ts` makes the moves):
 *
 *     idle --head--> sending --data--> sending --end--> done --next--> idle
 *       \--error--> done
 *     (any) --cut--> closed
 *
 * A move the diagram does not show is a bug in the caller, never the peer's doing.
 */

/** ResponseState is where the current response stands. */
export type ResponseState = 'idle' | 'sending' | 'done' | 'closed';

/** ResponseMove is a step of a response: its head, a chunk, its end, an error response, a cut, the next exchange. */
export type ResponseMove = 'head' | 'data' | 'end' | 'error' | 'cut' | 'next';

/**
 * nextState is the state `m` leads to from `state`, undefined for a move the diagram does not
 * show. It is tests rather than a table keyed by strings: a connection makes four moves a
 * request, and such a table costs a generic keyed lookup on each.
 */
export function nextState(state: ResponseState, m: ResponseMove): ResponseState | undefined {
  if (m === 'cut') return 'closed';
  if (m === 'data') return state === 'sending' ? 'sending' : undefined;
  if (m === 'end') return state === 'sending' ? 'done' : undefined;
  if (m === 'next') return state === 'done' ? 'idle' : undefined;
  if (state !== 'idle') return undefined;
  return m === 'head' ? 'sending' : 'done';
}
