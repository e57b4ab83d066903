/** Something in the lab failed; `step` names what the lab was doing. */
export class LabError extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(`${step}: ${message}`);
    this.name = 'LabError';
  }
}

/** A wait ran out; the message names what did not happen. */
export class LabTimeout extends LabError {
  constructor(
    readonly waitedFor: string,
    readonly timeoutMs: number,
    detail: Record<string, unknown> = {},
    /** Last output lines of what was waited for, appended to the message. */
    lastLines?: string,
  ) {
    super(
      'timeout',
      `${waitedFor} did not happen within ${Math.round(timeoutMs / 1000)} s${lastLines ? `; last lines:\n${lastLines}` : ''}`,
      detail,
    );
    this.name = 'LabTimeout';
  }
}
