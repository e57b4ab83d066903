import type { DomainId } from '@moat/xen';
import type { VchanLiveness, VchanStream } from './stream.ts';
import { connectVchan, listenVchan, type VchanDomain } from './xen.ts';

/**
 * How a protocol (QubesDB, qrexec, GUI) reaches its peer: libxenvchan on Xen, the
 * vchan-socket transport on a laptop, or `MemoryVchanNetwork` (`@moat/vchan/memory`) in unit
 * tests. Protocol code takes one of these and never knows which. The contract:
 * - `listen` resolves once a client may connect (the xenstore entry or socket exists), so the
 *   caller can tell the peer to connect right after; the stream is `'waiting'` until then
 *   (`await stream.whenConnected()`). Destroying a waiting stream withdraws the server.
 * - `connect` waits for the server to appear, up to `timeoutMs` (`VchanError` `ETIMEDOUT`).
 * - Domain arguments are the remote domain, as in Qubes' `libvchan.h`.
 * - There is no half-close: `end()` flushes and closes both directions, as `libvchan_close`.
 */
export interface VchanTransport {
  readonly localDomain: DomainId;
  listen(options: {
    peer: DomainId;
    port: number;
    readMin?: number;
    writeMin?: number;
  }): Promise<VchanStream>;
  connect(options: {
    peer: DomainId;
    port: number;
    timeoutMs?: number;
    signal?: AbortSignal;
  }): Promise<VchanStream>;
}

/** Real vchans through `@moat/xen` (native libxenvchan or sim). */
export function xenVchanTransport(
  domain: VchanDomain,
  extras: {
    liveness?: (peer: DomainId) => VchanLiveness;
    waitForServer?: (path: string, signal: AbortSignal) => Promise<void>;
  } = {},
): VchanTransport {
  return {
    localDomain: domain.domid,
    listen: (options) => listenVchan({ ...options, domain, liveness: extras.liveness?.(options.peer) }),
    connect: (options) =>
      connectVchan({
        ...options,
        domain,
        liveness: extras.liveness?.(options.peer),
        waitForServer: extras.waitForServer,
      }),
  };
}
