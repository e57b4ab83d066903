/**
 * What both ends of a Xen network device show their user: frames with their offload
 * metadata in, frames out, counters, and the Xen resources held (for leak checks).
 */
import type { DomainId, EventChannels, GrantCopier, GrantMapper, GrantSharer } from '@moat/xen';
import type { XenstoreClient } from '@moat/xenstore';

/**
 * Offload metadata a frame carries across the rings (netif.h NETTXF_/NETRXF_ flags and the
 * GSO extra-info slot). The same shape and names as the firewall engine's FrameMeta
 * (firewall/src/engine/config.ts), so frames pass straight between the two.
 */
export interface FrameMeta {
  /** The TCP/UDP checksum holds only the pseudo-header sum (CHECKSUM_PARTIAL). */
  csumBlank: boolean;
  /** The checksum was already checked (or need not be). */
  dataValidated: boolean;
  /** 0 none, 1 XEN_NETIF_GSO_TYPE_TCPV4, 2 XEN_NETIF_GSO_TYPE_TCPV6. */
  gsoType: number;
  /** The MSS of a GSO frame, else 0. */
  gsoSize: number;
}

export function plainMeta(): FrameMeta {
  return { csumBlank: false, dataValidated: false, gsoType: 0, gsoSize: 0 };
}

/**
 * One received frame: `buf[off, off + len)`, valid only during the call (the buffer is
 * reused for the next frame; a listener that keeps the frame must copy it). `meta` too is
 * reused.
 */
export type FrameListener = (buf: Uint8Array, off: number, len: number, meta: FrameMeta) => void;

/** The Xen side a device needs: any XenDomain (native or sim) has these. */
export interface NetifXen {
  readonly domid: DomainId;
  readonly eventChannels: EventChannels;
  readonly grantMapper: GrantMapper;
  readonly grantSharer: GrantSharer;
  readonly grantCopier: GrantCopier;
}

/** Where a device logs (rate-limited per device). Default: stderr. */
export type NetifLog = (line: string) => void;

export interface NetifStats {
  /** Frames and bytes handed to `onFrame` listeners. */
  rxFrames: number;
  rxBytes: number;
  /** Frames and bytes that went onto the peer's ring. */
  txFrames: number;
  txBytes: number;
  /** Frames `send` could not deliver: no room queued, too big, offload the peer lacks, not connected. */
  txDropped: number;
  /** Frames the peer sent that we dropped without ending the connection (too short, ...). */
  rxDropped: number;
  /** GSO frames sent and received (each one frame, whatever its slots). */
  gsoFrames: number;
  /** Slots consumed (requests for netback, responses for netfront). */
  slots: number;
  /** Event channel notifications received and sent. */
  eventsIn: number;
  eventsOut: number;
  /** Grant-copy calls (one per batch). */
  copyBatches: number;
  /** Times the peer broke the protocol and lost its connection. */
  fatalErrors: number;
}

/** Xen resources a device (or a service) holds right now; all zero once closed. */
export interface NetifResources {
  /** Pages we share with the peer (gntalloc). */
  grants: number;
  /** Mappings of the peer's pages (gntdev). */
  mappings: number;
  eventChannels: number;
  watches: number;
}

export type NetDeviceState = 'connecting' | 'connected' | 'closed';

/** Common to NetbackDevice and NetfrontDevice. */
export interface NetDevice {
  /** The other end's domain. */
  readonly peer: DomainId;
  readonly devid: number;
  /** The MAC the toolstack wrote for the frontend (`mac`), e.g. `00:16:3e:5e:6c:00`. */
  readonly mac: string;
  /** From xenstore `mtu` (default 1500). */
  readonly mtu: number;
  readonly state: NetDeviceState;
  /**
   * Queues `buf[off, off + len)` (copied before returning) for the peer; frames queued in
   * one turn of the event loop go out as one batch. False when dropped (counted in
   * `txDropped`): not connected, queue full, larger than 65535, larger than a page for a
   * peer without scatter-gather, or GSO the peer did not ask for.
   */
  send(buf: Uint8Array, meta?: FrameMeta, off?: number, len?: number): boolean;
  /** Every received frame. Returns a function that removes the listener. */
  onFrame(listener: FrameListener): () => void;
  /** Called once when the device ends (peer closed, protocol violation, detach, close()). */
  onClose(listener: (reason: string) => void): () => void;
  /** Resolves when connected (rings mapped, both ends in state 4); rejects if it ends first. */
  connected(): Promise<void>;
  stats(): NetifStats;
  resources(): NetifResources;
  /** Disconnects (xenbus Closing/Closed), frees every grant, mapping, channel and watch. */
  close(): Promise<void>;
}

export function emptyStats(): NetifStats {
  return {
    rxFrames: 0,
    rxBytes: 0,
    txFrames: 0,
    txBytes: 0,
    txDropped: 0,
    rxDropped: 0,
    gsoFrames: 0,
    slots: 0,
    eventsIn: 0,
    eventsOut: 0,
    copyBatches: 0,
    fatalErrors: 0,
  };
}

export function emptyResources(): NetifResources {
  return { grants: 0, mappings: 0, eventChannels: 0, watches: 0 };
}

export function addResources(into: NetifResources, r: NetifResources): NetifResources {
  into.grants += r.grants;
  into.mappings += r.mappings;
  into.eventChannels += r.eventChannels;
  into.watches += r.watches;
  return into;
}

/** Options both ends take. */
export interface NetifCommonOptions {
  xen: NetifXen;
  xenstore: XenstoreClient;
  log?: NetifLog;
  /** Bytes of frames `send` may queue per device before dropping (default 1 MiB). */
  queueBytes?: number;
}

/** Offloads an end offers or asks for (all true by default). */
export interface NetifFeatures {
  /** Multi-slot packets (`feature-sg`); without it frames are at most one page. */
  sg?: boolean;
  gsoTcpv4?: boolean;
  gsoTcpv6?: boolean;
  ipv6CsumOffload?: boolean;
}
