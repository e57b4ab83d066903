import type { DomainId } from '@moat/xen';

/**
 * Every failure of a vchan stream: what was being done, a short errno-like code, and the
 * channel it happened on, so a log line says which peer and port misbehaved.
 */
export class VchanError extends Error {
  constructor(
    /** e.g. `write`, `connect`, `listen`, `liveness`. */
    readonly operation: string,
    /** e.g. `EPIPE` (peer closed while we wrote), `ETIMEDOUT`, `ECONNRESET`, `EPEERDEAD`. */
    readonly code: string,
    readonly channel: { localDomain: DomainId; remoteDomain: DomainId; port: number },
    detail = '',
    options?: { cause?: unknown },
  ) {
    super(
      `vchan ${operation} (local ${channel.localDomain}, peer ${channel.remoteDomain}, port ${channel.port}) failed: ${code}${detail ? `: ${detail}` : ''}`,
      options,
    );
    this.name = 'VchanError';
  }
}
