#!/usr/bin/env node
// The `nsgi` command (package.json "bin"). Plain JavaScript, so that it runs before anything is
// compiled. It hands the arguments to the CLI and exits with its code.
//
// The installed package ships the CLI compiled (dist/src/cli.js), which Node loads with no loader
// at all; the CLI itself registers a TypeScript loader when, and only when, the app it serves is
// TypeScript (src/typescript-loader.ts). A clone of the repository has no build step: its CLI is
// src/cli.ts, so there tsx's hooks are registered first, as they must be to import it, and they
// then load a TypeScript app as well. The sources win when both are present, so a stale dist/
// left by `npm run build` or `npm pack` never stands in for the code being worked on.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli.ts', import.meta.url);
let cli;
if (existsSync(source)) {
  const [esm, commonJs] = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
  // Both hooks, for the reason src/typescript-loader.ts gives: a .ts app may be CommonJS.
  esm.register();
  commonJs.register();
  cli = await import(source.href);
} else {
  cli = await import('../dist/src/cli.js');
}
process.exit(await cli.main(process.argv.slice(2)));
