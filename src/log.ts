/**
 * nsgi's own messages (not the access log, not the app's `nsgi.errors`): one line each, prefixed
 * `nsgi: `, filtered by `--log-level` as gunicorn and uvicorn filter theirs.
 */

/** LOG_LEVELS are the levels `--log-level` accepts, most severe first. */
export const LOG_LEVELS = ['error', 'warning', 'info', 'debug'] as const;

/** LogLevel is one of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** DEFAULT_LOG_LEVEL shows everything but debug detail, as gunicorn's and uvicorn's `info` does. */
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';

/** Logger writes nsgi's own messages at a level; lines below the configured level are dropped. */
export interface Logger {
  error(text: string): void;
  warning(text: string): void;
  info(text: string): void;
  debug(text: string): void;
}

/** isLogLevel tells whether `text` names one of {@link LOG_LEVELS}. */
export function isLogLevel(text: string): text is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(text);
}

/**
 * createLogger returns a {@link Logger} writing to `sink` the lines at `level` or more severe,
 * each as `nsgi: TEXT` and a newline.
 */
export function createLogger(sink: { write(text: string): unknown }, level: LogLevel = DEFAULT_LOG_LEVEL): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const at = (which: LogLevel) =>
    LOG_LEVELS.indexOf(which) <= threshold ? (text: string) => void sink.write(`nsgi: ${text}\n`) : () => {};
  return { error: at('error'), warning: at('warning'), info: at('info'), debug: at('debug') };
}
