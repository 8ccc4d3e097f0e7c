/**
 * Believing a proxy: `Forwarded` and `X-Forwarded-For / -Proto / -Host` change REMOTE_ADDR,
 * `nsgi.url_scheme` and the host only when the peer is a configured proxy. Over the wire the
 * peer is always 127.0.0.1, so "trusted" and "untrusted" are the server's option; the unit tests
 * of `trustedProxies` and `applyForwarded` cover addresses the wire cannot produce.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App, Environ } from '../../protocol/nsgi.ts';
import type { ServeOptions } from '../../src/index.ts';
import { applyForwarded, trustedProxies } from '../../src/forwarded.ts';
import { cleanup, finalResponses, rawRequest, startServer, untilResponses } from '../helpers/server.ts';

afterEach(cleanup);

const KEYS = ['REMOTE_ADDR', 'REMOTE_PORT', 'nsgi.url_scheme', 'HTTP_HOST', 'SERVER_NAME', 'SERVER_PORT'] as const;
type Seen = Record<(typeof KEYS)[number], string>;

/** echoApp answers with the environ keys a proxy may change, as JSON. */
const echoApp: App = (environ, startResponse) => {
  const out: Record<string, unknown> = {};
  for (const key of KEYS) out[key] = environ[key];
  startResponse('200 OK', [['Content-Type', 'application/json']]);
  return [JSON.stringify(out)];
};

/** through serves echoApp with `options` and sends one request with `fields` added to its head. */
async function through(options: ServeOptions, fields: string[], host = 'app.internal:8000'): Promise<Seen & { port: number }> {
  const { port } = await startServer(echoApp, options);
  const head = `GET / HTTP/1.1\r\nHost: ${host}\r\n${fields.map((f) => `${f}\r\n`).join('')}Connection: close\r\n\r\n`;
  const res = await rawRequest(port, Buffer.from(head, 'latin1'), { until: untilResponses(1) });
  const [r] = finalResponses(res.data);
  expect(r?.status).toBe(200);
  return { ...(JSON.parse(r!.body.toString()) as Seen), port };
}

const ALL_FIELDS = [
  'X-Forwarded-For: 203.0.113.9',
  'X-Forwarded-Proto: https',
  'X-Forwarded-Host: www.example.com',
];

describe('without forwardedAllowIps nobody is believed', () => {
  it('SRV-26: ignores X-Forwarded-For / -Proto / -Host', async () => {
    const seen = await through({}, ALL_FIELDS);
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
    expect(seen['nsgi.url_scheme']).toBe('http');
    expect(seen.HTTP_HOST).toBe('app.internal:8000');
    expect(seen.SERVER_NAME).toBe('app.internal');
    expect(seen.SERVER_PORT).toBe('8000');
  });

  it('SRV-26: ignores Forwarded', async () => {
    const seen = await through({}, ['Forwarded: for=203.0.113.9;proto=https;host=www.example.com']);
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
    expect(seen['nsgi.url_scheme']).toBe('http');
    expect(seen.HTTP_HOST).toBe('app.internal:8000');
  });

  it('SRV-26: ignores them when the trusted proxies are a subnet the peer is not in (10.0.0.0/8)', async () => {
    const seen = await through({ forwardedAllowIps: ['10.0.0.0/8'] }, [...ALL_FIELDS, 'Forwarded: for=198.51.100.1']);
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
    expect(seen['nsgi.url_scheme']).toBe('http');
    expect(seen.HTTP_HOST).toBe('app.internal:8000');
  });
});

describe('from a trusted proxy (127.0.0.1)', () => {
  const trusted: ServeOptions = { forwardedAllowIps: ['127.0.0.1'] };

  it('SRV-26: X-Forwarded-For / -Proto / -Host set REMOTE_ADDR, the scheme, HTTP_HOST, SERVER_NAME and SERVER_PORT', async () => {
    const seen = await through(trusted, ALL_FIELDS);
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
    expect(seen.REMOTE_PORT).toBe('0');
    expect(seen['nsgi.url_scheme']).toBe('https');
    expect(seen.HTTP_HOST).toBe('www.example.com');
    expect(seen.SERVER_NAME).toBe('www.example.com');
    expect(seen.SERVER_PORT).toBe('443');
  });

  it('X-Forwarded-Host with a port sets SERVER_PORT to it', async () => {
    const seen = await through(trusted, ['X-Forwarded-Host: www.example.com:8443', 'X-Forwarded-Proto: https']);
    expect(seen.SERVER_NAME).toBe('www.example.com');
    expect(seen.SERVER_PORT).toBe('8443');
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
  });

  it('multiple hops: the rightmost address that is not a trusted proxy is the client', async () => {
    const seen = await through(trusted, ['X-Forwarded-For: 198.51.100.7, 203.0.113.9, 127.0.0.1']);
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
  });

  it('multiple hops: a spoofed leftmost entry does not win over the proxy\'s own report', async () => {
    // The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the address it saw.
    const seen = await through(trusted, ['X-Forwarded-For: 1.2.3.4, 203.0.113.9']);
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
  });

  it('several X-Forwarded-For fields are read as one list', async () => {
    const seen = await through(trusted, ['X-Forwarded-For: 1.2.3.4', 'X-Forwarded-For: 203.0.113.9']);
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
  });

  it('Forwarded (RFC 7239) with quoting and an IPv6 address with a port', async () => {
    const seen = await through(trusted, ['Forwarded: for="[2001:db8::1]:4711";proto="https";host="www.example.com"']);
    expect(seen.REMOTE_ADDR).toBe('2001:db8::1');
    expect(seen.REMOTE_PORT).toBe('4711');
    expect(seen['nsgi.url_scheme']).toBe('https');
    expect(seen.HTTP_HOST).toBe('www.example.com');
    expect(seen.SERVER_PORT).toBe('443');
  });

  it('Forwarded with several hops, parameters in any case, quoted commas', async () => {
    const seen = await through(trusted, ['Forwarded: for=198.51.100.7;host="a,b", For=203.0.113.9;PROTO=https, for=127.0.0.1']);
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
    expect(seen['nsgi.url_scheme']).toBe('https');
  });

  it('with forwardedHeaders "x-forwarded", X-Forwarded-* win over a Forwarded the client sent through a proxy that sets only X-Forwarded-*', async () => {
    const seen = await through({ ...trusted, forwardedHeaders: 'x-forwarded' }, [
      'X-Forwarded-For: 198.51.100.7',
      'Forwarded: for=203.0.113.9;proto=https;host=admin.internal',
    ]);
    expect(seen.REMOTE_ADDR).toBe('198.51.100.7');
    expect(seen['nsgi.url_scheme']).toBe('http');
    expect(seen.SERVER_NAME).not.toBe('admin.internal');
  });

  it('for=unknown leaves the peer address', async () => {
    const seen = await through(trusted, ['Forwarded: for=unknown;proto=https']);
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
    expect(seen['nsgi.url_scheme']).toBe('https');
  });

  it('an obfuscated identifier (for=_hidden) leaves the peer address', async () => {
    const seen = await through(trusted, ['Forwarded: for=_hidden']);
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
  });

  it('a proto other than http or https is ignored', async () => {
    const seen = await through(trusted, ['X-Forwarded-Proto: javascript']);
    expect(seen['nsgi.url_scheme']).toBe('http');
  });

  it('a host with characters a host cannot hold is ignored', async () => {
    const seen = await through(trusted, ['X-Forwarded-Host: evil.com/path']);
    expect(seen.HTTP_HOST).toBe('app.internal:8000');
  });

  it.each([[['127.0.0.0/8']], [['*']], [['10.0.0.1', '127.0.0.1']], [['::ffff:127.0.0.1', '127.0.0.1/32']]])('trusts the peer with forwardedAllowIps %j', async (list) => {
    const seen = await through({ forwardedAllowIps: list }, ALL_FIELDS);
    expect(seen.REMOTE_ADDR).toBe('203.0.113.9');
    expect(seen['nsgi.url_scheme']).toBe('https');
  });

  it('a request with no forwarding fields is unchanged', async () => {
    const seen = await through(trusted, []);
    expect(seen.REMOTE_ADDR).toBe('127.0.0.1');
    expect(seen['nsgi.url_scheme']).toBe('http');
    expect(seen.HTTP_HOST).toBe('app.internal:8000');
  });
});

describe('trustedProxies', () => {
  it('matches single IPv4 and IPv6 addresses', () => {
    const t = trustedProxies(['10.0.0.1', '::1']);
    expect(t.trusts('10.0.0.1')).toBe(true);
    expect(t.trusts('10.0.0.2')).toBe(false);
    expect(t.trusts('::1')).toBe(true);
    expect(t.trusts('::2')).toBe(false);
  });

  it('matches subnets', () => {
    const t = trustedProxies(['10.0.0.0/8', '2001:db8::/32']);
    expect(t.trusts('10.255.1.2')).toBe(true);
    expect(t.trusts('11.0.0.1')).toBe(false);
    expect(t.trusts('2001:db8:1::5')).toBe(true);
    expect(t.trusts('2001:db9::5')).toBe(false);
  });

  it('reads IPv4-mapped IPv6 peers (dual-stack sockets) as IPv4', () => {
    const t = trustedProxies(['127.0.0.0/8']);
    expect(t.trusts('::ffff:127.0.0.1')).toBe(true);
    expect(t.trusts('::ffff:10.0.0.1')).toBe(false);
  });

  it('* trusts everyone', () => {
    const t = trustedProxies(['*']);
    expect(t.trusts('203.0.113.9')).toBe(true);
    expect(t.trusts('::1')).toBe(true);
  });

  it('trusts nothing that is not an address, and nothing from an empty list', () => {
    expect(trustedProxies(['127.0.0.1']).trusts('localhost')).toBe(false);
    expect(trustedProxies(['127.0.0.1']).trusts('')).toBe(false);
    expect(trustedProxies([]).trusts('127.0.0.1')).toBe(false);
    expect(trustedProxies([' ', '']).trusts('127.0.0.1')).toBe(false);
  });

  // Bug: Number('') is 0, so '1.2.3.4/' became the subnet 1.2.3.4/0 and trusted every IPv4 peer.
  // The CLI's own pattern rejects it; serve({ forwardedAllowIps }) did not.
  it('never reads an empty prefix ("1.2.3.4/") as /0, which would trust every IPv4 peer', () => {
    let t: ReturnType<typeof trustedProxies> | undefined;
    try {
      t = trustedProxies(['1.2.3.4/']);
    } catch (err) {
      expect(err).toBeInstanceOf(TypeError);
    }
    expect(t?.trusts('8.8.8.8') ?? false).toBe(false);
  });

  it.each(['localhost', '10.0.0.0/33', '::/129', '10.0.0.0/x', '10.0.0', '1.2.3.4/'])('rejects %j with a TypeError naming it', (entry) => {
    expect(() => trustedProxies([entry])).toThrow(TypeError);
    expect(() => trustedProxies([entry])).toThrow(JSON.stringify(entry));
  });
});

/** environ builds the parts of an environ that applyForwarded reads and writes. */
function environ(fields: Record<string, string>): Environ {
  return {
    REMOTE_ADDR: '10.0.0.1',
    REMOTE_PORT: '5555',
    HTTP_HOST: 'app.internal:8000',
    SERVER_NAME: 'app.internal',
    SERVER_PORT: '8000',
    'nsgi.url_scheme': 'http',
    ...fields,
  } as unknown as Environ;
}

describe('applyForwarded', () => {
  const proxy = trustedProxies(['10.0.0.0/8']);

  it('skips trusted hops from the right and stops at the first untrusted one', () => {
    const env = environ({ HTTP_X_FORWARDED_FOR: '198.51.100.7, 203.0.113.9, 10.1.1.1, 10.2.2.2' });
    applyForwarded(env, proxy);
    expect(env.REMOTE_ADDR).toBe('203.0.113.9');
    expect(env.REMOTE_PORT).toBe('0');
  });

  it('takes the leftmost hop when every hop is a trusted proxy', () => {
    const env = environ({ HTTP_X_FORWARDED_FOR: '10.9.9.9, 10.2.2.2' });
    applyForwarded(env, proxy);
    expect(env.REMOTE_ADDR).toBe('10.9.9.9');
  });

  it('reads Forwarded quoted IPv6 with a port, proto and host', () => {
    const env = environ({ HTTP_FORWARDED: 'for="[2001:db8::1]:4711";proto=https;host="example.com:8443"' });
    applyForwarded(env, proxy);
    expect(env.REMOTE_ADDR).toBe('2001:db8::1');
    expect(env.REMOTE_PORT).toBe('4711');
    expect(env['nsgi.url_scheme']).toBe('https');
    expect(env.HTTP_HOST).toBe('example.com:8443');
    expect(env.SERVER_NAME).toBe('example.com');
    expect(env.SERVER_PORT).toBe('8443');
  });

  it('brackets an IPv6 host in SERVER_NAME', () => {
    const env = environ({ HTTP_FORWARDED: 'for=203.0.113.9;host="[2001:db8::2]:8080"' });
    applyForwarded(env, proxy);
    expect(env.SERVER_NAME).toBe('[2001:db8::2]');
    expect(env.SERVER_PORT).toBe('8080');
  });

  it('keeps the peer for unknown, obfuscated and empty for= values', () => {
    for (const value of ['for=unknown', 'for=_secret', 'for=""', 'proto=https']) {
      const env = environ({ HTTP_FORWARDED: value });
      applyForwarded(env, proxy);
      expect(env.REMOTE_ADDR, value).toBe('10.0.0.1');
      expect(env.REMOTE_PORT, value).toBe('5555');
    }
  });

  it('reads backslash escapes inside quoted strings', () => {
    const env = environ({ HTTP_FORWARDED: 'for="203.0.113.9";proto="h\\ttps"' });
    applyForwarded(env, proxy);
    expect(env.REMOTE_ADDR).toBe('203.0.113.9');
    expect(env['nsgi.url_scheme']).toBe('https');
  });

  it('uses the last X-Forwarded-Proto and -Host item, and the default port of the scheme', () => {
    const env = environ({ HTTP_X_FORWARDED_PROTO: 'http, https', HTTP_X_FORWARDED_HOST: 'a.example, b.example' });
    applyForwarded(env, proxy);
    expect(env['nsgi.url_scheme']).toBe('https');
    expect(env.HTTP_HOST).toBe('b.example');
    expect(env.SERVER_PORT).toBe('443');
    expect(env.REMOTE_ADDR).toBe('10.0.0.1');
  });

  it('ignores a non-numeric port in for=', () => {
    const env = environ({ HTTP_FORWARDED: 'for="203.0.113.9:_abc"' });
    applyForwarded(env, proxy);
    expect(env.REMOTE_ADDR).toBe('203.0.113.9');
    expect(env.REMOTE_PORT).toBe('0');
  });

  it('changes nothing without forwarding fields', () => {
    const env = environ({});
    const before = { ...env };
    applyForwarded(env, proxy);
    expect(env).toEqual(before);
  });
});
