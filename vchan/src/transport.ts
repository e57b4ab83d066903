import type { DomainId } from '@moat/xen';
import { connectVchanSocket, listenVchanSocket, type VchanSocketPlace } from './socket.ts';
import type { VchanLiveness, VchanStream } from './stream.ts';
import { connectVchan, listenVchan, type VchanDomain } from './xen.ts';

/**
 * How a protocol (QubesDB, qrexec, GUI) reaches its peer: libxenvchan on Xen, or the
 * vchan-socket transport on a laptop. Protocol code takes one of these and never
 * knows which.
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

/** Unix sockets compatible with qubes-core-vchan-socket, for host tests and the C tools built with it. */
export function socketVchanTransport(place: VchanSocketPlace): VchanTransport {
  return {
    localDomain: place.localDomain,
    listen: (options) => listenVchanSocket({ ...place, ...options }),
    connect: (options) => connectVchanSocket({ ...place, ...options }),
  };
}
