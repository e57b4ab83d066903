/**
 * Fuzz target for the rings (`@moat/netif/fuzz`, `./moat fuzz netif`): generated TX/RX
 * requests (for netback) and TX/RX responses (for netfront), mostly well-formed and then
 * mutated (flipped flags, lying sizes and offsets, foreign grant refs, producer indexes that
 * jump), written into sim-shared ring pages and run through the sans-IO ring cores. Each
 * case must end in frames delivered or a named reason to cut the peer: never an exception,
 * a frame over 65535 bytes, a response to a request not consumed, or an index going back.
 * A case is reproduced from seed and iteration.
 */
import { type SimDomain, SimHypervisor } from '@moat/xen/sim';
import { emptyStats, type FrameListener } from './device.ts';
import { FrameQueue } from './frame-queue.ts';
import { NetbackRings, NetbackScratch } from './netback-rings.ts';
import { NetfrontRings } from './netfront-rings.ts';
import {
  encodeGsoExtra,
  encodeRxRequest,
  encodeRxResponse,
  encodeTxRequest,
  encodeTxResponse,
  MAX_FRAME,
  NETIF_RSP_NULL,
  NETRXF_extra_info,
  NETRXF_more_data,
  NETTXF_csum_blank,
  NETTXF_extra_info,
  NETTXF_more_data,
  PAGE_SIZE,
  RING_REQ_PROD,
  RING_RSP_PROD,
  RX_RING_SIZE,
  TX_RING_SIZE,
} from './wire.ts';

export interface NetifFuzzOptions {
  seed?: number;
  /** Stop after this long (default 10 s) ... */
  seconds?: number;
  /** ... or after this many cases per target. */
  iterations?: number;
  target?: 'netback' | 'netfront';
}

export interface NetifFuzzFinding {
  target: 'netback' | 'netfront';
  iteration: number;
  detail: string;
}

export interface NetifFuzzResult {
  target: 'netback' | 'netfront';
  seed: number;
  executions: number;
  seconds: number;
  /** Cases that ended in a reason to cut the peer, by reason (numbers stripped). */
  cuts: Record<string, number>;
  framesDelivered: number;
  findings: NetifFuzzFinding[];
}

/** xorshift32, seeded per case so any case is rebuilt from (seed, iteration). */
class Rng {
  private s: number;
  constructor(seed: number, iteration: number) {
    this.s = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(iteration + 1, 0xc2b2ae35)) >>> 0 || 1;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
}

const PAGES = 32;

/** One client domain sharing pages with one backend domain, and the ring cores over them. */
class Bench {
  readonly hv = new SimHypervisor();
  readonly back: SimDomain;
  readonly front: SimDomain;
  readonly stats = emptyStats();
  readonly listeners = new Set<FrameListener>();
  delivered = 0;
  bad: string | undefined;
  // netback side: the client's pages, the backend's mappings of its rings
  readonly clientTxRing;
  readonly clientRxRing;
  readonly clientTxPages;
  readonly clientRxPages;
  readonly netback: NetbackRings;
  readonly queue = new FrameQueue(1 << 20);
  // netfront side: our pages (the backend writes straight into them in this target)
  readonly netfront: NetfrontRings;
  readonly ourTxRing;
  readonly ourRxRing;

  constructor() {
    this.back = this.hv.createDomain({ name: 'back' });
    this.front = this.hv.createDomain({ name: 'front' });
    const sh = this.front.grantSharer;
    const be = this.back.domid;
    this.clientTxRing = sh.share(be, 1);
    this.clientRxRing = sh.share(be, 1);
    this.clientTxPages = sh.share(be, PAGES, { writable: false });
    this.clientRxPages = sh.share(be, PAGES);
    const txMap = this.back.grantMapper.mapWritable(this.front.domid, this.clientTxRing.refs);
    const rxMap = this.back.grantMapper.mapWritable(this.front.domid, this.clientRxRing.refs);
    this.listeners.add((_b, off, len, meta) => {
      this.delivered++;
      if (len < 0 || len > MAX_FRAME || off < 0) this.bad = `frame of ${len} bytes at ${off}`;
      if (meta.gsoType !== 0 && meta.gsoSize === 0) this.bad = 'GSO frame with MSS 0';
    });
    this.netback = new NetbackRings(
      txMap,
      rxMap,
      this.front.domid,
      { sg: true, gsoTcpv4: true, gsoTcpv6: true, ipv6CsumOffload: true, rxNotify: true, csumOffload: true },
      this.back.grantCopier,
      new NetbackScratch(),
      this.stats,
      this.listeners,
      () => undefined,
    );
    // For netfront the "backend" is the test itself writing into our shared ring pages.
    const fe = this.back.grantSharer;
    this.ourTxRing = fe.share(this.front.domid, 1);
    this.ourRxRing = fe.share(this.front.domid, 1);
    const txPages = fe.share(this.front.domid, TX_RING_SIZE, { writable: false });
    const rxPages = fe.share(this.front.domid, RX_RING_SIZE);
    this.netfront = new NetfrontRings(
      this.ourTxRing,
      this.ourRxRing,
      txPages.refs,
      txPages.buffer,
      rxPages.refs,
      rxPages.buffer,
      { sg: true, gsoTcpv4: true, gsoTcpv6: true },
      this.stats,
      this.listeners,
    );
  }
}

/** Writes a well-formed TX packet of `len` bytes at ring index `at`; returns its slot count. */
function writeTxPacket(b: Bench, rng: Rng, v: DataView, at: number, len: number): number {
  const gso = len > 1514 && rng.chance(0.5);
  let n = 0;
  let left = len;
  let first = true;
  while (left > 0 || first) {
    const offset = first ? rng.below(64) : 0;
    const size = Math.min(left, PAGE_SIZE - offset);
    left -= size;
    let flags = left > 0 ? NETTXF_more_data : 0;
    if (first) flags |= (gso ? NETTXF_extra_info : 0) | (rng.chance(0.5) ? NETTXF_csum_blank : 0);
    encodeTxRequest(v, slotTx(at + n), {
      gref: b.clientTxPages.refs[rng.below(PAGES)]!,
      offset,
      flags,
      id: (at + n) & 0xffff,
      size: first ? len : size,
    });
    n++;
    if (first && gso) {
      encodeGsoExtra(v, slotTx(at + n), 1 + rng.below(2), 536 + rng.below(1000));
      n++;
    }
    first = false;
  }
  return n;
}

function slotTx(i: number): number {
  return 64 + (i & 255) * 12;
}
function slotRx(i: number): number {
  return 64 + (i & 255) * 8;
}

/** Overwrites a few bytes, fields or indexes with junk. */
function mutate(rng: Rng, v: DataView, slotOf: (i: number) => number, slots: number): void {
  const count = 1 + rng.below(3);
  for (let k = 0; k < count; k++) {
    const at = slotOf(rng.below(Math.max(1, slots)));
    switch (rng.below(5)) {
      case 0:
        v.setUint8(at + rng.below(8), rng.below(256));
        break;
      case 1:
        v.setUint16(at + 2 * rng.below(4), rng.u32() & 0xffff, true);
        break;
      case 2:
        v.setUint32(at, rng.u32(), true);
        break;
      case 3:
        v.setUint16(at + 6, rng.below(32), true); // flags
        break;
      default:
        v.setUint32(rng.chance(0.5) ? 0 : 8, rng.u32(), true); // a producer index
    }
  }
}

function netbackCase(b: Bench, rng: Rng): string | undefined {
  b.netback.reset();
  b.queue.clear();
  const tx = new DataView(b.clientTxRing.buffer);
  const rx = new DataView(b.clientRxRing.buffer);
  new Uint8Array(b.clientTxRing.buffer).fill(0);
  new Uint8Array(b.clientRxRing.buffer).fill(0);
  let slots = 0;
  const packets = 1 + rng.below(8);
  for (let p = 0; p < packets && slots < 200; p++) {
    const len = rng.chance(0.2) ? 14 + rng.below(MAX_FRAME - 13) : 14 + rng.below(1600);
    slots += writeTxPacket(b, rng, tx, slots, len);
  }
  tx.setUint32(RING_REQ_PROD, slots, true);
  const posted = rng.below(RX_RING_SIZE + 1);
  for (let i = 0; i < posted; i++)
    encodeRxRequest(rx, slotRx(i), { id: i, gref: b.clientRxPages.refs[rng.below(PAGES)]! });
  rx.setUint32(RING_REQ_PROD, posted, true);
  if (rng.chance(0.7)) mutate(rng, tx, slotTx, slots);
  if (rng.chance(0.3)) mutate(rng, rx, slotRx, posted);
  const frames = rng.below(6);
  const src = new Uint8Array(MAX_FRAME);
  for (let f = 0; f < frames; f++) {
    const len = 1 + rng.below(rng.chance(0.3) ? MAX_FRAME : 2000);
    const gsoType = rng.chance(0.2) ? rng.below(4) : 0;
    b.queue.push(src, 0, len, {
      csumBlank: rng.chance(0.3),
      dataValidated: rng.chance(0.3),
      gsoType,
      gsoSize: rng.below(2000),
    });
  }
  for (let round = 0; round < 4; round++) {
    const before = b.netback.tx.rspProdPvt;
    const r = b.netback.receive();
    if (!r.ok) return r.reason;
    if (b.netback.tx.rspProdPvt !== b.netback.tx.reqCons) b.bad = 'TX requests consumed but not answered';
    if ((b.netback.tx.rspProdPvt - before) >>> 0 > TX_RING_SIZE) b.bad = 'answered more than a ring';
    // (A client may scribble over rsp_prod; we publish it whenever we answer something.)
    if (b.netback.tx.rspProdPvt !== before && tx.getUint32(RING_RSP_PROD, true) !== b.netback.tx.rspProdPvt)
      b.bad = 'TX rsp_prod not published';
    const t = b.netback.transmit(b.queue);
    if (!t.ok) return t.reason;
    if (b.netback.rx.rspProdPvt !== b.netback.rx.reqCons)
      b.bad = 'RX responses do not match consumed requests';
    if (!r.more && !t.more) break;
  }
  return undefined;
}

function netfrontCase(b: Bench, rng: Rng): string | undefined {
  const nf = b.netfront;
  nf.reset();
  nf.postAllRx();
  nf.rx.pushRequests();
  const src = new Uint8Array(MAX_FRAME);
  const sends = rng.below(10);
  for (let i = 0; i < sends; i++) {
    const len = 14 + rng.below(rng.chance(0.2) ? MAX_FRAME - 14 : 1600);
    const gso = len > 1514 && rng.chance(0.5);
    nf.enqueue(
      src,
      0,
      len,
      gso ? { csumBlank: true, dataValidated: true, gsoType: 1, gsoSize: 1448 } : undefined,
    );
  }
  nf.tx.pushRequests();
  const tx = new DataView(b.ourTxRing.buffer);
  const rx = new DataView(b.ourRxRing.buffer);
  // Answer TX (mostly correctly), produce RX packets (mostly well-formed).
  const reqs = nf.tx.reqProdPvt;
  for (let i = 0; i < reqs; i++) {
    const id = tx.getUint16(slotTx(i) + 8, true);
    const isExtra = i > 0 && (tx.getUint16(slotTx(i - 1) + 6, true) & NETTXF_extra_info) !== 0;
    encodeTxResponse(tx, slotTx(i), { id, status: isExtra ? NETIF_RSP_NULL : 0 });
  }
  let rsps = 0;
  const packets = rng.below(8);
  for (let p = 0; p < packets && rsps < 200; p++) {
    const len = 1 + rng.below(rng.chance(0.2) ? MAX_FRAME : 1600);
    let left = len;
    let first = true;
    const gso = len > 1514 && rng.chance(0.5);
    while (left > 0) {
      const size = Math.min(left, PAGE_SIZE);
      left -= size;
      let flags = left > 0 ? NETRXF_more_data : 0;
      if (first && gso) flags |= NETRXF_extra_info;
      encodeRxResponse(rx, slotRx(rsps), { id: rsps & 0xff, offset: 0, flags, status: size });
      rsps++;
      if (first && gso) {
        encodeGsoExtra(rx, slotRx(rsps), 1 + rng.below(2), 1448);
        rsps++;
      }
      first = false;
    }
  }
  if (rng.chance(0.7)) mutate(rng, rx, slotRx, rsps);
  if (rng.chance(0.3)) mutate(rng, tx, slotTx, reqs);
  tx.setUint32(RING_RSP_PROD, rng.chance(0.9) ? reqs : rng.u32(), true);
  rx.setUint32(RING_RSP_PROD, rsps, true);
  for (let round = 0; round < 4; round++) {
    const before = nf.rx.rspCons;
    const r = nf.receive();
    if (!r.ok) return r.reason;
    if ((nf.rx.rspCons - before) >>> 0 > RX_RING_SIZE) b.bad = 'consumed more than a ring';
    if (nf.rx.freeRequests() !== 0) b.bad = 'RX ring not kept full';
    if (!r.more) break;
  }
  return undefined;
}

/** Runs one target for `seconds` (or `iterations` cases). */
export function fuzzNetif(options: NetifFuzzOptions = {}): NetifFuzzResult {
  const target = options.target ?? 'netback';
  const seed = options.seed ?? 1;
  const b = new Bench();
  const start = performance.now();
  const deadline = start + (options.seconds ?? 10) * 1000;
  const result: NetifFuzzResult = {
    target,
    seed,
    executions: 0,
    seconds: 0,
    cuts: {},
    framesDelivered: 0,
    findings: [],
  };
  for (let i = 0; ; i++) {
    if (
      options.iterations !== undefined
        ? i >= options.iterations
        : (i & 63) === 0 && performance.now() > deadline
    )
      break;
    const rng = new Rng(seed, i);
    b.bad = undefined;
    try {
      const reason = target === 'netback' ? netbackCase(b, rng) : netfrontCase(b, rng);
      if (reason !== undefined) {
        const key = reason.replace(/[0-9]+/g, 'N');
        result.cuts[key] = (result.cuts[key] ?? 0) + 1;
      }
    } catch (error) {
      result.findings.push({
        target,
        iteration: i,
        detail: `threw ${(error as Error).stack ?? String(error)}`,
      });
    }
    if (b.bad !== undefined) result.findings.push({ target, iteration: i, detail: b.bad });
    result.executions++;
    if (result.findings.length >= 20) break;
  }
  result.framesDelivered = b.delivered;
  result.seconds = (performance.now() - start) / 1000;
  return result;
}
