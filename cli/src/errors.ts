/** Exit codes of every `moat` command. */
export const ExitCode = {
  ok: 0,
  /** A check, test or benchmark target failed. */
  checkFailed: 1,
  /** Bad usage, or the machine lacks something the command needs. */
  usage: 2,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Thrown by commands to end with a specific exit code and a clear message. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export class CheckFailed extends CliError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, ExitCode.checkFailed, details);
    this.name = 'CheckFailed';
  }
}

export class SetupProblem extends CliError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, ExitCode.usage, details);
    this.name = 'SetupProblem';
  }
}
