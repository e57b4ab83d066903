/** Shared by xen.guest.ts (in the guests) and xen.lab.test.ts (on the host). */

export const DOMU_SEED = 0x5a;
export const DOM0_SEED = 0xd0;
/** Generous: the peer's steps run under emulation, possibly on a busy machine. */
export const WAIT_MS = 600_000;

export interface ShareOffer {
  domid: number;
  refs: number[];
  readOnlyRefs: number[];
  port: number;
}

/** A byte pattern that differs per seed and per offset (so a shifted or stale page shows). */
export function fillPattern(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed + i * 31 + (i >> 8)) & 0xff;
}
