/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept unfolded in plain numbers (exact below 2^53) and folded once at the end.
 * Nothing here allocates on a hot path.
 *
 * Checksum-blank frames (Xen `NETTXF_csum_blank`, Linux CHECKSUM_PARTIAL, and every GSO
 * frame) carry in the L4 checksum field the folded, *uncomplemented* pseudo-header sum; the
 * final checksum is computed later over the segment. Rewriting an address in such a frame
 * must add the change to that partial sum (Linux `inet_proto_csum_replace4` with
 * `pseudohdr`), and rewriting a port must leave it alone, because the port bytes are summed
 * when the checksum is finished.
 */

/**
 * Adds the 16-bit big-endian words of buf[off, off+len) to `sum` (odd tail padded with zero).
 *
 * Reads 32-bit words through a DataView: the ones' complement sum is the sum modulo 0xffff,
 * and 2^16 ≡ 1 (mod 0xffff), so summing 32-bit words and folding later gives the same
 * result with a quarter of the loads. The DataView of the last two buffers is cached, so a
 * caller that reuses its buffers allocates nothing. Sums stay exact below 2^53.
 */
export function sumWords(buf: Uint8Array, off: number, len: number, sum: number): number {
  const dv = viewOf(buf);
  let i = off;
  const end4 = off + (len & ~3);
  for (; i < end4; i += 4) sum += dv.getUint32(i);
  if (len & 2) {
    sum += dv.getUint16(i);
    i += 2;
  }
  if (len & 1) sum += buf[i]! << 8;
  return sum;
}

let viewA: DataView = new DataView(new ArrayBuffer(0));
let bufA: Uint8Array | undefined;
let viewB: DataView = viewA;
let bufB: Uint8Array | undefined;

function viewOf(buf: Uint8Array): DataView {
  if (buf === bufA) return viewA;
  if (buf === bufB) return viewB;
  bufB = bufA;
  viewB = viewA;
  bufA = buf;
  viewA = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return viewA;
}

/** Folds a sum to 16 bits in ones' complement arithmetic. */
export function fold(sum: number): number {
  // sums of 32-bit words can exceed 2^32: fold arithmetically until bit operations are exact
  while (sum > 0xffffffff) {
    // a 64 KiB packet sums below 2^48, so one step brings it under 2^32
    const hi = Math.floor(sum / 0x10000);
    sum = sum - hi * 0x10000 + hi;
  }
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The checksum field value for a sum: its ones' complement. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** The complete checksum of buf[off, off+len). */
export function checksum(buf: Uint8Array, off: number, len: number): number {
  return finish(sumWords(buf, off, len, 0));
}

/** The IPv4 pseudo-header sum (RFC 793/768) for an L4 segment of `l4len` bytes. */
export function pseudoSum4(buf: Uint8Array, ipOff: number, proto: number, l4len: number): number {
  return sumWords(buf, ipOff + 12, 8, proto + l4len);
}

/** The IPv6 pseudo-header sum (RFC 8200 §8.1). */
export function pseudoSum6(buf: Uint8Array, ipOff: number, proto: number, l4len: number): number {
  return sumWords(buf, ipOff + 8, 32, proto + (l4len >>> 16) + (l4len & 0xffff));
}

/**
 * The RFC 1624 delta for replacing the bytes at buf[off, off+len) (even len) with
 * src[srcOff, srcOff+len): the sum of ~old + new over the words. Call before writing.
 */
export function replaceDelta(
  buf: Uint8Array,
  off: number,
  src: Uint8Array,
  srcOff: number,
  len: number,
): number {
  let d = 0;
  for (let i = 0; i < len; i += 2) {
    d +=
      (~((buf[off + i]! << 8) | buf[off + i + 1]!) & 0xffff) +
      ((src[srcOff + i]! << 8) | src[srcOff + i + 1]!);
  }
  return d;
}

/** The RFC 1624 delta for changing one 16-bit word from `oldWord` to `newWord`. */
export function wordDelta(oldWord: number, newWord: number): number {
  return (~oldWord & 0xffff) + newWord;
}

/**
 * Applies a delta to the complete checksum stored big-endian at buf[off] (RFC 1624 eqn. 3:
 * HC' = ~(~HC + ~m + m')). `zeroAsFfff` keeps UDP's "0 means no checksum" meaning intact.
 */
export function applyDelta(buf: Uint8Array, off: number, delta: number, zeroAsFfff: boolean): void {
  const hc = (buf[off]! << 8) | buf[off + 1]!;
  let v = ~fold((~hc & 0xffff) + delta) & 0xffff;
  if (v === 0 && zeroAsFfff) v = 0xffff;
  buf[off] = v >>> 8;
  buf[off + 1] = v & 0xff;
}

/** Applies a delta to a partial (checksum-blank) pseudo-header sum: no complement. */
export function applyPartialDelta(buf: Uint8Array, off: number, delta: number): void {
  const v = fold(((buf[off]! << 8) | buf[off + 1]!) + delta);
  buf[off] = v >>> 8;
  buf[off + 1] = v & 0xff;
}

export function read16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

export function write16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

/** Copies n bytes without creating a subarray view (generated frames are built per packet). */
export function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i]!;
}

export function read32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

export function write32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
