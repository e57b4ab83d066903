import type { DecodeBudget } from './budget.ts';
import { refuse } from './budget.ts';
export function vp8Header(_d: Uint8Array, _s: number, _e: number): { width: number; height: number } {
  return refuse('unsupported', 'WebP lossy (VP8) images are not supported yet');
}
export function decodeLossy(
  _d: Uint8Array,
  _s: number,
  _e: number,
  _b: DecodeBudget,
): { width: number; height: number; rgba: Uint8Array } {
  return refuse('unsupported', 'WebP lossy (VP8) images are not supported yet');
}
