/**
 * Address arithmetic the rules need (prefix masks and containment). Address text is parsed
 * by wire/address.ts, the one parser the whole firewall uses.
 */

/** Clears the bits after `len` (nft and dom0 accept `1.2.3.4/24` meaning `1.2.3.0/24`). */
export function maskPrefix(addr: Uint8Array, len: number): Uint8Array {
  const out = Uint8Array.from(addr);
  for (let bit = len; bit < out.length * 8; bit++) out[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return out;
}

/** Whether the first `len` bits of `addr` (at `offset`) equal those of `prefix`. */
export function prefixContains(prefix: Uint8Array, len: number, addr: Uint8Array, offset = 0): boolean {
  const whole = len >> 3;
  for (let i = 0; i < whole; i++) if (prefix[i] !== addr[offset + i]) return false;
  const rest = len & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return ((prefix[whole]! ^ addr[offset + whole]!) & mask) === 0;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
