/** A call into the QubesDB API that cannot be carried out (bad path or value, closed database). */
export class QubesDbError extends Error {
  constructor(
    /** e.g. `write`, `rm`, `watch`, `waitForCommit`. */
    readonly operation: string,
    /** e.g. `EINVAL` (path or value rejected by the daemon's rules), `ECLOSED`, `ETIMEDOUT`. */
    readonly code: string,
    /** The offending path or value description. */
    readonly value: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`qubesdb ${operation} ${JSON.stringify(value)} failed: ${code}: ${detail}`, options);
    this.name = 'QubesDbError';
  }
}

/**
 * The peer broke the protocol, and the connection was ended (the C daemons exit in the
 * same situations; we end only that connection).
 */
export class QubesDbProtocolError extends Error {
  constructor(
    /** The other domain. */
    readonly peerDomain: number,
    /** Short machine-readable reason, e.g. `invalid-path`, `spurious-multiread`, `early-eof`. */
    readonly reason: string,
    detail: string,
  ) {
    super(`qubesdb: peer domain ${peerDomain} broke the protocol (${reason}): ${detail}`);
    this.name = 'QubesDbProtocolError';
  }
}
