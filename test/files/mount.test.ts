/**
 * mount: dispatch by whole path segment, the prefix moved from PATH_INFO to SCRIPT_NAME (SPEC
 * §2.2), nested mounts and a server mount path, in memory and on the real server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../protocol/nsgi.ts';
import { mount } from '../../src/helpers/mount.ts';
import { request } from '../../src/testing.ts';
import { cleanup, curl, startServer } from '../helpers/server.ts';

afterEach(cleanup);

/** whoami answers with its name and the SCRIPT_NAME and PATH_INFO it was given. */
function whoami(name: string): App {
  return (environ, startResponse) => {
    startResponse('200 OK', [['Content-Type', 'application/json']]);
    return [JSON.stringify({ name, script: environ.SCRIPT_NAME, path: environ.PATH_INFO })];
  };
}

const app = mount({ '/api': whoami('api'), '/api/v2': whoami('v2'), '/': whoami('site') });

describe('mount', () => {
  const cases: Array<[string, string, string, string]> = [
    ['/api/users/7', 'api', '/api', '/users/7'],
    ['/api', 'api', '/api', ''],
    ['/api/', 'api', '/api', '/'],
    ['/api/v2/x', 'v2', '/api/v2', '/x'],
    ['/apix', 'site', '', '/apix'],
    ['/', 'site', '', '/'],
    ['/API/users', 'site', '', '/API/users'],
  ];
  for (const [path, name, script, rest] of cases) {
    it(`ENV-18: sends ${path} to ${name} with SCRIPT_NAME ${JSON.stringify(script)} and PATH_INFO ${JSON.stringify(rest)}`, async () => {
      const response = await request(app, { path });
      expect(response.json()).toEqual({ name, script, path: rest });
    });
  }

  it('ENV-20: keeps SCRIPT_NAME + PATH_INFO equal to the path, under a server mount path and a nested mount', async () => {
    const nested = mount({ '/outer': mount({ '/inner': whoami('deep') }) });
    const response = await request(nested, { path: '/root/outer/inner/a%2Fb', scriptName: '/root' });
    expect(response.json()).toEqual({ name: 'deep', script: '/root/outer/inner', path: '/a/b' });
  });

  it('answers 404 where no prefix matches and there is no "/" app', async () => {
    const response = await request(mount({ '/a': whoami('a') }), { path: '/b' });
    expect(response.status).toBe(404);
    expect(response.text()).toContain('/b');
  });

  it('refuses prefixes that would break SCRIPT_NAME, and apps that are not functions', () => {
    expect(() => mount({ 'api': whoami('x') })).toThrow(/must start with "\/"/);
    expect(() => mount({ '/api/': whoami('x') })).toThrow(/not end with one/);
    expect(() => mount({ '/api': 'nope' as unknown as App })).toThrow(/not a function/);
  });

  it('dispatches on the real server, with the server root path in front', async () => {
    const { url } = await startServer(app, { scriptName: '/base' });
    const result = await curl([`${url}/base/api/v2/items?q=1`]);
    expect(JSON.parse(result.stdout.toString())).toEqual({ name: 'v2', script: '/base/api/v2', path: '/items' });
  });
});
