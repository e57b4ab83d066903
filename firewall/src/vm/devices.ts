/**
 * What the firewall VM needs from its network devices, as small interfaces: the uplink
 * (Xen netfront to the netvm) and the client vifs (Xen netback, one per client interface).
 * `@moat/netif` provides the real ones (netif-adapter.ts adapts them); tests plug in fakes.
 * Nothing here looks inside a frame: that is the engine's job.
 */
import type { FrameMeta } from '../engine/config.ts';

/** One Ethernet link to another domain, up and exchanging frames. */
export interface EthernetLink {
  /** Our MAC on this link (netfront: XenStore `mac`; netback: what the client sees us as). */
  readonly mac: Uint8Array;
  readonly mtu: number;
  /**
   * Queues one frame for the peer. `buf[off, off+len)` is valid only during the call: a link
   * that keeps it must copy. Never throws on a full ring (it counts and drops).
   */
  send(buf: Uint8Array, off: number, len: number, meta: FrameMeta): void;
  /** The one consumer of frames from the peer (same lifetime rule as `send`). */
  onFrame(handler: (buf: Uint8Array, off: number, len: number, meta: FrameMeta) => void): void;
  /** Called once when the link goes away (peer gone, device closed). */
  onDown(handler: (reason: string) => void): void;
  close(): Promise<void>;
}

/** Netfront to the netvm. `connect` resolves once the backend is connected. */
export interface UplinkDevice {
  connect(signal: AbortSignal): Promise<EthernetLink>;
}

/** A client's link, connected: also what the toolstack said about the client. */
export interface ClientLink extends EthernetLink {
  /** The client's MAC (backend `mac`). */
  readonly clientMac: Uint8Array;
  /** The backend's `ip` key: the client's addresses, space separated (IPv4, maybe IPv6). */
  readonly ip: string;
}

/** A client vif that appeared in our backend directory (`backend/vif/<domid>/<handle>`). */
export interface ClientVif {
  /** `vif<domid>.<handle>`, for logs and stats. */
  readonly name: string;
  readonly domid: number;
  readonly handle: number;
  /**
   * The netback handshake with the client's netfront. It may never finish (a client that
   * stalls); the VM awaits it for this client only. Rejects when aborted or the vif goes away.
   */
  connect(signal: AbortSignal): Promise<ClientLink>;
}

/** The netback side: reports vifs as dom0 adds and removes them. */
export interface ClientBackend {
  start(listener: { added(vif: ClientVif): void; removed(vif: ClientVif): void }): Promise<void>;
  stop(): Promise<void>;
}

/** What the VM is given when it has no network device support (logged; the VM still runs its agents). */
export interface NetworkDevices {
  readonly uplink: UplinkDevice;
  readonly clients: ClientBackend;
}
