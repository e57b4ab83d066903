/**
 * A connected netfront's data path over pages we share with the backend (gntalloc): two
 * ring pages, 256 RX buffer pages granted writable (RX request i always posts page i & 255,
 * so the response in slot i is in page i & 255 whatever id the backend writes, as Linux's
 * xen-netfront.c assumes, torvalds/linux @ v6.1), and 256 TX pages granted read-only, one
 * per request id. Frames are written into TX pages directly (no staging copy); received
 * frames are copied out of the RX pages before anyone parses them, since the backend can
 * still write those pages.
 */
import type { GrantRef } from '@moat/xen';
import type { FrameListener, FrameMeta, NetifStats } from './device.ts';
import { FrontRing, type RingPage } from './ring.ts';
import {
  EXTRA_FLAGS,
  EXTRA_GSO_SIZE,
  EXTRA_GSO_TYPE,
  EXTRA_TYPE,
  encodeGsoExtra,
  MAX_EXTRA_SLOTS,
  MAX_FRAME,
  NETIF_RSP_NULL,
  NETRXF_csum_blank,
  NETRXF_data_validated,
  NETRXF_extra_info,
  NETRXF_more_data,
  NETTXF_csum_blank,
  NETTXF_data_validated,
  NETTXF_extra_info,
  NETTXF_more_data,
  NR_SLOTS_MIN,
  PAGE_SIZE,
  RX_SLOT_SIZE,
  RXREQ_GREF,
  RXREQ_ID,
  RXRSP_FLAGS,
  RXRSP_OFFSET,
  RXRSP_STATUS,
  TX_SLOT_SIZE,
  TXREQ_FLAGS,
  TXREQ_GREF,
  TXREQ_ID,
  TXREQ_OFFSET,
  TXREQ_SIZE,
  TXRSP_ID,
  TXRSP_STATUS,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_MAX,
  XEN_NETIF_EXTRA_TYPE_NONE,
  XEN_NETIF_GSO_TYPE_TCPV4,
  XEN_NETIF_GSO_TYPE_TCPV6,
} from './wire.ts';

/** What the backend offers. */
export interface BackendOffer {
  sg: boolean;
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
}

export type FrontResult = { ok: true; more: boolean } | { ok: false; reason: string };
const DONE: FrontResult = { ok: true, more: false };
const MORE: FrontResult = { ok: true, more: true };

export class NetfrontRings {
  readonly tx: FrontRing;
  readonly rx: FrontRing;
  private readonly txPages: Uint8Array;
  private readonly rxPages: Uint8Array;
  /** TX ids (= TX page numbers) not in flight. */
  private readonly freeIds: Uint16Array;
  private freeCount: number;
  private readonly inFlight: Uint8Array;
  /** Received frames are assembled here (a GSO frame plus one page of slack). */
  private readonly frame = new Uint8Array(MAX_FRAME + PAGE_SIZE);
  private readonly meta: FrameMeta = { csumBlank: false, dataValidated: false, gsoType: 0, gsoSize: 0 };

  constructor(
    txRing: RingPage,
    rxRing: RingPage,
    private readonly txRefs: readonly GrantRef[],
    txPages: ArrayBuffer,
    private readonly rxRefs: readonly GrantRef[],
    rxPages: ArrayBuffer,
    private readonly offer: BackendOffer,
    private readonly stats: NetifStats,
    private readonly listeners: ReadonlySet<FrameListener>,
  ) {
    this.tx = new FrontRing(txRing, TX_SLOT_SIZE);
    this.rx = new FrontRing(rxRing, RX_SLOT_SIZE);
    this.txPages = new Uint8Array(txPages);
    this.rxPages = new Uint8Array(rxPages);
    const n = txRefs.length;
    this.freeIds = new Uint16Array(n);
    this.inFlight = new Uint8Array(n);
    this.freeCount = 0;
    this.reset();
  }

  /** Fresh rings (SHARED_RING_INIT) and every TX id free. */
  reset(): void {
    this.tx.init();
    this.rx.init();
    const n = this.freeIds.length;
    for (let i = 0; i < n; i++) this.freeIds[i] = n - 1 - i;
    this.freeCount = n;
    this.inFlight.fill(0);
  }

  /** Posts every RX buffer (the ring starts full). */
  postAllRx(): void {
    const v = this.rx.view;
    while (this.rx.freeRequests() > 0) {
      const i = this.rx.reqProdPvt;
      const page = i & (this.rxRefs.length - 1);
      const at = this.rx.slot(i);
      v.setUint16(at + RXREQ_ID, page, true);
      v.setUint16(at + 2, 0, true);
      v.setUint32(at + RXREQ_GREF, this.rxRefs[page]!, true);
      this.rx.reqProdPvt = (i + 1) >>> 0;
    }
  }

  /**
   * Writes one frame's requests (not yet pushed). False when it cannot go: too big, GSO or
   * multi-slot the backend did not offer, or no free ids/slots (the backend is slow, or
   * never answers).
   */
  enqueue(buf: Uint8Array, off: number, len: number, meta: FrameMeta | undefined): boolean {
    if (len <= 0 || len > MAX_FRAME) return false;
    const dataSlots = Math.ceil(len / PAGE_SIZE);
    const gsoType = meta?.gsoType ?? 0;
    if (gsoType !== 0) {
      const ok =
        (gsoType === XEN_NETIF_GSO_TYPE_TCPV4 && this.offer.gsoTcpv4) ||
        (gsoType === XEN_NETIF_GSO_TYPE_TCPV6 && this.offer.gsoTcpv6);
      if (!ok || !(meta!.gsoSize > 0)) return false;
    }
    if ((dataSlots > 1 && !this.offer.sg) || dataSlots > NR_SLOTS_MIN) return false;
    const slots = dataSlots + (gsoType !== 0 ? 1 : 0);
    if (this.freeCount < dataSlots || this.tx.freeRequests() < slots) {
      const r = this.reapTx();
      if (!r.ok || this.freeCount < dataSlots || this.tx.freeRequests() < slots) return false;
    }
    const v = this.tx.view;
    let csum = 0;
    if (meta?.csumBlank) csum = NETTXF_csum_blank | NETTXF_data_validated;
    else if (meta?.dataValidated) csum = NETTXF_data_validated;
    let left = len;
    let src = off;
    for (let k = 0; k < slots; k++) {
      const idx = this.tx.reqProdPvt;
      const at = this.tx.slot(idx);
      this.tx.reqProdPvt = (idx + 1) >>> 0;
      if (gsoType !== 0 && k === 1) {
        encodeGsoExtra(v, at, gsoType, meta!.gsoSize);
        continue;
      }
      const id = this.freeIds[--this.freeCount]!;
      this.inFlight[id] = 1;
      const chunk = Math.min(left, PAGE_SIZE);
      this.txPages.set(buf.subarray(src, src + chunk), id * PAGE_SIZE);
      left -= chunk;
      src += chunk;
      let flags = left > 0 ? NETTXF_more_data : 0;
      if (k === 0) flags |= csum | (gsoType !== 0 ? NETTXF_extra_info : 0);
      v.setUint32(at + TXREQ_GREF, this.txRefs[id]!, true);
      v.setUint16(at + TXREQ_OFFSET, 0, true);
      v.setUint16(at + TXREQ_FLAGS, flags, true);
      v.setUint16(at + TXREQ_ID, id, true);
      v.setUint16(at + TXREQ_SIZE, k === 0 ? len : chunk, true);
    }
    if (gsoType !== 0) this.stats.gsoFrames++;
    this.stats.txFrames++;
    this.stats.txBytes += len;
    return true;
  }

  /** Frees the TX ids the backend answered. */
  reapTx(): FrontResult {
    const ring = this.tx;
    const v = ring.view;
    const n = ring.pendingResponses();
    if (n < 0) return { ok: false, reason: 'TX response index jumped beyond our requests' };
    for (let i = 0; i < n; i++) {
      const at = ring.slot(ring.rspCons + i);
      const status = v.getInt16(at + TXRSP_STATUS, true);
      if (status === NETIF_RSP_NULL) continue;
      const id = v.getUint16(at + TXRSP_ID, true);
      if (id >= this.inFlight.length || this.inFlight[id] === 0)
        return { ok: false, reason: `TX response for id ${id}, which is not in flight` };
      this.inFlight[id] = 0;
      this.freeIds[this.freeCount++] = id;
      if (status < 0) this.stats.txDropped++;
    }
    ring.rspCons = (ring.rspCons + n) >>> 0;
    return DONE;
  }

  /** Handles TX responses and RX responses; `more` when a final check found new work. */
  receive(): FrontResult {
    const t = this.reapTx();
    if (!t.ok) return t;
    const ring = this.rx;
    const v = ring.view;
    let pending = ring.pendingResponses();
    if (pending < 0) return { ok: false, reason: 'RX response index jumped beyond our requests' };
    const meta = this.meta;
    let consumed = 0;
    let waiting = false;
    while (pending > 0) {
      // ---- one packet: data slot, its extras, more data slots ----
      const start = ring.rspCons;
      let n = 0;
      let len = 0;
      let flags = 0;
      let dropped = false;
      meta.gsoType = 0;
      meta.gsoSize = 0;
      let complete = false;
      let firstFlags = 0;
      for (let data = 0; ; data++) {
        if (n >= pending) break;
        if (data >= NR_SLOTS_MIN)
          return { ok: false, reason: `RX packet chains more than ${NR_SLOTS_MIN} slots` };
        const idx = start + n;
        const at = ring.slot(idx);
        flags = v.getUint16(at + RXRSP_FLAGS, true);
        const status = v.getInt16(at + RXRSP_STATUS, true);
        const offset = v.getUint16(at + RXRSP_OFFSET, true);
        if (data === 0) firstFlags = flags;
        n++;
        if (status < 0) dropped = true;
        else if (offset + status > PAGE_SIZE)
          return { ok: false, reason: `RX slot crosses its page: offset ${offset} + size ${status}` };
        else if (len + status > MAX_FRAME) return { ok: false, reason: 'RX packet longer than 65535 bytes' };
        else {
          const page = idx & (this.rxRefs.length - 1);
          const from = page * PAGE_SIZE + offset;
          this.frame.set(this.rxPages.subarray(from, from + status), len);
          len += status;
        }
        if (data === 0 && flags & NETRXF_extra_info) {
          let more = true;
          let extras = 0;
          while (more) {
            if (n >= pending) break;
            if (++extras > MAX_EXTRA_SLOTS)
              return { ok: false, reason: `RX packet with more than ${MAX_EXTRA_SLOTS} extra-info slots` };
            const e = ring.slot(start + n);
            const type = v.getUint8(e + EXTRA_TYPE);
            more = (v.getUint8(e + EXTRA_FLAGS) & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
            if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX)
              return { ok: false, reason: `RX extra-info slot of unknown type ${type}` };
            if (type === XEN_NETIF_EXTRA_TYPE_GSO) {
              meta.gsoSize = v.getUint16(e + EXTRA_GSO_SIZE, true);
              meta.gsoType = v.getUint8(e + EXTRA_GSO_TYPE);
              if (meta.gsoType !== XEN_NETIF_GSO_TYPE_TCPV4 && meta.gsoType !== XEN_NETIF_GSO_TYPE_TCPV6)
                return { ok: false, reason: `RX GSO extra of unknown type ${meta.gsoType}` };
              if (meta.gsoSize === 0) return { ok: false, reason: 'RX GSO extra with MSS 0' };
            }
            n++;
          }
          if (more) break; // extras not all there yet
        }
        if (!(flags & NETRXF_more_data)) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        waiting = true; // the rest of the packet is not produced yet
        break;
      }
      ring.rspCons = (start + n) >>> 0;
      pending -= n;
      consumed += n;
      this.stats.slots += n;
      if (dropped || len === 0) {
        this.stats.rxDropped++;
        continue;
      }
      meta.csumBlank = (firstFlags & NETRXF_csum_blank) !== 0;
      meta.dataValidated = (firstFlags & NETRXF_data_validated) !== 0;
      if (meta.gsoType !== 0) this.stats.gsoFrames++;
      this.stats.rxFrames++;
      this.stats.rxBytes += len;
      for (const l of this.listeners) l(this.frame, 0, len, meta);
    }
    if (consumed > 0) this.postAllRx();
    if (waiting) return ring.waitForMoreResponses() ? MORE : DONE;
    return this.finalCheck();
  }

  private finalCheck(): FrontResult {
    const tx = this.tx.finalCheckResponses();
    const rx = this.rx.finalCheckResponses();
    if (tx < 0 || rx < 0) return { ok: false, reason: 'response index jumped beyond our requests' };
    return rx > 0 || tx > 0 ? MORE : DONE;
  }

  /** TX pages in flight (the backend has not answered). */
  get txInFlight(): number {
    return this.inFlight.length - this.freeCount;
  }
}
