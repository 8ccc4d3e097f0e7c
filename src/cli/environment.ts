/**
 * Options from the environment: the variable each option is read from when the command line
 * leaves it out (`NSGI_*`, then the platforms' plain `PORT`, `HOST` and `WEB_CONCURRENCY`), and
 * how a flag is written there.
 */

import { CliError } from './errors.ts';
import type { OptionSpec } from './options.ts';

/**
 * ENVIRONMENT_ALIASES are the plain variables read after `NSGI_*`: `PORT` and `HOST` as Heroku,
 * Cloud Run and most platforms set them, and `WEB_CONCURRENCY` for the worker count as gunicorn
 * reads it.
 */
const ENVIRONMENT_ALIASES: Readonly<Record<string, string>> = { port: 'PORT', host: 'HOST', workers: 'WEB_CONCURRENCY' };

/** environmentName is the variable an option is read from: `NSGI_MAX_BODY_SIZE` for `--max-body-size`. */
export function environmentName(option: string): string {
  return `NSGI_${option.toUpperCase().replace(/-/g, '_')}`;
}

/** fromEnvironment finds an option's value in the environment: `NSGI_*` first, then its alias. */
export function fromEnvironment(option: OptionSpec, env: Readonly<Record<string, string | undefined>>): { variable: string; value: string } | undefined {
  for (const variable of [environmentName(option.name), ENVIRONMENT_ALIASES[option.name]]) {
    if (variable === undefined) continue;
    const value = env[variable];
    if (value !== undefined && value !== '') return { variable, value };
  }
  return undefined;
}

/** parseFlag reads a flag set in the environment: 1/true/yes/on or 0/false/no/off. */
export function parseFlag(variable: string, text: string): boolean {
  const lower = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  throw new CliError(`${variable} (environment) must be 1, true, yes, on, 0, false, no or off, got ${JSON.stringify(text)}`);
}
