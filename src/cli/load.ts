/**
 * Loading the app: the app argument split into module and export ({@link parseAppTarget}), the
 * module imported and its export made an nsgi app ({@link loadApp}, {@link loadInterface}), and
 * every way that can fail said in one line that names the file.
 *
 * TypeScript apps load without a build: {@link loadInterface} registers a TypeScript loader
 * (src/typescript-loader.ts) before it imports a TypeScript or JSX module, and only then, so a
 * JavaScript app runs with Node's own loader alone.
 */

import { stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { App, Body, Environ, StartResponse } from '../../protocol/nsgi.ts';
import { adaptInterface, detectInterface, type AppInterface } from '../adapters/interface.ts';
import { isTypeScriptModule, registerTypeScriptLoader } from '../typescript-loader.ts';
import { CliError, describeError, errorCode } from './errors.ts';

/** AppTarget is the app argument split into the module file and the export to use. */
export interface AppTarget {
  /** The module path as given, relative to the working directory or absolute. */
  readonly file: string;
  /** The export's name; `default` when the argument names none. */
  readonly exportName: string;
}

/**
 * parseAppTarget splits `path/to/module.ts:export` at its last colon. A colon followed by a path
 * separator belongs to the path (a Windows drive, `C:\app.ts`), so only a plain name after the
 * last colon is taken as the export.
 */
export function parseAppTarget(target: string): AppTarget {
  const colon = target.lastIndexOf(':');
  const after = target.slice(colon + 1);
  if (colon === -1 || after.includes('/') || after.includes('\\')) return { file: target, exportName: 'default' };
  const file = target.slice(0, colon);
  if (file === '') throw new CliError(`missing the module path before ":${after}"`);
  if (after === '') throw new CliError(`missing the export name after the colon in ${JSON.stringify(target)}`);
  if (!/^[A-Za-z_$][\w$]*$/.test(after)) {
    throw new CliError(`${JSON.stringify(after)} is not an export name (in ${JSON.stringify(target)})`);
  }
  return { file, exportName: after };
}

/** LoadedApp is the export the command line serves, as an nsgi app, and how it is called. */
export interface LoadedApp {
  readonly app: App;
  readonly kind: AppInterface;
}

/**
 * loadApp imports the module `target.file` (resolved against `cwd`) and returns the app exported
 * as `target.exportName`. A TypeScript module gets a TypeScript loader registered first; any
 * other module is imported by Node alone. It throws a {@link CliError} when the file is missing,
 * when no TypeScript loader is available for it, when importing it fails (with the error's message
 * on one line), when the export is missing (listing the exports there are), or when the export is
 * not an app.
 */
export async function loadApp(target: AppTarget, cwd: string = process.cwd()): Promise<App> {
  return (await loadInterface(target, cwd, 'nsgi')).app;
}

/**
 * loadInterface is {@link loadApp} for any interface: the export is called as `iface` says, or,
 * for `auto`, as {@link detectInterface} finds; an export no interface can call gets the same
 * error as an export that is not an app.
 */
export async function loadInterface(target: AppTarget, cwd: string, iface: 'auto' | AppInterface): Promise<LoadedApp> {
  const file = path.resolve(cwd, target.file);
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new CliError(`${target.file} is not a file`);
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (errorCode(err) === 'ENOENT') throw new CliError(`no such file: ${target.file}`);
    throw new CliError(`cannot read ${target.file}: ${describeError(err)}`);
  }

  if (isTypeScriptModule(file)) {
    try {
      await registerTypeScriptLoader();
    } catch (err) {
      throw new CliError(`cannot load ${target.file}: ${describeError(err)}`);
    }
  }
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    const where = appFrame(err);
    throw new CliError(`cannot load ${target.file}: ${describeError(err)}${where === undefined ? '' : ` (at ${where})`}`);
  }

  const name = target.exportName;
  if (!Object.prototype.hasOwnProperty.call(exports, name)) {
    const names = Object.keys(exports);
    const what = name === 'default' ? 'no default export' : `no export named ${JSON.stringify(name)}`;
    const has = names.length === 0 ? 'it exports nothing' : `its exports are: ${names.join(', ')}`;
    throw new CliError(`${target.file} has ${what}; ${has}`);
  }
  const label = name === 'default' ? `the default export of ${target.file}` : `export ${JSON.stringify(name)} of ${target.file}`;
  const value = exports[name];
  const kind = iface === 'auto' ? (detectInterface(value) ?? 'nsgi') : iface;
  if (kind === 'nsgi') return { app: toApp(value, label), kind };
  const app = await adaptInterface(value, kind);
  if (app === undefined) {
    const shape = kind === 'fetch' ? 'a function or an object with a fetch() method' : 'a (req, res) function or a Koa app';
    throw new CliError(`${label} is ${describeValue(value)}, not ${shape} (--interface ${kind})`);
  }
  return { app, kind };
}

/**
 * toApp returns `value` as an {@link App}: a function as it is, an object with a
 * `call(environ, startResponse)` method wrapped in a function that calls it (the method keeps its
 * `this`). Anything else throws a {@link CliError} saying what `label` is instead.
 */
export function toApp(value: unknown, label: string): App {
  if (typeof value === 'function') {
    if (/^class\b/.test(Function.prototype.toString.call(value))) {
      throw new CliError(`${label} is a class, not an app function; export an instance with a call() method`);
    }
    return value as App;
  }
  if (typeof value === 'object' && value !== null && typeof (value as { call?: unknown }).call === 'function') {
    const callable = value as { call(environ: Environ, startResponse: StartResponse): Body | Promise<Body> };
    return (environ, startResponse) => callable.call(environ, startResponse);
  }
  throw new CliError(`${label} is ${describeValue(value)}, not an app function`);
}

/** describeValue names what kind of value something is, for "X is a string, not an app function". */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Promise) return 'a promise (export the app itself, not a promise of it)';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'object': {
      const ctor = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
      const kind = typeof ctor === 'string' && ctor !== '' && ctor !== 'Object' ? `an instance of ${ctor}` : 'an object';
      return `${kind} without a call() method`;
    }
    case 'bigint':
      return 'a bigint';
    default:
      return `a ${typeof value}`;
  }
}

/**
 * appFrame is where in the app's own code an error was thrown (`lib.ts:3:15`, relative to the
 * working directory): the first frame of its stack outside node_modules and Node itself, or
 * undefined when there is none, as for a syntax error, whose message already says where.
 */
function appFrame(err: unknown): string | undefined {
  if (!(err instanceof Error) || typeof err.stack !== 'string') return undefined;
  for (const line of err.stack.split('\n').slice(1)) {
    const m = /(?:\(|at )(?:file:\/\/)?(\/[^()\s]+:\d+:\d+)\)?\s*$/.exec(line);
    if (m === null || m[1]!.includes('/node_modules/')) continue;
    const relative = path.relative(process.cwd(), m[1]!);
    return relative.startsWith('..') ? m[1] : relative;
  }
  return undefined;
}
