import type { XsErrorName } from './wire.ts';

/** An operation xenstored refused: carries the operation, the error name it sent and the path. */
export class XenstoreError extends Error {
  constructor(
    /** The request, e.g. `READ` or `TRANSACTION_END`. */
    readonly operation: string,
    /** The error name from the reply (`ENOENT`, ...), or `EUNKNOWN` for a name xs_wire.h does not list. */
    readonly code: XsErrorName | 'EUNKNOWN',
    /** The path or argument the request was about, when there is one. */
    readonly path?: string,
    /** For `EUNKNOWN`: the server's error string, made printable. */
    readonly rawError?: string,
  ) {
    super(
      `xenstore ${operation}${path !== undefined ? ` ${shortPath(path)}` : ''} failed: ${code}${
        rawError !== undefined ? ` (server sent ${JSON.stringify(rawError)})` : ''
      }`,
    );
    this.name = 'XenstoreError';
  }
}

/**
 * The server broke the protocol: a malformed reply to one request (the connection stays up),
 * or a violation that loses framing (the connection is closed and every request fails).
 */
export class XenstoreProtocolError extends Error {
  constructor(
    readonly operation: string,
    /** A short machine-readable reason such as `unknown-req-id` or `malformed-directory`. */
    readonly reason: string,
    readonly detail = '',
  ) {
    super(`xenstore ${operation}: protocol violation by server: ${reason}${detail ? ` (${detail})` : ''}`);
    this.name = 'XenstoreProtocolError';
  }
}

/** The connection is gone (closed by us, by the peer, or after a protocol violation). */
export class XenstoreConnectionError extends Error {
  constructor(
    readonly operation: string,
    readonly reason: string,
    override readonly cause?: Error,
  ) {
    super(`xenstore ${operation}: connection closed: ${reason}${cause ? `: ${cause.message}` : ''}`);
    this.name = 'XenstoreConnectionError';
  }
}

/** A request timed out or was aborted by its AbortSignal. */
export class XenstoreTimeoutError extends Error {
  constructor(
    readonly operation: string,
    readonly path: string | undefined,
    readonly aborted: boolean,
    timeoutMs?: number,
  ) {
    super(
      `xenstore ${operation}${path !== undefined ? ` ${shortPath(path)}` : ''} ${
        aborted ? 'was aborted' : `timed out after ${timeoutMs} ms`
      }`,
    );
    this.name = 'XenstoreTimeoutError';
  }
}

/** A request the client refuses to send (bad argument), before anything goes on the wire. */
export class XenstoreUsageError extends Error {
  constructor(
    readonly operation: string,
    message: string,
  ) {
    super(`xenstore ${operation}: ${message}`);
    this.name = 'XenstoreUsageError';
  }
}

/** Paths may be up to 3072 characters; messages show the start and the end. */
function shortPath(path: string): string {
  return path.length <= 160 ? path : `${path.slice(0, 80)}...${path.slice(-60)} (${path.length} characters)`;
}
