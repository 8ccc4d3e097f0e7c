/**
 * The `nsgi` command: `nsgi [options] path/to/module.ts[:export]`, in the manner of gunicorn and
 * uvicorn. This file is its entry point (bin/nsgi.js imports it, or dist/src/cli.js in the
 * installed package) and names its public parts; each job lives in a file of its own under
 * src/cli/.
 *
 * Three steps, each a function of its own so each can be tested alone, data flowing one way:
 *
 *   argv --parseCliArgs--> CliCommand --loadApp--> App --main: serve--> running until a signal
 *
 *   src/cli/options.ts      the option table and parseCliArgs (touches nothing but its arguments)
 *   src/cli/environment.ts  options read from NSGI_* and the platforms' variables
 *   src/cli/values.ts       the parsers of option values
 *   src/cli/help.ts         --help and --version
 *   src/cli/load.ts         the app argument, the module import, the export made an app
 *   src/cli/listen.ts       serve's options, TLS files, unix and systemd sockets, bind errors
 *   src/cli/signals.ts      SIGINT/SIGTERM stop; SIGHUP, SIGTTIN, SIGTTOU never end a lone server
 *   src/cli/main.ts         main: the steps wired together, alone or under workers (src/cluster.ts)
 *   src/cli/errors.ts       CliError and the exit codes
 *
 * Every failure the user can cause is a {@link CliError}: `main` prints it as one line on stderr
 * starting with `nsgi: ` and returns its exit code (2 for bad input, 1 when the server cannot
 * start), never a stack trace.
 */

export { CliError, EXIT_FAILURE, EXIT_USAGE } from './cli/errors.ts';
export {
  DEFAULT_HOST,
  DEFAULT_PORT,
  OPTIONS,
  SHUTDOWN_TIMEOUT_MS,
  parseCliArgs,
  type CliCommand,
  type OptionSpec,
  type ServeCommand,
} from './cli/options.ts';
export { environmentName } from './cli/environment.ts';
export { parseByteCount } from './cli/values.ts';
export { helpText, version } from './cli/help.ts';
export { loadApp, loadInterface, parseAppTarget, toApp, type AppTarget, type LoadedApp } from './cli/load.ts';
export { main, type CliIo, type TextSink } from './cli/main.ts';
