import { isValidValue, isWritablePath, MAX_VALUE_LENGTH } from './wire.ts';

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

const textEncoder = new TextEncoder();

/**
 * The bytes of a value an API caller wants written, after the checks the C daemon would
 * apply to it; throws QubesDbError (EINVAL) for what it would refuse.
 */
export function checkedWrite(path: string, value: string | Uint8Array): Uint8Array {
  const bytes = typeof value === 'string' ? textEncoder.encode(value) : value;
  if (!isWritablePath(path)) {
    throw new QubesDbError(
      'write',
      'EINVAL',
      path,
      'the path must start with / and not end with /, ≤ 63 of [A-Za-z0-9_/.:@-]',
    );
  }
  if (!isValidValue(bytes)) {
    throw new QubesDbError(
      'write',
      'EINVAL',
      path,
      `the value must be ≤ ${MAX_VALUE_LENGTH} bytes without NUL`,
    );
  }
  return bytes;
}
