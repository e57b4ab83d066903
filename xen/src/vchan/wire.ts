/**
 * libxenvchan's shared interface page (`struct vchan_interface`,
 * xen/include/public/io/libxenvchan.h) and its ring-size rules (tools/libs/vchan/init.c), both
 * xen-project/xen @ c447b7308b13.
 * Every offset the vchan code uses is named here.
 */

/** Consumer index of the LEFT ring (client -> server), advanced by the server. */
export const LEFT_CONS = 0;
/** Producer index of the LEFT ring, advanced by the client. */
export const LEFT_PROD = 4;
/** Consumer index of the RIGHT ring (server -> client), advanced by the client. */
export const RIGHT_CONS = 8;
/** Producer index of the RIGHT ring, advanced by the server. */
export const RIGHT_PROD = 12;
export const LEFT_ORDER = 16; // u16
export const RIGHT_ORDER = 18; // u16
export const CLI_LIVE = 20; // u8
export const SRV_LIVE = 21; // u8
/** Notification-request bits the client must honour (set by the server). */
export const CLI_NOTIFY = 22; // u8
/** Notification-request bits the server must honour (set by the client). */
export const SRV_NOTIFY = 23; // u8
/** grant refs of out-of-page ring pages: all LEFT pages, then all RIGHT pages. */
export const GRANTS = 24;
export const INTERFACE_SIZE = 24;

export const NOTIFY_WRITE = 0x1;
export const NOTIFY_READ = 0x2;

export const LIVE_EXITED = 0;
export const LIVE_CONNECTED = 1;
export const LIVE_WAITING = 2;

export const MIN_RING_SHIFT = 10;
export const MAX_RING_SHIFT = 20;
export const MAX_RING_SIZE = 1 << MAX_RING_SHIFT;
export const PAGE_SHIFT = 12;

/** Byte offset of an in-page ring of this order (10 -> 1024, 11 -> 2048); external rings have none. */
export function inPageOffset(order: number): number | undefined {
  if (order === 10) return 1024;
  if (order === 11) return 2048;
  return undefined;
}

/** Number of separate pages a ring of this order needs (0 for the in-page orders). */
export function ringPages(order: number): number {
  return order < PAGE_SHIFT ? 0 : 1 << (order - PAGE_SHIFT);
}

/** Smallest order >= 12 whose ring holds `n` bytes. */
export function minOrder(n: number): number {
  let order = PAGE_SHIFT;
  while (1 << order < n) order++;
  return order;
}

export interface RingOrders {
  left: number;
  right: number;
}

/**
 * libxenvchan_server_init's size selection. `readMin` is the server's read ring (LEFT,
 * the client's send ring), `writeMin` the server's write ring (RIGHT). Returns a reason
 * when a minimum is above 1 MiB (the server_init call fails then).
 */
export function selectOrders(readMin: number, writeMin: number): RingOrders | { reason: 'too-large' } {
  if (readMin > MAX_RING_SIZE || writeMin > MAX_RING_SIZE) return { reason: 'too-large' };
  if (readMin <= 1024 && writeMin <= 2048) return { left: 10, right: 11 };
  if (readMin <= 2048 && writeMin <= 1024) return { left: 11, right: 10 };
  if (readMin <= 2048) return { left: 11, right: minOrder(writeMin) };
  if (writeMin <= 2048) return { left: minOrder(readMin), right: 11 };
  return { left: minOrder(readMin), right: minOrder(writeMin) };
}

/**
 * The client's validation of the orders it finds in the page (libxenvchan_client_init):
 * both in [10, 20], and not both the same in-page slot.
 */
export function checkOrders(left: number, right: number): RingOrders | { reason: string } {
  if (left < MIN_RING_SHIFT || left > MAX_RING_SHIFT) return { reason: `left order ${left} out of range` };
  if (right < MIN_RING_SHIFT || right > MAX_RING_SHIFT)
    return { reason: `right order ${right} out of range` };
  if (left === right && left < PAGE_SHIFT) return { reason: `both rings use in-page order ${left}` };
  return { left, right };
}
