/** Errors at the package boundary: each says what failed, why, and with which peer. */
import type { CommandParseReason } from './command.ts';
import type { DecodeReason } from './wire.ts';

export type ProtocolReason =
  | DecodeReason
  | CommandParseReason
  | 'early-eof'
  | 'transport-error'
  | 'timeout'
  | 'output-too-large';

/** A peer sent something we reject (or vanished mid-message); only that connection ends. */
export class QrexecProtocolError extends Error {
  constructor(
    /** What we were doing, e.g. `agent control read` or `data channel 0:513`. */
    readonly operation: string,
    readonly reason: ProtocolReason,
    readonly detail = '',
    /** The peer's domain id, when known. */
    readonly peerDomain?: number,
  ) {
    super(
      `${operation}: ${reason}${detail ? ` (${detail})` : ''}${peerDomain === undefined ? '' : ` [domain ${peerDomain}]`}`,
    );
    this.name = 'QrexecProtocolError';
  }
}

/** dom0 refused a call we made (MSG_SERVICE_REFUSED); qrexec-client-vm exits 126 for this. */
export class QrexecRefusedError extends Error {
  constructor(
    readonly target: string,
    readonly service: string,
  ) {
    super(`qrexec call to ${target} ${service} refused`);
    this.name = 'QrexecRefusedError';
  }
}

/** The local side cannot proceed (closed agent, no free port, bad arguments). */
export class QrexecStateError extends Error {
  constructor(
    readonly operation: string,
    detail: string,
  ) {
    super(`${operation}: ${detail}`);
    this.name = 'QrexecStateError';
  }
}
