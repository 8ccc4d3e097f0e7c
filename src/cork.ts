/**
 * Corking an upgraded socket per read. A WebSocket peer that sends several frames in one TCP
 * segment gets one reply per frame, and `ws` writes each reply as it handles each frame, all inside
 * the socket's one `data` event. Left alone, every reply is its own `write` system call; corked
 * until that event's callbacks have run, they leave in one `writev`. The replies go out in the same
 * tick they were written in, so nothing waits longer than before.
 */
import type { Duplex } from 'node:stream';

/**
 * corkEachRead corks `socket` when a read arrives and uncorks it on the next tick, once the `data`
 * listeners (and the synchronous writes they made) have run. It must be called before anything is
 * written for a read, so its listener goes in front of the others.
 */
export function corkEachRead(socket: Duplex): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    // end() and destroy() flush or drop what is corked themselves; uncork() then does nothing.
    socket.uncork();
  };
  socket.prependListener('data', () => {
    if (corked) return;
    corked = true;
    socket.cork();
    process.nextTick(uncork);
  });
}
