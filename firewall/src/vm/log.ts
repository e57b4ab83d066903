/**
 * The VM's log: one line per event on the Xen console (node's stderr goes there through our
 * init), filtered by `vm-config.log-level`, which may change while the VM runs.
 */
import { LOG_LEVELS, type LogLevel } from './settings.ts';

export interface VmLog {
  error(line: string): void;
  warn(line: string): void;
  info(line: string): void;
  debug(line: string): void;
  level: LogLevel;
}

export function consoleLog(
  write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  level: LogLevel = 'info',
): VmLog {
  const log: VmLog = {
    level,
    error: (line) => emit('error', line),
    warn: (line) => emit('warn', line),
    info: (line) => emit('info', line),
    debug: (line) => emit('debug', line),
  };
  function emit(at: LogLevel, line: string): void {
    if (LOG_LEVELS.indexOf(at) > LOG_LEVELS.indexOf(log.level)) return;
    write(`sys-moat ${at}: ${line}`);
  }
  return log;
}
