/**
 * The Xen network protocol's layouts and constants, and nothing else: the shared ring page
 * (xen/include/public/io/ring.h), the TX/RX request and response slots and the extra-info
 * slot (xen/include/public/io/netif.h), the xenbus states (xen/include/public/io/xenbus.h)
 * and the xenstore keys both ends read and write (same headers; Linux
 * drivers/net/xen-netfront.c and drivers/net/xen-netback/xenbus.c). Sources: xen-project/xen
 * @ c447b7308b13, torvalds/linux @ v6.1.
 *
 * Hot paths read and write slots through the offsets below on a DataView; the reprs
 * (`TxRequest`, `RxResponse`...) with `decode*`/`encode*` are for tests, the fuzz target
 * and logs.
 */

export const PAGE_SIZE = 4096;

// ---- shared ring page (ring.h DEFINE_RING_TYPES / SHARED_RING_INIT) ----

/** Offsets in the shared ring page; indexes are free-running uint32. */
export const RING_REQ_PROD = 0;
export const RING_REQ_EVENT = 4;
export const RING_RSP_PROD = 8;
export const RING_RSP_EVENT = 12;
/** Where `ring[]` starts (after `pvt` and `__pad`). */
export const RING_ENTRIES = 64;

/** Slot size of the TX ring: the union of netif_tx_request (12) and netif_tx_response (4). */
export const TX_SLOT_SIZE = 12;
/** Slot size of the RX ring: netif_rx_request and netif_rx_response, both 8. */
export const RX_SLOT_SIZE = 8;

/** __RING_SIZE: (4096 - 64) / slot size, rounded down to a power of two: 256 for both. */
export function ringSize(slotSize: number): number {
  const n = Math.floor((PAGE_SIZE - RING_ENTRIES) / slotSize);
  return 2 ** Math.floor(Math.log2(n));
}
export const TX_RING_SIZE = ringSize(TX_SLOT_SIZE);
export const RX_RING_SIZE = ringSize(RX_SLOT_SIZE);

/** Byte offset of slot `index` (free-running) in a ring page. */
export function slotOffset(index: number, slotSize: number, size: number): number {
  return RING_ENTRIES + (index & (size - 1)) * slotSize;
}

/**
 * RING_PUSH_*_AND_CHECK_NOTIFY: after moving a producer index from `old` to `now`, the
 * peer wants an event iff its event index lies in (old, now] (uint32 arithmetic).
 */
export function needsNotify(old: number, now: number, event: number): boolean {
  return (now - event) >>> 0 < (now - old) >>> 0;
}

// ---- TX ring (frontend → backend) ----

/** netif_tx_request: gref u32 @0, offset u16 @4, flags u16 @6, id u16 @8, size u16 @10. */
export const TXREQ_GREF = 0;
export const TXREQ_OFFSET = 4;
export const TXREQ_FLAGS = 6;
export const TXREQ_ID = 8;
/** First slot of a packet: the whole packet's length; later slots: that fragment's length. */
export const TXREQ_SIZE = 10;

/** netif_tx_response: id u16 @0, status i16 @2. */
export const TXRSP_ID = 0;
export const TXRSP_STATUS = 2;

export const NETTXF_csum_blank = 0x1;
export const NETTXF_data_validated = 0x2;
export const NETTXF_more_data = 0x4;
export const NETTXF_extra_info = 0x8;

/** XEN_NETIF_MAX_TX_SIZE: the TX `size` field is 16 bits. */
export const MAX_TX_SIZE = 0xffff;

// ---- RX ring (backend → frontend) ----

/** netif_rx_request: id u16 @0, pad u16 @2, gref u32 @4. */
export const RXREQ_ID = 0;
export const RXREQ_GREF = 4;

/** netif_rx_response: id u16 @0, offset u16 @2, flags u16 @4, status i16 @6 (bytes, or < 0). */
export const RXRSP_ID = 0;
export const RXRSP_OFFSET = 2;
export const RXRSP_FLAGS = 4;
export const RXRSP_STATUS = 6;

/** Bits 0 and 1 are swapped relative to the TX flags (netif.h; mirage-net-xen flags.ml). */
export const NETRXF_data_validated = 0x1;
export const NETRXF_csum_blank = 0x2;
export const NETRXF_more_data = 0x4;
export const NETRXF_extra_info = 0x8;
export const NETRXF_gso_prefix = 0x10;

export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
/** The response to an extra-info slot. */
export const NETIF_RSP_NULL = 1;

/**
 * XEN_NETIF_NR_SLOTS_MIN: packets of this many slots must be accepted; Linux netfront never
 * sends more (it linearises beyond MAX_SKB_FRAGS + 1). We refuse longer chains as hostile.
 */
export const NR_SLOTS_MIN = 18;
/** Extra-info slots a packet may chain (one per type at most: GSO, MCAST_ADD/DEL, HASH). */
export const MAX_EXTRA_SLOTS = 4;

// ---- extra info (one TX request slot or one RX response slot) ----

/** netif_extra_info: type u8 @0, flags u8 @1, then per type (GSO: size u16 @2, type u8 @4, pad @5, features u16 @6). */
export const EXTRA_TYPE = 0;
export const EXTRA_FLAGS = 1;
export const EXTRA_GSO_SIZE = 2;
export const EXTRA_GSO_TYPE = 4;
export const EXTRA_GSO_FEATURES = 6;

export const XEN_NETIF_EXTRA_TYPE_NONE = 0;
export const XEN_NETIF_EXTRA_TYPE_GSO = 1;
export const XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2;
export const XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3;
export const XEN_NETIF_EXTRA_TYPE_HASH = 4;
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;
export const XEN_NETIF_EXTRA_FLAG_MORE = 0x1;

export const XEN_NETIF_GSO_TYPE_NONE = 0;
export const XEN_NETIF_GSO_TYPE_TCPV4 = 1;
export const XEN_NETIF_GSO_TYPE_TCPV6 = 2;

// ---- Ethernet sizes the rings care about ----

export const ETH_HLEN = 14;
/** Largest frame we carry (a 64 KiB GSO segment plus its Ethernet header fits the 16-bit size). */
export const MAX_FRAME = MAX_TX_SIZE;
/** Slots a frame of `length` bytes needs at offset 0 of each page. */
export function slotsFor(length: number): number {
  return Math.max(1, Math.ceil(length / PAGE_SIZE));
}

// ---- xenbus (xenbus.h enum xenbus_state) ----

export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  InitWait: 2,
  Initialised: 3,
  Connected: 4,
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
export type XenbusStateValue = (typeof XenbusState)[keyof typeof XenbusState];

/** Parses a `state` node; undefined for anything that is not a decimal state 0-8. */
export function parseXenbusState(text: string | undefined): XenbusStateValue | undefined {
  if (text === undefined || !/^[0-8]$/.test(text.trim())) return undefined;
  return Number(text.trim()) as XenbusStateValue;
}

// ---- xenstore keys ----

/** Keys in the frontend's `device/vif/<devid>` directory. */
export const FrontendKey = {
  backend: 'backend',
  backendId: 'backend-id',
  handle: 'handle',
  mac: 'mac',
  mtu: 'mtu',
  state: 'state',
  txRingRef: 'tx-ring-ref',
  rxRingRef: 'rx-ring-ref',
  eventChannel: 'event-channel',
  eventChannelTx: 'event-channel-tx',
  eventChannelRx: 'event-channel-rx',
  requestRxCopy: 'request-rx-copy',
  featureRxNotify: 'feature-rx-notify',
  featureSg: 'feature-sg',
  featureGsoTcpv4: 'feature-gso-tcpv4',
  featureGsoTcpv6: 'feature-gso-tcpv6',
  featureIpv6CsumOffload: 'feature-ipv6-csum-offload',
  featureNoCsumOffload: 'feature-no-csum-offload',
  multiQueueNumQueues: 'multi-queue-num-queues',
} as const;

/** Keys in the backend's `backend/vif/<frontend-domid>/<devid>` directory. */
export const BackendKey = {
  frontend: 'frontend',
  frontendId: 'frontend-id',
  handle: 'handle',
  mac: 'mac',
  mtu: 'mtu',
  online: 'online',
  state: 'state',
  hotplugStatus: 'hotplug-status',
  featureRxCopy: 'feature-rx-copy',
  featureRxFlip: 'feature-rx-flip',
  featureSg: 'feature-sg',
  featureGsoTcpv4: 'feature-gso-tcpv4',
  featureGsoTcpv6: 'feature-gso-tcpv6',
  featureIpv6CsumOffload: 'feature-ipv6-csum-offload',
  featureSplitEventChannels: 'feature-split-event-channels',
  multiQueueMaxQueues: 'multi-queue-max-queues',
} as const;

/** libxl waits for this value of the backend's `hotplug-status` before the domain runs. */
export const HOTPLUG_CONNECTED = 'connected';
/** Ethernet MTU when the toolstack wrote none (libxl's default). */
export const DEFAULT_MTU = 1500;

export function backendPath(backendDomid: number, frontendDomid: number, devid: number): string {
  return `/local/domain/${backendDomid}/backend/vif/${frontendDomid}/${devid}`;
}
export function frontendPath(frontendDomid: number, devid: number): string {
  return `/local/domain/${frontendDomid}/device/vif/${devid}`;
}

// ---- reprs (tests, fuzz, logs) ----

export interface TxRequest {
  gref: number;
  offset: number;
  flags: number;
  id: number;
  size: number;
}
export interface TxResponse {
  id: number;
  status: number;
}
export interface RxRequest {
  id: number;
  gref: number;
}
export interface RxResponse {
  id: number;
  offset: number;
  flags: number;
  status: number;
}
export type ExtraInfo =
  | { type: typeof XEN_NETIF_EXTRA_TYPE_GSO; more: boolean; size: number; gsoType: number; features: number }
  | { type: number; more: boolean };

export function decodeTxRequest(v: DataView, at: number): TxRequest {
  return {
    gref: v.getUint32(at + TXREQ_GREF, true),
    offset: v.getUint16(at + TXREQ_OFFSET, true),
    flags: v.getUint16(at + TXREQ_FLAGS, true),
    id: v.getUint16(at + TXREQ_ID, true),
    size: v.getUint16(at + TXREQ_SIZE, true),
  };
}
export function encodeTxRequest(v: DataView, at: number, r: TxRequest): void {
  v.setUint32(at + TXREQ_GREF, r.gref >>> 0, true);
  v.setUint16(at + TXREQ_OFFSET, r.offset & 0xffff, true);
  v.setUint16(at + TXREQ_FLAGS, r.flags & 0xffff, true);
  v.setUint16(at + TXREQ_ID, r.id & 0xffff, true);
  v.setUint16(at + TXREQ_SIZE, r.size & 0xffff, true);
}
export function decodeTxResponse(v: DataView, at: number): TxResponse {
  return { id: v.getUint16(at + TXRSP_ID, true), status: v.getInt16(at + TXRSP_STATUS, true) };
}
export function encodeTxResponse(v: DataView, at: number, r: TxResponse): void {
  v.setUint16(at + TXRSP_ID, r.id & 0xffff, true);
  v.setInt16(at + TXRSP_STATUS, r.status, true);
}
export function decodeRxRequest(v: DataView, at: number): RxRequest {
  return { id: v.getUint16(at + RXREQ_ID, true), gref: v.getUint32(at + RXREQ_GREF, true) };
}
export function encodeRxRequest(v: DataView, at: number, r: RxRequest): void {
  v.setUint16(at + RXREQ_ID, r.id & 0xffff, true);
  v.setUint16(at + 2, 0, true);
  v.setUint32(at + RXREQ_GREF, r.gref >>> 0, true);
}
export function decodeRxResponse(v: DataView, at: number): RxResponse {
  return {
    id: v.getUint16(at + RXRSP_ID, true),
    offset: v.getUint16(at + RXRSP_OFFSET, true),
    flags: v.getUint16(at + RXRSP_FLAGS, true),
    status: v.getInt16(at + RXRSP_STATUS, true),
  };
}
export function encodeRxResponse(v: DataView, at: number, r: RxResponse): void {
  v.setUint16(at + RXRSP_ID, r.id & 0xffff, true);
  v.setUint16(at + RXRSP_OFFSET, r.offset & 0xffff, true);
  v.setUint16(at + RXRSP_FLAGS, r.flags & 0xffff, true);
  v.setInt16(at + RXRSP_STATUS, r.status, true);
}
export function decodeExtraInfo(v: DataView, at: number): ExtraInfo {
  const type = v.getUint8(at + EXTRA_TYPE);
  const more = (v.getUint8(at + EXTRA_FLAGS) & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
  if (type === XEN_NETIF_EXTRA_TYPE_GSO)
    return {
      type,
      more,
      size: v.getUint16(at + EXTRA_GSO_SIZE, true),
      gsoType: v.getUint8(at + EXTRA_GSO_TYPE),
      features: v.getUint16(at + EXTRA_GSO_FEATURES, true),
    };
  return { type, more };
}
/** Writes a GSO extra-info slot (8 bytes). */
export function encodeGsoExtra(v: DataView, at: number, gsoType: number, mss: number, more = false): void {
  v.setUint8(at + EXTRA_TYPE, XEN_NETIF_EXTRA_TYPE_GSO);
  v.setUint8(at + EXTRA_FLAGS, more ? XEN_NETIF_EXTRA_FLAG_MORE : 0);
  v.setUint16(at + EXTRA_GSO_SIZE, mss & 0xffff, true);
  v.setUint8(at + EXTRA_GSO_TYPE, gsoType & 0xff);
  v.setUint8(at + 5, 0);
  v.setUint16(at + EXTRA_GSO_FEATURES, 0, true);
}
