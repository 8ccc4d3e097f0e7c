/**
 * The package as a user gets it: `npm pack` of this repository (whose `prepack` builds `dist/`),
 * installed from the tarball into a fresh project in a temporary directory. The consumer tests
 * and the start-up benchmark both run nsgi from such an install, never from the sources.
 *
 * The install prefers npm's cache, which `npm ci` of this repository filled with every package the
 * tarball depends on, and falls back to the npm registry for anything missing.
 */

import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from './spawn-cli.ts';

/** NPM is the npm command; `npm.cmd` on Windows, where a bare `npm` is not executable. */
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** COMMAND_TIMEOUT_MS bounds one npm or tsc run; packing builds the whole package with tsc. */
export const COMMAND_TIMEOUT_MS = 120_000;

/** CommandResult is how a finished command ended and what it printed. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * runCommand runs `command args` in `cwd` to completion and resolves with its exit code and
 * output, whatever the code; it rejects only when the command cannot start or outlives
 * `timeoutMs` (it is then killed).
 */
export function runCommand(command: string, args: readonly string[], cwd: string, timeoutMs: number = COMMAND_TIMEOUT_MS): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      const failure = error as (NodeJS.ErrnoException & { killed?: boolean }) | null;
      if (failure !== null && (typeof failure.code === 'string' || failure.killed === true)) {
        reject(new Error(`${command} ${args.join(' ')} in ${cwd} failed: ${failure.message}; stderr: ${stderr}`));
        return;
      }
      resolve({ code: failure === null ? 0 : Number(failure.code), stdout, stderr });
    });
  });
}

/** mustSucceed runs a command that must exit 0 and resolves with its stdout. */
async function mustSucceed(command: string, args: readonly string[], cwd: string): Promise<string> {
  const result = await runCommand(command, args, cwd);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} in ${cwd} exited ${result.code}; stdout: ${result.stdout}; stderr: ${result.stderr}`);
  }
  return result.stdout;
}

/** PackedPackage is a tarball of this repository and the paths it holds. */
export interface PackedPackage {
  /** The tarball's absolute path. */
  readonly tarball: string;
  /** Every file in it, relative to the package root (`dist/src/index.js`). */
  readonly files: readonly string[];
}

/**
 * packRepository runs `npm pack` in the repository, which builds `dist/` afresh through the
 * `prepack` script, and writes the tarball into `destination`.
 */
export async function packRepository(destination: string): Promise<PackedPackage> {
  const stdout = await mustSucceed(NPM, ['pack', '--json', '--pack-destination', destination], REPO_ROOT);
  // The prepack build prints its own lines on stdout before npm's JSON, which starts on a line of
  // its own with the array's bracket.
  const start = stdout.search(/^\[\s*$/m);
  if (start === -1) throw new Error(`npm pack printed no JSON: ${stdout}`);
  const [report] = JSON.parse(stdout.slice(start)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  if (report === undefined) throw new Error(`npm pack reported no package: ${stdout}`);
  return { tarball: path.join(destination, path.basename(report.filename)), files: report.files.map((f) => f.path) };
}

/**
 * installPackage creates a project in `dir` with the given package.json fields and installs the
 * tarball into it, as `npm install ./nsgi-x.y.z.tgz` would for a user.
 */
export async function installPackage(tarball: string, dir: string, manifest: Record<string, unknown> = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'nsgi-consumer', version: '1.0.0', private: true, ...manifest }, null, 2));
  await mustSucceed(NPM, ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], dir);
}
