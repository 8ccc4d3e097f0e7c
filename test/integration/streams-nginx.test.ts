/**
 * The stream examples through a real nginx (the config of docs/DEPLOYMENT.md) in front of two nsgi
 * instances that share a real redis-server: nginx spreads the chat's sends and polls, the feed's
 * reconnections and the room's sockets over both instances, and clients still see one history.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { deploymentConfig, startNginx, type RunningNginx } from '../helpers/nginx.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { killAllClis, startCli } from '../helpers/spawn-cli.ts';
import { closeStreams, events, expectOrderedIds, joinRoom, pollAll, publish, roomSocket, send, sleep, until } from '../helpers/stream-clients.ts';
import { closeWebSockets } from '../helpers/ws-client.ts';

const APP = 'test/fixtures/streams.ts';

let nginx: RunningNginx | undefined;
let redis: RedisServer | undefined;
afterEach(async () => {
  closeStreams();
  closeWebSockets();
  await nginx?.stop();
  nginx = undefined;
  await killAllClis();
  await redis?.remove();
  redis = undefined;
});

describe('nginx in front of two nsgi instances sharing Redis', () => {
  it('chat, SSE replay and the WebSocket room see one history whichever instance nginx picks', { timeout: 90_000 }, async () => {
    redis = await startRedis();
    const instances = await Promise.all([0, 1].map(() => startCli([APP, '--port', '0', '--broker', redis!.url, '--forwarded-allow-ips', '127.0.0.1'])));
    nginx = await startNginx((p) => deploymentConfig(p, instances.map((i) => i.port)));
    const base = nginx.url;

    const pollers = Array.from({ length: 4 }, () => pollAll(base, 4));
    await sleep(500);
    const sent = [];
    for (const text of ['one', 'two', 'three', 'four']) sent.push(await send(base, text));
    expectOrderedIds(sent.map((s) => s.id));
    const results = await Promise.all(pollers);
    for (const { messages } of results) expect(messages.map((m) => m.id)).toEqual(sent.map((s) => s.id));
    const served = new Set([...sent.map((s) => s.servedBy), ...results.flatMap((r) => [...r.servedBy])]);
    expect(served.size).toBe(2);

    const ids = [await publish(base, 'a'), await publish(base, 'b'), await publish(base, 'c')];
    const replays = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const stream = await events(`${base}/feed/events`, ids[0]);
      replays.add(stream.headers['x-served-by'] as string);
      expect((await stream.until(2)).map((e) => [e.id, e.data])).toEqual([[ids[1], 'b'], [ids[2], 'c']]);
      stream.close();
    }
    expect(replays.size).toBe(2);

    const peers = await Promise.all(Array.from({ length: 4 }, () => roomSocket(base)));
    await joinRoom(peers);
    peers[0]!.ws.send('through nginx');
    await until(() => peers.every((p) => p.received.includes('through nginx')), 'the room message at every socket');
  });
});
