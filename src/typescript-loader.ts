/**
 * The TypeScript loader of the `nsgi` command, registered only for an app that is TypeScript.
 *
 * A loader hook is not free: tsx brings its compiler (esbuild) and, on Node 20, a hooks thread,
 * about 25 MiB of resident memory and 150 ms of start-up (BENCHMARKS.md) in every process that
 * registers it. An app written in JavaScript (`.js`, `.mjs`, `.cjs`) needs none of that, so the
 * CLI asks for a loader only when the app module is TypeScript (or JSX), and the compiled package
 * loads nsgi itself as plain JavaScript.
 *
 * tsx is preferred where it is installed (it is one of nsgi's dependencies) because it loads every
 * TypeScript app the same way on every Node version: CommonJS as well as ES modules, enums and
 * parameter properties, `./lib.js` naming `./lib.ts`. Node's own type stripping (on by default
 * from Node 22.18 and 23.6) is the fallback when tsx was left out of the install.
 */

import path from 'node:path';

/**
 * TYPESCRIPT_EXTENSIONS are the module file extensions for which a TypeScript loader is registered:
 * TypeScript's, and JSX's (`.tsx`, `.jsx`), which tsx compiles as well and Node cannot load alone.
 */
export const TYPESCRIPT_EXTENSIONS: readonly string[] = ['.ts', '.mts', '.cts', '.tsx', '.jsx'];

/**
 * TypeScriptLoader says what lets this process import TypeScript: `source` when nsgi itself runs
 * from its TypeScript sources (so a loader is already in place: tsx, registered by `bin/nsgi.js`
 * in a clone of the repository, or a test runner's), `tsx` after registering tsx's hooks, `node`
 * when Node strips types itself.
 */
export type TypeScriptLoader = 'source' | 'tsx' | 'node';

/** isTypeScriptModule tells whether `file` names a module that needs a TypeScript loader. */
export function isTypeScriptModule(file: string): boolean {
  return TYPESCRIPT_EXTENSIONS.includes(path.extname(file));
}

let registration: Promise<TypeScriptLoader> | undefined;

/**
 * registerTypeScriptLoader makes TypeScript modules importable in this process and resolves with
 * the {@link TypeScriptLoader} that does it. It registers at most once per process, however often
 * it is called. It rejects with an error that says what to install when neither tsx nor Node's
 * type stripping is available.
 */
export function registerTypeScriptLoader(): Promise<TypeScriptLoader> {
  registration ??= register();
  return registration;
}

async function register(): Promise<TypeScriptLoader> {
  // This file is itself TypeScript only when something already compiles TypeScript for us.
  if (import.meta.url.endsWith('.ts')) return 'source';
  let tsx: [typeof import('tsx/esm/api'), typeof import('tsx/cjs/api')];
  try {
    tsx = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
  } catch (err) {
    if (!isMissingPackage(err)) throw err;
    if (nodeStripsTypes()) return 'node';
    throw new Error(
      `TypeScript apps need tsx (npm install tsx) or Node.js 22.18 or later, which strips types itself; ` +
        `Node ${process.version} without tsx can only load JavaScript (.js, .mjs, .cjs)`,
    );
  }
  // Both hooks, because Node decides a .ts file's module system as it does a .js file's, by the
  // nearest package.json: outside a "type": "module" package the app is CommonJS, which only
  // tsx's CommonJS hook compiles.
  tsx[0].register();
  tsx[1].register();
  return 'tsx';
}

/** nodeStripsTypes tells whether this Node imports `.ts` files itself (`process.features.typescript`). */
function nodeStripsTypes(): boolean {
  const features = process.features as { typescript?: unknown };
  return typeof features.typescript === 'string';
}

/** isMissingPackage tells whether an import failed because the package is not installed. */
function isMissingPackage(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}
