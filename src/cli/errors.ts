/**
 * The CLI's failures: {@link CliError}, the exit codes it carries, and the one-line renderings of
 * thrown values its messages quote. Every failure the user can cause is a CliError, which `main`
 * prints as one line on stderr starting with `nsgi: ` and turns into its exit code, never a stack
 * trace, because the person reading it needs to know what to fix, not where in nsgi the check lives.
 */

/** EXIT_USAGE is the exit code for bad input: arguments, module file, export (as getopt tools use). */
export const EXIT_USAGE = 2;

/** EXIT_FAILURE is the exit code when the server cannot start (the port is taken) or fails to stop. */
export const EXIT_FAILURE = 1;

/** CliError is a failure the user caused or can fix; `main` prints its message after `nsgi: `. */
export class CliError extends Error {
  /** The process exit code: {@link EXIT_USAGE} or {@link EXIT_FAILURE}. */
  readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT_USAGE) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** describeError renders a thrown value as one line: its name (unless plain `Error`) and message. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) {
    text = err.name && err.name !== 'Error' && !err.message.startsWith(err.name) ? `${err.name}: ${err.message}` : err.message;
  } else {
    text = String(err);
  }
  const line = text.replace(/\s*\n\s*/g, ' ').trim();
  return line.length > 500 ? line.slice(0, 500) + '...' : line;
}

/** errorCode reads a Node system error's `code`, such as `ENOENT`. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
