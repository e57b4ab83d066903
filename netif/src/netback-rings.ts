/**
 * A connected netback device's data path, sans-IO over a GrantCopier and two mapped ring
 * pages: the client's TX ring (its frames to us) and its RX ring (its empty buffers for our
 * frames). Everything the client wrote is read once into locals, checked, and only then
 * used; a violation returns a reason and the device ends the connection.
 *
 * Facts from xen/include/public/io/netif.h (xen-project/xen @ c447b7308b13) and the
 * behaviour of Linux's drivers/net/xen-netback/netback.c and rx.c (torvalds/linux @ v6.1):
 * the first TX slot's size is the whole packet, extras follow the first slot, every request
 * slot gets a response (NETIF_RSP_NULL for extras); RX responses sit in the slot of the
 * request they consumed, GSO extra right after the first data slot.
 */
import type { DomainId, GrantCopier, GrantCopySegment } from '@moat/xen';
import { completeChecksum, isIpv6 } from './checksum.ts';
import type { FrameListener, FrameMeta, NetifStats } from './device.ts';
import type { FrameQueue } from './frame-queue.ts';
import { BackRing, type RingPage } from './ring.ts';
import {
  ETH_HLEN,
  EXTRA_FLAGS,
  EXTRA_GSO_SIZE,
  EXTRA_GSO_TYPE,
  EXTRA_TYPE,
  encodeGsoExtra,
  MAX_EXTRA_SLOTS,
  NETIF_RSP_ERROR,
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
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
  RXRSP_ID,
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

/** What the frontend asked for in xenstore. */
export interface FrontendFeatures {
  sg: boolean;
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
  ipv6CsumOffload: boolean;
  rxNotify: boolean;
  /** False when the frontend wrote `feature-no-csum-offload = 1`. */
  csumOffload: boolean;
}

/** A batch's worth of bytes and slots, shared by every device of a service (used synchronously). */
export class NetbackScratch {
  /** Client frames of one batch, back to back (a full TX ring of full pages). */
  readonly batch = new Uint8Array(256 * PAGE_SIZE);
  readonly fromGrant: Extract<GrantCopySegment, { direction: 'from-grant' }>[] = [];
  readonly toGrant: Extract<GrantCopySegment, { direction: 'to-grant' }>[] = [];
  readonly fromWork: GrantCopySegment[] = [];
  readonly toWork: GrantCopySegment[] = [];
  /** Per TX slot of a batch: request id and response status. */
  readonly slotIds = new Uint16Array(256);
  readonly slotStatus = new Int16Array(256);
  /** Per packet of a batch: where it starts in `batch`, length, first segment, segments, flags. */
  readonly pktOff = new Int32Array(256);
  readonly pktLen = new Int32Array(256);
  readonly pktSeg = new Int32Array(256);
  readonly pktSegs = new Int32Array(256);
  readonly pktFlags = new Uint16Array(256);
  readonly pktGsoType = new Uint8Array(256);
  readonly pktGsoSize = new Uint16Array(256);
  /** Per RX response of a batch: slot index, id, flags, status, and whether it is a GSO extra. */
  readonly rxIdx = new Uint32Array(256);
  readonly rxId = new Uint16Array(256);
  readonly rxFlags = new Uint16Array(256);
  readonly rxStatus = new Int16Array(256);
  readonly rxGsoType = new Uint8Array(256);
  readonly rxGsoSize = new Uint16Array(256);
  readonly meta: FrameMeta = { csumBlank: false, dataValidated: false, gsoType: 0, gsoSize: 0 };

  constructor() {
    const empty = new Uint8Array(0);
    for (let i = 0; i < 256; i++) {
      this.fromGrant.push({
        direction: 'from-grant',
        domain: 0,
        ref: 0,
        offset: 0,
        length: 0,
        target: this.batch,
        targetOffset: 0,
      });
      this.toGrant.push({
        direction: 'to-grant',
        domain: 0,
        ref: 0,
        offset: 0,
        length: 0,
        source: empty,
        sourceOffset: 0,
      });
    }
  }
}

/** Per-slot work limits: one ring's worth per turn, then other clients get theirs. */
const TX_BUDGET_SLOTS = 256;

export type RingsResult = { ok: true; more: boolean } | { ok: false; reason: string };
const OK_DONE: RingsResult = { ok: true, more: false };
const OK_MORE: RingsResult = { ok: true, more: true };

export class NetbackRings {
  readonly tx: BackRing;
  readonly rx: BackRing;
  private readonly txView: DataView;
  private readonly rxView: DataView;

  constructor(
    txPage: RingPage,
    rxPage: RingPage,
    private readonly frontend: DomainId,
    private readonly features: FrontendFeatures,
    private readonly copier: GrantCopier,
    private readonly scratch: NetbackScratch,
    private readonly stats: NetifStats,
    private readonly listeners: ReadonlySet<FrameListener>,
    private readonly notify: () => void,
  ) {
    this.tx = new BackRing(txPage, TX_SLOT_SIZE);
    this.rx = new BackRing(rxPage, RX_SLOT_SIZE);
    this.txView = this.tx.view;
    this.rxView = this.rx.view;
  }

  /** Attaches to both rings where they stand; false when the frontend's indexes are impossible. */
  attach(): boolean {
    return this.tx.attach() && this.rx.attach();
  }

  /** Fresh ring indexes (the fuzz target reuses one pair of pages for many cases). */
  reset(): void {
    this.tx.reset();
    this.rx.reset();
  }

  /**
   * Takes the client's TX requests (at most one ring's worth), copies their data with one
   * grant-copy call, answers every slot, and hands the frames to the listeners. `more`: work
   * is left for another turn.
   */
  receive(): RingsResult {
    const s = this.scratch;
    const ring = this.tx;
    const v = this.txView;
    let pending = ring.pendingRequests();
    if (pending < 0) return fail(`TX request index jumped: req_prod beyond one ring ahead of our responses`);
    let slots = 0;
    let packets = 0;
    let segs = 0;
    let bytes = 0;
    let budgetLeft = true;
    let waitForSlots = false;
    parse: while (pending > 0) {
      if (slots >= TX_BUDGET_SLOTS) {
        budgetLeft = false;
        break;
      }
      // ---- parse one packet; nothing is consumed unless all its slots are there ----
      const start = ring.reqCons;
      let at = ring.slot(start);
      const firstFlags = v.getUint16(at + TXREQ_FLAGS, true);
      const total = v.getUint16(at + TXREQ_SIZE, true);
      let n = 1; // slots of this packet so far
      let gsoType = 0;
      let gsoSize = 0;
      if (firstFlags & NETTXF_extra_info) {
        let more = true;
        let extras = 0;
        while (more) {
          if (n >= pending) {
            waitForSlots = true;
            break parse;
          }
          if (++extras > MAX_EXTRA_SLOTS)
            return fail(`TX packet with more than ${MAX_EXTRA_SLOTS} extra-info slots`);
          const e = ring.slot(start + n);
          const type = v.getUint8(e + EXTRA_TYPE);
          more = (v.getUint8(e + EXTRA_FLAGS) & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
          if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX)
            return fail(`TX extra-info slot of unknown type ${type}`);
          if (type === XEN_NETIF_EXTRA_TYPE_GSO) {
            gsoSize = v.getUint16(e + EXTRA_GSO_SIZE, true);
            gsoType = v.getUint8(e + EXTRA_GSO_TYPE);
            if (gsoType !== XEN_NETIF_GSO_TYPE_TCPV4 && gsoType !== XEN_NETIF_GSO_TYPE_TCPV6)
              return fail(`TX GSO extra of unknown type ${gsoType}`);
            if (gsoSize === 0) return fail('TX GSO extra with MSS 0');
          }
          n++;
        }
      }
      // Data slots: the first, then (after the extras) each one its predecessor flagged
      // more_data; data slot d >= 1 sits at start + dataStart + d - 1.
      const dataStart = n;
      let flags = firstFlags;
      let dataSlots = 1;
      while (flags & NETTXF_more_data) {
        if (dataSlots >= NR_SLOTS_MIN) return fail(`TX packet chains more than ${NR_SLOTS_MIN} slots`);
        const next = dataStart + dataSlots - 1;
        if (next >= pending) {
          waitForSlots = true;
          break parse;
        }
        flags = v.getUint16(ring.slot(start + next) + TXREQ_FLAGS, true);
        dataSlots++;
      }
      n = dataStart + dataSlots - 1;
      if (slots + n > s.slotIds.length) break; // next turn
      // ---- check sizes and offsets, record segments ----
      if (bytes + total > s.batch.length) break;
      let rest = 0;
      for (let d = 1; d < dataSlots; d++)
        rest += v.getUint16(ring.slot(start + dataStart + d - 1) + TXREQ_SIZE, true);
      if (rest > total)
        return fail(`TX slots claim ${rest} bytes after the first, more than the packet's ${total}`);
      const pkt = packets;
      s.pktOff[pkt] = bytes;
      s.pktLen[pkt] = total;
      s.pktSeg[pkt] = segs;
      s.pktFlags[pkt] = firstFlags;
      s.pktGsoType[pkt] = gsoType;
      s.pktGsoSize[pkt] = gsoSize;
      let into = bytes;
      for (let k = 0; k < n; k++) {
        at = ring.slot(start + k);
        s.slotIds[slots + k] = v.getUint16(at + TXREQ_ID, true);
        s.slotStatus[slots + k] = k > 0 && k < dataStart ? NETIF_RSP_NULL : NETIF_RSP_OKAY;
        if (k > 0 && k < dataStart) continue;
        const gref = v.getUint32(at + TXREQ_GREF, true);
        const offset = v.getUint16(at + TXREQ_OFFSET, true);
        const size = k === 0 ? total - rest : v.getUint16(at + TXREQ_SIZE, true);
        if (offset + size > PAGE_SIZE)
          return fail(`TX slot crosses its page: offset ${offset} + size ${size} > ${PAGE_SIZE}`);
        if (size === 0) continue;
        const seg = s.fromGrant[segs]!;
        seg.domain = this.frontend;
        seg.ref = gref;
        seg.offset = offset;
        seg.length = size;
        seg.targetOffset = into;
        s.fromWork[segs] = seg;
        segs++;
        into += size;
      }
      s.pktSegs[pkt] = segs - s.pktSeg[pkt]!;
      if (total < ETH_HLEN) {
        // Linux netback drops (not fatal) packets shorter than an Ethernet header.
        for (let k = 0; k < n; k++)
          if (s.slotStatus[slots + k] === NETIF_RSP_OKAY) s.slotStatus[slots + k] = NETIF_RSP_ERROR;
        segs = s.pktSeg[pkt]!;
        s.pktLen[pkt] = -1;
        this.stats.rxDropped++;
      } else {
        bytes += total;
      }
      packets++;
      slots += n;
      ring.reqCons = (start + n) >>> 0;
      pending -= n;
      if (pending === 0) {
        pending = ring.pendingRequests();
        if (pending < 0)
          return fail('TX request index jumped: req_prod beyond one ring ahead of our responses');
      }
    }
    if (slots === 0) return waitForSlots ? this.waitForMoreRequests() : this.sleepTx(budgetLeft);
    // ---- one grant copy for the batch ----
    if (segs > 0) {
      s.fromWork.length = segs;
      let status: Int16Array;
      try {
        status = this.copier.copy(s.fromWork);
      } catch (error) {
        return fail(`grant copy of TX data failed: ${(error as Error).message}`);
      }
      this.stats.copyBatches++;
      for (let i = 0; i < segs; i++)
        if (status[i] !== 0)
          return fail(`TX grant ref ${s.fromWork[i]!.ref} refused by Xen (status ${status[i]})`);
    }
    // ---- answer every slot, then hand over the frames ----
    const rv = this.txView;
    let idx = ring.rspProdPvt;
    for (let i = 0; i < slots; i++, idx++) {
      const r = ring.slot(idx);
      rv.setUint16(r + TXRSP_ID, s.slotIds[i]!, true);
      rv.setInt16(r + TXRSP_STATUS, s.slotStatus[i]!, true);
    }
    ring.rspProdPvt = idx >>> 0;
    this.stats.slots += slots;
    if (ring.pushResponses()) this.notify();
    const meta = s.meta;
    for (let p = 0; p < packets; p++) {
      const len = s.pktLen[p]!;
      if (len < 0) continue;
      const f = s.pktFlags[p]!;
      meta.csumBlank = (f & NETTXF_csum_blank) !== 0;
      meta.dataValidated = (f & NETTXF_data_validated) !== 0;
      meta.gsoType = s.pktGsoType[p]!;
      meta.gsoSize = s.pktGsoSize[p]!;
      if (meta.gsoType !== 0) this.stats.gsoFrames++;
      this.stats.rxFrames++;
      this.stats.rxBytes += len;
      for (const l of this.listeners) l(s.batch, s.pktOff[p]!, len, meta);
    }
    if (!budgetLeft) return OK_MORE;
    return waitForSlots ? this.waitForMoreRequests() : this.sleepTx(true);
  }

  /**
   * The next packet's last slots are not produced yet (Linux netback waits for them too):
   * ask for an event at the next request and sleep. A chain that never completes stalls
   * only this client.
   */
  private waitForMoreRequests(): RingsResult {
    return this.tx.waitForMoreRequests() ? OK_MORE : OK_DONE;
  }

  private sleepTx(budgetLeft: boolean): RingsResult {
    if (!budgetLeft) return OK_MORE;
    const n = this.tx.finalCheckRequests();
    if (n < 0) return fail('TX request index jumped: req_prod beyond one ring ahead of our responses');
    return n > 0 ? OK_MORE : OK_DONE;
  }

  /**
   * Moves queued frames into the client's posted RX buffers: one grant-copy call for all of
   * them, responses in the slots of the requests they used. Frames the client cannot take
   * (too big without sg, GSO it did not ask for) are dropped and counted; frames waiting
   * for buffers stay queued, and we ask for an event when enough are posted.
   */
  transmit(queue: FrameQueue): RingsResult {
    const s = this.scratch;
    const ring = this.rx;
    const v = this.rxView;
    const f = this.features;
    let segs = 0;
    let rsps = 0;
    let waiting = false;
    let avail = ring.pendingRequests();
    if (avail < 0) return fail('RX request index jumped: req_prod beyond one ring ahead of our responses');
    while (queue.length > 0) {
      const len = queue.peekLength();
      const off = queue.peekOffset();
      const gsoType = queue.peekGsoType();
      const gso =
        gsoType !== 0 &&
        ((gsoType === XEN_NETIF_GSO_TYPE_TCPV4 && f.gsoTcpv4) ||
          (gsoType === XEN_NETIF_GSO_TYPE_TCPV6 && f.gsoTcpv6));
      const dataSlots = Math.ceil(len / PAGE_SIZE);
      if ((dataSlots > 1 && !f.sg) || (gsoType !== 0 && !gso) || dataSlots > NR_SLOTS_MIN) {
        queue.pop();
        this.stats.txDropped++;
        continue;
      }
      const need = dataSlots + (gso ? 1 : 0);
      if (need > s.rxIdx.length - rsps || segs + dataSlots > s.toGrant.length) break;
      if (avail < need) {
        avail = ring.pendingRequests();
        if (avail < 0)
          return fail('RX request index jumped: req_prod beyond one ring ahead of our responses');
        if (avail < need) {
          // Ask for an event once the client has posted enough buffers (it notifies on
          // posting when it wrote feature-rx-notify), then look once more.
          ring.waitForRequests(need);
          avail = ring.pendingRequests();
          if (avail < 0)
            return fail('RX request index jumped: req_prod beyond one ring ahead of our responses');
          if (avail < need) {
            waiting = true;
            break;
          }
        }
      }
      let csumFlags = 0;
      if (queue.peekCsumBlank()) {
        const ipv6 = isIpv6(queue.store, off, len);
        if (!f.csumOffload || (ipv6 && !f.ipv6CsumOffload)) {
          // It cannot take a partial checksum: complete it here (our own copy of the frame).
          if (gso || !completeChecksum(queue.store, off, len)) {
            queue.pop();
            this.stats.txDropped++;
            continue;
          }
          csumFlags = NETRXF_data_validated;
        } else csumFlags = NETRXF_csum_blank | NETRXF_data_validated;
      } else if (queue.peekDataValidated()) csumFlags = NETRXF_data_validated;
      let left = len;
      let src = off;
      for (let k = 0; k < need; k++) {
        const idx = ring.reqCons;
        const at = ring.slot(idx);
        const id = v.getUint16(at + RXREQ_ID, true);
        const gref = v.getUint32(at + RXREQ_GREF, true);
        ring.reqCons = (idx + 1) >>> 0;
        s.rxIdx[rsps] = idx;
        s.rxId[rsps] = id;
        if (gso && k === 1) {
          s.rxGsoType[rsps] = gsoType;
          s.rxGsoSize[rsps] = queue.peekGsoSize();
          s.rxStatus[rsps] = NETIF_RSP_NULL;
          s.rxFlags[rsps] = 0xffff; // marks the extra-info slot
          rsps++;
          continue;
        }
        const chunk = Math.min(left, PAGE_SIZE);
        const seg = s.toGrant[segs]!;
        seg.domain = this.frontend;
        seg.ref = gref;
        seg.offset = 0;
        seg.length = chunk;
        seg.source = queue.store;
        seg.sourceOffset = src;
        s.toWork[segs] = seg;
        segs++;
        left -= chunk;
        src += chunk;
        let flags = left > 0 ? NETRXF_more_data : 0;
        if (k === 0) flags |= csumFlags | (gso ? NETRXF_extra_info : 0);
        s.rxFlags[rsps] = flags;
        s.rxStatus[rsps] = chunk;
        rsps++;
      }
      avail -= need;
      if (gso) this.stats.gsoFrames++;
      this.stats.txFrames++;
      this.stats.txBytes += len;
      queue.pop();
    }
    if (rsps === 0) return OK_DONE;
    const more = !waiting && queue.length > 0;
    if (segs > 0) {
      s.toWork.length = segs;
      let status: Int16Array;
      try {
        status = this.copier.copy(s.toWork);
      } catch (error) {
        return fail(`grant copy into RX buffers failed: ${(error as Error).message}`);
      }
      this.stats.copyBatches++;
      for (let i = 0; i < segs; i++)
        if (status[i] !== 0)
          return fail(`RX grant ref ${s.toWork[i]!.ref} refused by Xen (status ${status[i]})`);
    }
    for (let i = 0; i < rsps; i++) {
      const at = ring.slot(s.rxIdx[i]!);
      if (s.rxFlags[i] === 0xffff) {
        encodeGsoExtra(v, at, s.rxGsoType[i]!, s.rxGsoSize[i]!);
        continue;
      }
      v.setUint16(at + RXRSP_ID, s.rxId[i]!, true);
      v.setUint16(at + RXRSP_OFFSET, 0, true);
      v.setUint16(at + RXRSP_FLAGS, s.rxFlags[i]!, true);
      v.setInt16(at + RXRSP_STATUS, s.rxStatus[i]!, true);
    }
    ring.rspProdPvt = (ring.rspProdPvt + rsps) >>> 0;
    this.stats.slots += rsps;
    if (ring.pushResponses()) this.notify();
    return more ? OK_MORE : OK_DONE;
  }
}

function fail(reason: string): RingsResult {
  return { ok: false, reason };
}
