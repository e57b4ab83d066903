/**
 * zlib/DEFLATE decompression (RFC 1950/1951) into a caller-sized buffer, for PNG.
 *
 * Why our own and not fflate (which we used before): decoders may not use node:zlib or
 * WebAssembly (they run on untrusted bytes in the VM), and fflate is the slow part of a
 * PNG decode. It builds a full 2^maxbits lookup table for every dynamic block; libpng
 * writes photographs as ~300 blocks per 6 MB with 15-bit literal codes, so 13% of a PNG
 * decode went to filling 32768-entry tables. Here the tables are two-level (a 10-bit root
 * for literals/lengths, 8-bit for distances, small sub-tables for longer codes, as zlib
 * does), the bit buffer is a 32-bit integer refilled 4 bytes at a time, the symbol loop
 * is a function of its own (fewer live variables: 10% faster), and long matches are
 * copied with copyWithin. Inflating the bench's three large PNGs: 163 ms against
 * fflate's 230 ms (node:zlib, native: 80 ms).
 *
 * Untrusted input: the output never grows beyond `out` (decoding stops when it is full,
 * and the rest of the stream is ignored, as PNG decoders commonly do with extra image
 * data); every table index is bounded by construction; malformed streams throw
 * `InflateError` with the reason. The Adler-32 trailer is not checked (PNG chunk CRCs
 * already cover the bytes).
 */

export class InflateError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'InflateError';
  }
}

const fail = (reason: string): never => {
  throw new InflateError(reason);
};

// --- table entries -----------------------------------------------------------------------
// One Int32 per entry: bits 0-3 bits to consume, 4-7 extra bits to read after it,
// 8-10 kind, 16-31 value (literal byte, length or distance base, sub-table offset).
// For a sub-table link, bits 4-7 hold the sub-table's index width instead.
const kindMask = 0x700;
const kindLiteral = 0x100;
const kindBase = 0x200; // a length (literal/length table) or a distance (distance table)
const kindEnd = 0x300;
const kindLink = 0x400;
// 0 (kind 0) marks a code that no symbol uses, or a symbol that may not appear.

const litRootBits = 10;
const distRootBits = 8;
const lenRootBits = 7; // code-length codes are at most 7 bits: no sub-tables
// Room for the root plus one sub-table per code longer than the root (each at most
// 2^(15 - root) entries): more than any code can need, so building never overruns.
const litTableSize = (1 << litRootBits) + 286 * (1 << (15 - litRootBits));
const distTableSize = (1 << distRootBits) + 30 * (1 << (15 - distRootBits));

const lengthBase = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
  227, 258,
];
const lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const distBase = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
  6145, 8193, 12289, 16385, 24577,
];
const distExtra = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
// Order in which code-length code lengths are sent (RFC 1951 §3.2.7).
const codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** Entry (without the bit count) of each literal/length symbol; 286 and 287 are invalid. */
const litSymbolEntry = new Int32Array(288);
for (let s = 0; s < 256; s++) litSymbolEntry[s] = kindLiteral | (s << 16);
litSymbolEntry[256] = kindEnd;
for (let s = 257; s < 286; s++)
  litSymbolEntry[s] =
    kindBase | ((lengthBase[s - 257] as number) << 16) | ((lengthExtra[s - 257] as number) << 4);
const distSymbolEntry = new Int32Array(32);
for (let s = 0; s < 30; s++)
  distSymbolEntry[s] = kindBase | ((distBase[s] as number) << 16) | ((distExtra[s] as number) << 4);
const codeLengthSymbolEntry = new Int32Array(19);
for (let s = 0; s < 19; s++) codeLengthSymbolEntry[s] = kindLiteral | (s << 16);

const reverse8 = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let r = 0;
  for (let b = 0; b < 8; b++) r |= ((i >> b) & 1) << (7 - b);
  reverse8[i] = r;
}
const reverse = (code: number, bits: number) =>
  (((reverse8[code & 0xff] as number) << 8) | (reverse8[code >> 8] as number)) >> (16 - bits);

/**
 * Fills `table` with a two-level canonical Huffman decoding table for `lengths[0..n)`.
 * Over-subscribed code sets are refused; incomplete ones are accepted (their unused bit
 * patterns stay 0 and are refused when met).
 */
function buildTable(
  table: Int32Array,
  rootBits: number,
  lengths: Uint8Array,
  first: number,
  n: number,
  symbolEntry: Int32Array,
  what: string,
): void {
  const count = new Int32Array(16);
  for (let s = 0; s < n; s++) {
    const len = lengths[first + s] as number;
    count[len] = (count[len] as number) + 1;
  }
  count[0] = 0;
  let maxLen = 15;
  while (maxLen > 0 && count[maxLen] === 0) maxLen--;
  let left = 1;
  for (let len = 1; len <= 15; len++) {
    left = (left << 1) - (count[len] as number);
    if (left < 0) fail(`${what} code lengths are over-subscribed`);
  }
  // First code of each length, and symbols sorted by (length, symbol).
  const offsets = new Int32Array(17);
  for (let len = 1; len <= 15; len++) offsets[len + 1] = (offsets[len] as number) + (count[len] as number);
  const sorted = new Int32Array(offsets[16] as number);
  for (let s = 0; s < n; s++) {
    const len = lengths[first + s] as number;
    if (len === 0) continue;
    const at = offsets[len] as number;
    sorted[at] = s;
    offsets[len] = at + 1;
  }
  const rootSize = 1 << rootBits;
  table.fill(0, 0, rootSize);
  const rootMask = rootSize - 1;
  let code = 0;
  let i = 0;
  let next = rootSize; // where the next sub-table goes
  let prefix = -1; // root index of the current sub-table
  let subStart = 0;
  let subBits = 0;
  for (let len = 1; len <= 15; len++) {
    for (let k = count[len] as number; k > 0; k--, i++, code++) {
      const entry = symbolEntry[sorted[i] as number] as number;
      const rev = reverse(code, len);
      if (len <= rootBits) {
        for (let j = rev; j < rootSize; j += 1 << len) table[j] = entry | len;
        continue;
      }
      const p = rev & rootMask;
      if (p !== prefix) {
        // A new sub-table: wide enough for every remaining code under this prefix.
        prefix = p;
        subBits = len - rootBits;
        let space = 1 << subBits;
        for (let l = len; l < maxLen; l++) {
          space -= count[l] as number;
          if (space <= 0) break;
          subBits++;
          space <<= 1;
        }
        subStart = next;
        next += 1 << subBits;
        if (next > table.length) fail(`${what} code needs a larger table`);
        table.fill(0, subStart, next);
        table[p] = kindLink | (subStart << 16) | (subBits << 4) | rootBits;
      }
      // Sub-table sizing counts only the long codes not placed yet.
      count[len] = (count[len] as number) - 1;
      const subLen = len - rootBits;
      for (let j = rev >>> rootBits; j < 1 << subBits; j += 1 << subLen) table[subStart + j] = entry | subLen;
    }
    code <<= 1;
  }
}

let fixedTables: { lit: Int32Array; dist: Int32Array } | undefined;
function fixed(): { lit: Int32Array; dist: Int32Array } {
  if (fixedTables) return fixedTables;
  const lengths = new Uint8Array(288 + 32);
  lengths.fill(8, 0, 144);
  lengths.fill(9, 144, 256);
  lengths.fill(7, 256, 280);
  lengths.fill(8, 280, 288);
  lengths.fill(5, 288, 320);
  const lit = new Int32Array(litTableSize);
  const dist = new Int32Array(distTableSize);
  buildTable(lit, litRootBits, lengths, 0, 288, litSymbolEntry, 'fixed literal/length');
  buildTable(dist, distRootBits, lengths, 288, 32, distSymbolEntry, 'fixed distance');
  fixedTables = { lit, dist };
  return fixedTables;
}

/**
 * Inflates the zlib stream `input` into `out` and returns the number of bytes written:
 * `out.length` when the stream holds at least that much (the rest is not decoded), fewer
 * when the stream ends first. `onBlock` is called before each DEFLATE block (deadline
 * checks).
 */
export function inflateZlib(input: Uint8Array, out: Uint8Array, onBlock?: () => void): number {
  if (input.length < 2) fail('zlib stream is shorter than its header');
  const cmf = input[0] as number;
  const flg = input[1] as number;
  if ((cmf & 15) !== 8 || cmf >> 4 > 7 || ((cmf << 8) | flg) % 31 !== 0) fail('invalid zlib header');
  if (flg & 32) fail('zlib stream needs a preset dictionary');
  return inflateRaw(input, 2, out, onBlock);
}

/**
 * Receives inflated bytes `window[from, to)` as they are produced; returns true when it
 * has all it wants (inflating stops there).
 */
export type InflateSink = (window: Uint8Array, from: number, to: number) => boolean;

/** DEFLATE distances reach at most this far back. */
const historySize = 32768;
/** The longest match. */
const maxMatch = 258;

/**
 * Inflates the zlib stream `input` through `window` (at least 64 KiB), handing the output
 * to `sink` piece by piece: memory is the window, whatever the stream's size. Returns the
 * number of bytes produced. Errors as `inflateZlib`.
 */
export function inflateZlibStreaming(
  input: Uint8Array,
  window: Uint8Array,
  sink: InflateSink,
  onBlock?: () => void,
): number {
  if (window.length < 2 * historySize) throw new RangeError('inflate window must hold at least 64 KiB');
  if (input.length < 2) fail('zlib stream is shorter than its header');
  const cmf = input[0] as number;
  const flg = input[1] as number;
  if ((cmf & 15) !== 8 || cmf >> 4 > 7 || ((cmf << 8) | flg) % 31 !== 0) fail('invalid zlib header');
  if (flg & 32) fail('zlib stream needs a preset dictionary');
  return inflateRaw(input, 2, window, onBlock, sink);
}

/** Inflates raw DEFLATE data starting at `input[start]`; see `inflateZlib`. */
export function inflateRaw(
  input: Uint8Array,
  start: number,
  out: Uint8Array,
  onBlock?: () => void,
  /** Streaming: `out` is a sliding window whose bytes go to `sink` (see inflateZlibStreaming). */
  sink?: InflateSink,
): number {
  const inEnd = input.length;
  const outEnd = out.length;
  // Streaming: symbols stop early enough that a whole match fits, then the window slides.
  const softEnd = sink ? outEnd - maxMatch : outEnd;
  let flushed = 0; // streaming: window bytes already handed to the sink
  let produced = 0; // streaming: bytes handed over before the window's start
  let done = false;
  /** Hands window[flushed, op) over and keeps the last 32 KiB as history. */
  const slide = (): void => {
    if (!sink || done) return;
    done = sink(out, flushed, op);
    produced += op - historySize;
    out.copyWithin(0, op - historySize, op);
    op = historySize;
    flushed = historySize;
  };
  const finish = (): number => {
    if (!sink) return op;
    if (!done && op > flushed) done = sink(out, flushed, op);
    return produced + op;
  };
  let pos = start; // next input byte to load into the bit buffer (may run past inEnd: zeros)
  let bitbuf = 0;
  let bitcnt = 0;
  let op = 0;
  const bits = new Int32Array(4); // pos, bitbuf, bitcnt, paused handed back by inflateSymbols
  // Invariant below: op < outEnd at the start of every block and symbol.
  if (outEnd === 0) return 0;
  let dynLit: Int32Array | undefined;
  let dynDist: Int32Array | undefined;
  let lengths: Uint8Array | undefined;

  for (;;) {
    onBlock?.();
    while (bitcnt < 3) {
      bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
      pos++;
      bitcnt += 8;
    }
    if (pos - (bitcnt >> 3) > inEnd) fail('unexpected end of compressed data');
    const final = bitbuf & 1;
    const type = (bitbuf >>> 1) & 3;
    bitbuf >>>= 3;
    bitcnt -= 3;

    if (type === 0) {
      // Stored: skip to a byte boundary; give back the whole bytes still in the buffer.
      pos -= bitcnt >> 3;
      bitbuf = 0;
      bitcnt = 0;
      if (pos + 4 > inEnd) fail('unexpected end of compressed data in a stored block header');
      const len = (input[pos] as number) | ((input[pos + 1] as number) << 8);
      const nlen = (input[pos + 2] as number) | ((input[pos + 3] as number) << 8);
      if (len !== (~nlen & 0xffff)) fail('stored block length does not match its complement');
      pos += 4;
      if (pos + len > inEnd) fail('unexpected end of compressed data in a stored block');
      if (sink) {
        for (let copied = 0; copied < len && !done; ) {
          const n = Math.min(len - copied, outEnd - op);
          out.set(input.subarray(pos + copied, pos + copied + n), op);
          op += n;
          copied += n;
          if (op === outEnd) slide();
        }
        pos += len;
        if (final || done) return finish();
        continue;
      }
      const n = Math.min(len, outEnd - op);
      out.set(input.subarray(pos, pos + n), op);
      op += n;
      pos += len;
      if (op === outEnd) return op;
      if (final) return op;
      continue;
    }

    let lit: Int32Array;
    let dist: Int32Array;
    if (type === 1) {
      ({ lit, dist } = fixed());
    } else if (type === 2) {
      while (bitcnt < 14) {
        bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
        pos++;
        bitcnt += 8;
      }
      const nlit = (bitbuf & 31) + 257;
      const ndist = ((bitbuf >>> 5) & 31) + 1;
      const nclen = ((bitbuf >>> 10) & 15) + 4;
      bitbuf >>>= 14;
      bitcnt -= 14;
      if (nlit > 286 || ndist > 30) fail('too many length or distance symbols');
      lengths ??= new Uint8Array(286 + 30);
      const clens = new Uint8Array(19);
      for (let i = 0; i < nclen; i++) {
        while (bitcnt < 3) {
          bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
          pos++;
          bitcnt += 8;
        }
        clens[codeLengthOrder[i] as number] = bitbuf & 7;
        bitbuf >>>= 3;
        bitcnt -= 3;
      }
      const clTable = new Int32Array(1 << lenRootBits);
      buildTable(clTable, lenRootBits, clens, 0, 19, codeLengthSymbolEntry, 'code-length');
      const total = nlit + ndist;
      for (let i = 0; i < total; ) {
        while (bitcnt < 14) {
          bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
          pos++;
          bitcnt += 8;
        }
        const e = clTable[bitbuf & ((1 << lenRootBits) - 1)] as number;
        if (e === 0) fail('invalid code-length code');
        bitbuf >>>= e & 15;
        bitcnt -= e & 15;
        const sym = e >>> 16;
        if (sym < 16) {
          lengths[i++] = sym;
          continue;
        }
        let repeat: number;
        let value = 0;
        if (sym === 16) {
          if (i === 0) fail('code-length repeat with no previous length');
          value = lengths[i - 1] as number;
          repeat = 3 + (bitbuf & 3);
          bitbuf >>>= 2;
          bitcnt -= 2;
        } else if (sym === 17) {
          repeat = 3 + (bitbuf & 7);
          bitbuf >>>= 3;
          bitcnt -= 3;
        } else {
          repeat = 11 + (bitbuf & 127);
          bitbuf >>>= 7;
          bitcnt -= 7;
        }
        if (i + repeat > total) fail('code lengths run past the symbol count');
        lengths.fill(value, i, i + repeat);
        i += repeat;
      }
      if (pos - (bitcnt >> 3) > inEnd) fail('unexpected end of compressed data in a block header');
      dynLit ??= new Int32Array(litTableSize);
      dynDist ??= new Int32Array(distTableSize);
      buildTable(dynLit, litRootBits, lengths, 0, nlit, litSymbolEntry, 'literal/length');
      buildTable(dynDist, distRootBits, lengths, nlit, ndist, distSymbolEntry, 'distance');
      lit = dynLit;
      dist = dynDist;
    } else {
      return fail('invalid block type 3');
    }

    for (;;) {
      op = inflateSymbols(input, out, op, softEnd, lit, dist, bits, pos, bitbuf, bitcnt);
      pos = bits[0] as number;
      bitbuf = bits[1] as number;
      bitcnt = bits[2] as number;
      // The symbols may have used the zeros read past the end of input: refuse them.
      if (pos - (bitcnt >> 3) > inEnd) fail('unexpected end of compressed data');
      if (bits[3] === 0) break; // end of block (or a full buffer, not streaming)
      slide(); // streaming, window nearly full: hand it over and go on with this block
      if (done) return finish();
      onBlock?.();
    }
    if (sink) {
      if (final || done) return finish();
      continue;
    }
    if (final || op === outEnd) return op;
  }
}

/**
 * Decodes one Huffman block's symbols into `out` from `op` until the end-of-block code or
 * a full output; returns the new `op` and leaves the bit reader's state in `state`. A
 * function of its own so that the hot loop has few live variables.
 */
function inflateSymbols(
  input: Uint8Array,
  out: Uint8Array,
  op: number,
  /** Stop (paused: state[3] = 1) before a symbol once `op` reaches this (streaming). */
  softEnd: number,
  lit: Int32Array,
  dist: Int32Array,
  state: Int32Array,
  pos: number,
  bitbuf: number,
  bitcnt: number,
): number {
  const inEnd = input.length;
  const outEnd = out.length;
  // The block's symbols. Codes need up to 15 bits, extra bits up to 13: the buffer is
  // refilled (to 24-31 bits) when it holds fewer than a code or its extra bits need.
  const litMask = (1 << litRootBits) - 1;
  const distMask = (1 << distRootBits) - 1;
  let paused = 0;
  for (;;) {
    if (op >= softEnd) {
      paused = 1;
      break;
    }
    if (bitcnt < 15) {
      if (pos + 4 <= inEnd) {
        // Load 4 bytes, keep the whole ones that fit. Bits above `bitcnt` then hold part
        // of the next byte, at the very place the next refill ORs it in again.
        bitbuf |=
          ((input[pos] as number) |
            ((input[pos + 1] as number) << 8) |
            ((input[pos + 2] as number) << 16) |
            ((input[pos + 3] as number) << 24)) <<
          bitcnt;
        pos += (31 - bitcnt) >> 3;
        bitcnt |= 24;
      } else {
        // Past the end of input the buffer fills with zeros; the check (each refill,
        // cheap) refuses a stream that really used them.
        if (pos > inEnd + 4) fail('unexpected end of compressed data');
        do {
          bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
          pos++;
          bitcnt += 8;
        } while (bitcnt <= 23);
      }
    }
    let e = lit[bitbuf & litMask] as number;
    if ((e & kindMask) === kindLink) {
      bitbuf >>>= litRootBits;
      bitcnt -= litRootBits;
      e = lit[(e >>> 16) + (bitbuf & ((1 << ((e >>> 4) & 15)) - 1))] as number;
    }
    const kind = e & kindMask;
    bitbuf >>>= e & 15;
    bitcnt -= e & 15;
    if (kind === kindLiteral) {
      out[op++] = e >>> 16;
      if (op === outEnd) break;
      continue;
    }
    if (kind !== kindBase) {
      if (kind === kindEnd) break;
      fail('invalid literal/length code');
    }
    let length = e >>> 16;
    let extra = (e >>> 4) & 15;
    if (extra !== 0) {
      if (bitcnt < extra) {
        do {
          bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
          pos++;
          bitcnt += 8;
        } while (bitcnt <= 23);
      }
      length += bitbuf & ((1 << extra) - 1);
      bitbuf >>>= extra;
      bitcnt -= extra;
    }
    if (bitcnt < 15) {
      do {
        bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
        pos++;
        bitcnt += 8;
      } while (bitcnt <= 23);
    }
    e = dist[bitbuf & distMask] as number;
    if ((e & kindMask) === kindLink) {
      bitbuf >>>= distRootBits;
      bitcnt -= distRootBits;
      e = dist[(e >>> 16) + (bitbuf & ((1 << ((e >>> 4) & 15)) - 1))] as number;
    }
    if ((e & kindMask) !== kindBase) fail('invalid distance code');
    bitbuf >>>= e & 15;
    bitcnt -= e & 15;
    let distance = e >>> 16;
    extra = (e >>> 4) & 15;
    if (extra !== 0) {
      if (bitcnt < extra) {
        do {
          bitbuf |= (pos < inEnd ? (input[pos] as number) : 0) << bitcnt;
          pos++;
          bitcnt += 8;
        } while (bitcnt <= 23);
      }
      distance += bitbuf & ((1 << extra) - 1);
      bitbuf >>>= extra;
      bitcnt -= extra;
    }
    if (distance > op) fail('distance reaches before the start of the output');
    const full = length >= outEnd - op;
    if (full) length = outEnd - op;
    let from = op - distance;
    if (distance >= length && length > 16) {
      out.copyWithin(op, from, from + length);
      op += length;
    } else {
      const stop = op + length;
      while (op < stop) out[op++] = out[from++] as number;
    }
    if (full) break;
  }
  state[0] = pos;
  state[1] = bitbuf;
  state[2] = bitcnt;
  state[3] = paused;
  return op;
}
