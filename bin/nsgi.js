#!/usr/bin/env node
// The `nsgi` command (package.json "bin"). Plain JavaScript so that it runs without a build step:
// it registers tsx's loaders, which teach this Node process to import TypeScript (the CLI in
// src/cli.ts and the app it serves), then hands the arguments to the CLI and exits with its code.
// Works on Node 20 (module.register, 20.6+) and 22+.
//
// Both loaders, because Node decides a .ts file's module system as it does a .js file's: by the
// nearest package.json. A .ts app outside a "type": "module" package is CommonJS to Node, and only
// tsx's CommonJS hook compiles it; with the ESM hook alone it fails on its first type annotation.
import { register as registerCommonJs } from 'tsx/cjs/api';
import { register } from 'tsx/esm/api';

register();
registerCommonJs();
const { main } = await import('../src/cli.ts');
process.exit(await main(process.argv.slice(2)));
