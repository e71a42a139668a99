/**
 * Minimal leveled logger writing to stderr, so that stdout stays free for
 * machine-readable output (JSON records, CSV).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function initialLevel(): LogLevel {
  const fromEnv = process.env.FER_LOG_LEVEL?.toLowerCase();
  if (fromEnv !== undefined && fromEnv in ORDER) {
    return fromEnv as LogLevel;
  }
  return 'info';
}

let currentLevel: LogLevel = initialLevel();
const listeners = new Set<(level: LogLevel, message: string) => void>();

export function setLogLevel(level: LogLevel): void {
  currentLevel = level;
}

export function getLogLevel(): LogLevel {
  return currentLevel;
}

/** Registers a function that receives every emitted line, for run logs written to a file. */
export function addLogListener(listener: (level: LogLevel, message: string) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(level: Exclude<LogLevel, 'silent'>, message: string): void {
  for (const listener of listeners) {
    listener(level, message);
  }
  if (ORDER[level] < ORDER[currentLevel]) {
    return;
  }
  const prefix = level === 'info' ? '' : `${level}: `;
  process.stderr.write(`${prefix}${message}\n`);
}

export const log = {
  debug: (message: string) => emit('debug', message),
  info: (message: string) => emit('info', message),
  warn: (message: string) => emit('warn', message),
  error: (message: string) => emit('error', message),
};
