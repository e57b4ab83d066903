/**
 * The shared ring's index discipline (xen/include/public/io/ring.h, xen-project/xen @
 * c447b7308b13): free-running uint32 indexes, producer pushes with a release store and
 * notifies only when the peer's event index lies in what was just pushed, consumer sets
 * its event index to `cons + 1` and re-checks before sleeping (RING_FINAL_CHECK_FOR_*).
 * Slots are read and written by the users through `view` at `slot(i)`.
 *
 * Every index the peer writes is checked: a producer index more than a ring ahead of what
 * we answered (RING_REQUEST_PROD_OVERFLOW / RING_RESPONSE_PROD_OVERFLOW) is a broken or
 * hostile peer and is returned as -1, never acted on.
 */
import {
  RING_ENTRIES,
  RING_REQ_EVENT,
  RING_REQ_PROD,
  RING_RSP_EVENT,
  RING_RSP_PROD,
  ringSize,
} from './wire.ts';

/** A ring page: WritableMapping (backend) and SharedPages (frontend) both are one. */
export interface RingPage {
  readonly buffer: ArrayBuffer;
  loadAcquire32(offset: number): number;
  storeRelease32(offset: number, value: number): void;
}

abstract class RingEnd {
  readonly size: number;
  readonly mask: number;
  readonly view: DataView;
  readonly bytes: Uint8Array;

  constructor(
    readonly page: RingPage,
    readonly slotSize: number,
  ) {
    this.size = ringSize(slotSize);
    this.mask = this.size - 1;
    this.view = new DataView(page.buffer, 0, 4096);
    this.bytes = new Uint8Array(page.buffer, 0, 4096);
  }

  /** Byte offset of slot `index` in the page. */
  slot(index: number): number {
    return RING_ENTRIES + (index & this.mask) * this.slotSize;
  }
}

/** The backend's end: consumes requests, produces responses. */
export class BackRing extends RingEnd {
  reqCons = 0;
  rspProdPvt = 0;
  /** The last `rsp_prod` we published. */
  private rspPushed = 0;

  /**
   * BACK_RING_ATTACH, as Linux netback does since it can be restarted under a live frontend
   * (drivers/net/xen-netback/netback.c, xenvif_map_frontend_data_rings, torvalds/linux @
   * v6.1): start where the previous backend's responses ended. False when the frontend's
   * `req_prod` is more than a ring past that.
   */
  attach(): boolean {
    const rsp = this.page.loadAcquire32(RING_RSP_PROD);
    const req = this.page.loadAcquire32(RING_REQ_PROD);
    this.reqCons = rsp;
    this.rspProdPvt = rsp;
    this.rspPushed = rsp;
    return (req - rsp) >>> 0 <= this.size;
  }

  /** Back to a fresh ring (the fuzz target reuses one page for many cases). */
  reset(): void {
    this.reqCons = 0;
    this.rspProdPvt = 0;
    this.rspPushed = 0;
  }

  /**
   * Requests the frontend has produced that we have not consumed, or -1 when its index
   * claims more outstanding requests than the ring holds.
   */
  pendingRequests(): number {
    const prod = this.page.loadAcquire32(RING_REQ_PROD);
    if ((prod - this.rspProdPvt) >>> 0 > this.size) return -1;
    const n = (prod - this.reqCons) >>> 0;
    return n > this.size ? -1 : n;
  }

  /** Publishes responses written up to `rspProdPvt`; true when the frontend asked for an event. */
  pushResponses(): boolean {
    const old = this.rspPushed;
    const now = this.rspProdPvt >>> 0;
    if (old === now) return false;
    this.page.storeRelease32(RING_RSP_PROD, now);
    this.rspPushed = now;
    const event = this.page.loadAcquire32(RING_RSP_EVENT);
    return (now - event) >>> 0 < (now - old) >>> 0;
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS: asks for an event at the next request, then looks again.
   * Returns pending requests (0: sleep until notified), or -1 as pendingRequests.
   */
  finalCheckRequests(): number {
    const n = this.pendingRequests();
    if (n !== 0) return n;
    this.page.storeRelease32(RING_REQ_EVENT, (this.reqCons + 1) >>> 0);
    return this.pendingRequests();
  }

  /**
   * The next packet's slots are not all produced: asks for an event at the next request.
   * True when one came meanwhile (look again now).
   */
  waitForMoreRequests(): boolean {
    const prod = this.page.loadAcquire32(RING_REQ_PROD);
    this.page.storeRelease32(RING_REQ_EVENT, (prod + 1) >>> 0);
    return this.page.loadAcquire32(RING_REQ_PROD) !== prod;
  }

  /** Asks for an event once `count` requests past `reqCons` exist; true when they already do. */
  waitForRequests(count: number): boolean {
    this.page.storeRelease32(RING_REQ_EVENT, (this.reqCons + count) >>> 0);
    const n = this.pendingRequests();
    return n < 0 || n >= count;
  }
}

/** The frontend's end: produces requests, consumes responses. */
export class FrontRing extends RingEnd {
  reqProdPvt = 0;
  rspCons = 0;
  private reqPushed = 0;

  /** SHARED_RING_INIT: both producer indexes 0, both event indexes 1, the rest zero. */
  init(): void {
    this.reqProdPvt = 0;
    this.rspCons = 0;
    this.reqPushed = 0;
    this.bytes.fill(0, 0, RING_ENTRIES);
    this.page.storeRelease32(RING_REQ_EVENT, 1);
    this.page.storeRelease32(RING_RSP_EVENT, 1);
    this.page.storeRelease32(RING_REQ_PROD, 0);
    this.page.storeRelease32(RING_RSP_PROD, 0);
  }

  /** Request slots free for producing. */
  freeRequests(): number {
    return this.size - ((this.reqProdPvt - this.rspCons) >>> 0);
  }

  /** Publishes requests written up to `reqProdPvt`; true when the backend asked for an event. */
  pushRequests(): boolean {
    const old = this.reqPushed;
    const now = this.reqProdPvt >>> 0;
    if (old === now) return false;
    this.page.storeRelease32(RING_REQ_PROD, now);
    this.reqPushed = now;
    const event = this.page.loadAcquire32(RING_REQ_EVENT);
    return (now - event) >>> 0 < (now - old) >>> 0;
  }

  /**
   * Responses produced and not consumed, or -1 when the backend's index claims responses to
   * requests we never made.
   */
  pendingResponses(): number {
    const prod = this.page.loadAcquire32(RING_RSP_PROD);
    const n = (prod - this.rspCons) >>> 0;
    return n > (this.reqPushed - this.rspCons) >>> 0 ? -1 : n;
  }

  /** RING_FINAL_CHECK_FOR_RESPONSES. */
  finalCheckResponses(): number {
    const n = this.pendingResponses();
    if (n !== 0) return n;
    this.page.storeRelease32(RING_RSP_EVENT, (this.rspCons + 1) >>> 0);
    return this.pendingResponses();
  }

  /** A packet's slots are not all produced: asks for an event at the next response. */
  waitForMoreResponses(): boolean {
    const prod = this.page.loadAcquire32(RING_RSP_PROD);
    this.page.storeRelease32(RING_RSP_EVENT, (prod + 1) >>> 0);
    return this.page.loadAcquire32(RING_RSP_PROD) !== prod;
  }
}
