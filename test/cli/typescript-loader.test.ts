/**
 * Which app modules get a TypeScript loader. That a JavaScript app really loads without one, and a
 * TypeScript app with one, is shown on the installed package in package.test.ts.
 */

import { describe, expect, it } from 'vitest';
import { isTypeScriptModule, registerTypeScriptLoader } from '../../src/typescript-loader.ts';

describe('isTypeScriptModule', () => {
  it.each(['app.ts', 'app.mts', 'app.cts', 'app.tsx', 'app.jsx', '/srv/a.b/app.ts', 'dir.js/app.ts'])('%s needs a loader', (file) => {
    expect(isTypeScriptModule(file)).toBe(true);
  });

  it.each(['app.js', 'app.mjs', 'app.cjs', 'app.ts.js', 'dir.ts/app.mjs', 'app', 'app.json'])('%s loads with Node alone', (file) => {
    expect(isTypeScriptModule(file)).toBe(false);
  });
});

describe('registerTypeScriptLoader', () => {
  it('registers nothing when nsgi runs from its TypeScript sources, since a loader is already in place, and answers the same on every call', async () => {
    const first = registerTypeScriptLoader();
    expect(registerTypeScriptLoader()).toBe(first);
    expect(await first).toBe('source');
  });
});
