/**
 * A stand-in cluster primary for `broker.test.ts`: a real child process whose IPC channel to the
 * test plays a worker's, running the relay exactly as `nsgi --workers N` does, over that channel.
 */
import { startBrokerRelay, type Peer } from '../../src/broker/cluster.ts';

const parent = process as unknown as Peer & NodeJS.Process;
const stop = startBrokerRelay({
  hub: {
    peers: () => [parent],
    onMessage(handler) {
      const listener = (message: unknown): void => handler(parent, message);
      process.on('message', listener);
      return () => process.off('message', listener);
    },
  },
});
process.on('disconnect', () => {
  stop();
  process.exit(0);
});
