/**
 * What the host and the netif lab guest (guests/netif.guest.ts) share: the guest's arguments
 * and the commands dom0 writes to its `data/moat-cmd/<seq>` (guests/command-loop.ts).
 */

export interface NetifGuestArgs {
  /**
   * bridge: @moat/netif's netback for client vifs and netfront upstream, and a trivial bridge
   * between them (every frame from a client goes upstream, every frame from upstream to every
   * connected client). plumbing: the xenbus side of a vif backend only (no rings moved),
   * written without @moat/netif: proves that a client's vif can name this domU as its backend
   * and what libxl needs of it.
   */
  readonly role: 'bridge' | 'plumbing';
}

/** What the bridge counted, per direction, since it started. */
export interface BridgeCounts {
  /** Frames from clients (netback) sent upstream, frames from upstream sent to clients. */
  readonly up: DirectionCounts;
  readonly down: DirectionCounts;
}

export interface DirectionCounts {
  readonly frames: number;
  readonly bytes: number;
  /** Frames that carried GSO metadata (one frame, however many segments it becomes). */
  readonly gsoFrames: number;
  /** The largest frame (bytes). */
  readonly largest: number;
  /** Frames `send` refused (counted by the sending device too). */
  readonly dropped: number;
}

/** Xen resources, as @moat/netif's `resources()` counts them. */
export interface ResourceCounts {
  readonly grants: number;
  readonly mappings: number;
  readonly eventChannels: number;
  readonly watches: number;
}

export interface BridgeReport {
  readonly counts: BridgeCounts;
  /** The netback service's (its watch and every live client device's). */
  readonly netback: ResourceCounts;
  readonly netfront: ResourceCounts;
  /** Live client devices: peer domid, devid, state. */
  readonly clients: readonly { peer: number; devid: number; state: string }[];
  /**
   * @moat/netif's counters (`stats()`: frames, slots, events in and out, grant-copy calls):
   * the netback service's (every client device, live and ended) and the netfront's.
   */
  readonly stats: { readonly netback: Record<string, number>; readonly netfront: Record<string, number> };
}

export type NetifCommand =
  /** The bridge's counts, resources and clients. */
  | { op: 'bridge' }
  /** Zeroes the bridge's counts. */
  | { op: 'reset-counts' }
  /** The backend devices under our `backend/vif` and the state of each end. */
  | { op: 'backends' }
  /** Our own frontend device/vif/<n> (the vif whose backend is upstream) and its backend's state. */
  | { op: 'frontend'; device?: number }
  /** Starts V8's CPU profiler in the guest (sampling every `intervalUs`, default 1000). */
  | { op: 'profile-start'; intervalUs?: number }
  /** Stops it and answers a summary (cpu-profile.ts `ProfileSummary`). */
  | { op: 'profile-stop'; top?: number }
  | { op: 'poweroff' };

/** A backend device as the guest sees it. */
export interface BackendReport {
  readonly path: string;
  readonly frontendId: number;
  readonly device: number;
  readonly state: string | undefined;
  readonly frontendState: string | undefined;
  readonly mac: string | undefined;
  /** The frontend's handshake keys once it connected. */
  readonly rings?: { tx: number; rx: number; eventChannel: number };
  /** Whether both ring pages were mapped and the event channel bound. */
  readonly mapped: boolean;
}
