/**
 * VP8 key frames, WebP's lossy bitstream (RFC 6386, as RFC 9649 §2.5 embeds it), decoded to
 * RGBA the way libwebp does by default (webmproject/libwebp src/dec, src/dsp): the same
 * boolean decoder, dequantisation (with its int16 coefficient storage), inverse WHT and
 * DCT, intra prediction with libwebp's 127/129 borders, simple and normal loop filters, and
 * "fancy" chroma upsampling with its YUV→RGB fixed-point conversion. Implementing the same
 * integer arithmetic is what makes the output match libwebp's (see webp.test.ts).
 *
 * Memory: the three planes (whole macroblocks) and the RGBA output are reserved in the
 * budget from the frame header before any is allocated. Reading past a partition gives
 * zeros, as in libwebp, and a macroblock decoded from such bits refuses the file as
 * truncated.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import { acTable, bModesProba, coeffsProba0, coeffsUpdateProba, dcTable } from './webp-tables.ts';

/** libwebp's boolean decoder (src/utils/bit_reader_utils.h) loading one byte at a time. */
class BoolDecoder {
  // Public for CoeffDecoder, which runs the same steps on local copies (its hot loop).
  value = 0;
  /** range - 1, in [127, 254] between calls */
  range = 254;
  bits = -8;
  eof = false;

  constructor(
    readonly data: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {
    this.load();
  }

  private load(): void {
    if (this.pos < this.end) {
      this.bits += 8;
      this.value = (this.data[this.pos++] as number) | (this.value << 8);
    } else if (!this.eof) {
      this.value <<= 8;
      this.bits += 8;
      this.eof = true;
    } else {
      this.bits = 0;
    }
  }

  bit(prob: number): number {
    let range = this.range;
    if (this.bits < 0) this.load();
    const pos = this.bits;
    const split = (range * prob) >>> 8;
    let bit: number;
    if (this.value >>> pos > split) {
      range -= split;
      this.value -= (split + 1) << pos;
      bit = 1;
    } else {
      range = split + 1;
      bit = 0;
    }
    const shift = 7 ^ (31 - Math.clz32(range));
    this.bits -= shift;
    this.range = (range << shift) - 1;
    return bit;
  }

  literal(n: number): number {
    let v = 0;
    while (n-- > 0) v |= this.bit(0x80) << n;
    return v;
  }

  signed(n: number): number {
    const v = this.literal(n);
    return this.bit(0x80) ? -v : v;
  }

  /** A flag-guarded signed field: 0 when the flag bit is clear. */
  optionalSigned(n: number): number {
    return this.bit(0x80) ? this.signed(n) : 0;
  }
}

// --- modes, bands, scans ----------------------------------------------------------------
const predDc = 0;
const predTm = 1;
const predVe = 2;
const predHe = 3;
const predDcNoTop = 4;
const predDcNoLeft = 5;
const predDcNoTopLeft = 6;
const bands = Uint8Array.of(0, 1, 2, 3, 6, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 0);
const zigzag = Uint8Array.of(0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15);
const cat3 = [173, 148, 140];
const cat4 = [176, 155, 140, 135];
const cat5 = [180, 157, 141, 134, 130];
const cat6 = [254, 254, 243, 230, 196, 177, 153, 140, 133, 130, 129];
const catProbs = [cat3, cat4, cat5, cat6];

// Work buffer layout as libwebp's yuv_b (BPS 32): a row of top samples above each block
// and a column of left samples before it.
const bps = 32;
const yOff = bps + 8;
const uOff = yOff + bps * 16 + bps;
const vOff = uOff + 16;
const workSize = bps * 17 + bps * 9;
const scan = Int32Array.from({ length: 16 }, (_, n) => (n & 3) * 4 + (n >> 2) * 4 * bps);

export interface LossyImage {
  width: number;
  height: number;
  /** RGBA, alpha 255 (an ALPH chunk is applied by the caller). */
  rgba: Uint8Array;
}

/** Frame tag and key-frame header (RFC 6386 §9.1): checks and returns the picture size. */
export function vp8Header(data: Uint8Array, start: number, end: number) {
  if (end - start < 10) refuse('truncated', 'WebP lossy header is cut short');
  const tag =
    (data[start] as number) | ((data[start + 1] as number) << 8) | ((data[start + 2] as number) << 16);
  if (tag & 1) refuse('unsupported', 'WebP lossy data is not a key frame');
  if (((tag >> 1) & 7) > 3) refuse('corrupt', 'WebP lossy profile is invalid');
  if (!((tag >> 4) & 1)) refuse('unsupported', 'WebP lossy frame is not meant to be shown');
  const partitionLength = tag >>> 5;
  if (data[start + 3] !== 0x9d || data[start + 4] !== 0x01 || data[start + 5] !== 0x2a)
    refuse('corrupt', 'WebP lossy start code is missing');
  const width = ((data[start + 6] as number) | ((data[start + 7] as number) << 8)) & 0x3fff;
  const height = ((data[start + 8] as number) | ((data[start + 9] as number) << 8)) & 0x3fff;
  if (width === 0 || height === 0) refuse('corrupt', `WebP lossy image is ${width}×${height}`);
  if (partitionLength >= end - start) refuse('truncated', 'WebP lossy first partition runs past the data');
  return { width, height, partitionLength };
}

interface FilterParams {
  limit: number;
  ilevel: number;
  hevThresh: number;
  inner: number;
}

export function decodeLossy(data: Uint8Array, start: number, end: number, budget: DecodeBudget): LossyImage {
  const { width, height, partitionLength } = vp8Header(data, start, end);
  budget.checkSize(width, height, 'WebP lossy image');
  const mbw = (width + 15) >> 4;
  const mbh = (height + 15) >> 4;
  const yStride = mbw * 16;
  const uvStride = mbw * 8;
  budget.ensure(
    yStride * mbh * 16 + 2 * uvStride * mbh * 8 + width * height * 4 + mbw * 64,
    'WebP lossy decode',
  );

  const firstStart = start + 10;
  const br = new BoolDecoder(data, firstStart, firstStart + partitionLength);
  br.bit(0x80); // colour space: only 0 is defined and libwebp ignores it
  br.bit(0x80); // clamping type: the decoder always clamps

  // Segments (§9.3).
  const useSegment = br.bit(0x80);
  let updateMap = 0;
  let absoluteDelta = 1;
  const quantizer = [0, 0, 0, 0];
  const filterStrength = [0, 0, 0, 0];
  const segmentProbs = [255, 255, 255];
  if (useSegment) {
    updateMap = br.bit(0x80);
    if (br.bit(0x80)) {
      absoluteDelta = br.bit(0x80);
      for (let s = 0; s < 4; s++) quantizer[s] = br.optionalSigned(7);
      for (let s = 0; s < 4; s++) filterStrength[s] = br.optionalSigned(6);
    }
    if (updateMap) for (let s = 0; s < 3; s++) segmentProbs[s] = br.bit(0x80) ? br.literal(8) : 255;
  }
  // Loop filter (§9.4).
  const simple = br.bit(0x80);
  const level = br.literal(6);
  const sharpness = br.literal(3);
  const useLfDelta = br.bit(0x80);
  const refLfDelta = [0, 0, 0, 0];
  const modeLfDelta = [0, 0, 0, 0];
  if (useLfDelta && br.bit(0x80)) {
    for (let i = 0; i < 4; i++) refLfDelta[i] = br.optionalSigned(6);
    for (let i = 0; i < 4; i++) modeLfDelta[i] = br.optionalSigned(6);
  }
  const filterType = level === 0 ? 0 : simple ? 1 : 2;

  // Token partitions (§9.5).
  const numParts = 1 << br.literal(2);
  let partStart = firstStart + partitionLength;
  const sizesStart = partStart;
  if (end - partStart < 3 * (numParts - 1)) refuse('truncated', 'WebP lossy partition sizes are cut short');
  partStart += 3 * (numParts - 1);
  const parts: BoolDecoder[] = [];
  for (let p = 0; p < numParts; p++) {
    let partEnd = end;
    if (p < numParts - 1) {
      const o = sizesStart + 3 * p;
      const size = (data[o] as number) | ((data[o + 1] as number) << 8) | ((data[o + 2] as number) << 16);
      partEnd = Math.min(partStart + size, end);
    } else if (partStart >= end) {
      // As libwebp: the last partition must start inside the data.
      refuse('truncated', 'WebP lossy token partitions are cut short');
    }
    parts.push(new BoolDecoder(data, partStart, partEnd));
    partStart = partEnd;
  }

  // Quantizers (§9.6, §14.1).
  const baseQ = br.literal(7);
  const dqY1Dc = br.optionalSigned(4);
  const dqY2Dc = br.optionalSigned(4);
  const dqY2Ac = br.optionalSigned(4);
  const dqUvDc = br.optionalSigned(4);
  const dqUvAc = br.optionalSigned(4);
  const clip = (v: number, max: number) => (v < 0 ? 0 : Math.min(v, max));
  // Per segment: y1 dc, y1 ac, y2 dc, y2 ac, uv dc, uv ac.
  const dq = new Int32Array(24);
  for (let s = 0; s < 4; s++) {
    let q = baseQ;
    if (useSegment) {
      q = quantizer[s] as number;
      if (!absoluteDelta) q += baseQ;
    } else if (s > 0) {
      dq.copyWithin(s * 6, 0, 6);
      continue;
    }
    const o = s * 6;
    dq[o] = dcTable[clip(q + dqY1Dc, 127)] as number;
    dq[o + 1] = acTable[clip(q, 127)] as number;
    dq[o + 2] = (dcTable[clip(q + dqY2Dc, 127)] as number) * 2;
    // x * 155 / 100, as libwebp computes it.
    dq[o + 3] = Math.max(8, ((acTable[clip(q + dqY2Ac, 127)] as number) * 101581) >> 16);
    dq[o + 4] = dcTable[clip(q + dqUvDc, 117)] as number;
    dq[o + 5] = acTable[clip(q + dqUvAc, 127)] as number;
  }
  br.bit(0x80); // refresh_entropy_probs: meaningless for a single key frame

  // Token probabilities (§13.4) and the skip flag's.
  const probs = new Uint8Array(coeffsProba0.length);
  for (let i = 0; i < probs.length; i++)
    probs[i] = br.bit(coeffsUpdateProba[i] as number) ? br.literal(8) : (coeffsProba0[i] as number);
  const useSkip = br.bit(0x80);
  const skipProb = useSkip ? br.literal(8) : 0;
  if (br.eof) refuse('truncated', 'WebP lossy frame header is cut short');

  // Filter strength per segment and block type (libwebp PrecomputeFilterStrengths).
  const filters: FilterParams[] = [];
  for (let s = 0; s < 4; s++) {
    let base = level;
    if (useSegment) {
      base = filterStrength[s] as number;
      if (!absoluteDelta) base += level;
    }
    for (let i4x4 = 0; i4x4 <= 1; i4x4++) {
      let lvl = base;
      if (useLfDelta) {
        lvl += refLfDelta[0] as number;
        if (i4x4) lvl += modeLfDelta[0] as number;
      }
      lvl = lvl < 0 ? 0 : Math.min(lvl, 63);
      const f: FilterParams = { limit: 0, ilevel: 0, hevThresh: 0, inner: i4x4 };
      if (lvl > 0) {
        let ilevel = lvl;
        if (sharpness > 0) {
          ilevel >>= sharpness > 4 ? 2 : 1;
          if (ilevel > 9 - sharpness) ilevel = 9 - sharpness;
        }
        if (ilevel < 1) ilevel = 1;
        f.ilevel = ilevel;
        f.limit = 2 * lvl + ilevel;
        f.hevThresh = lvl >= 40 ? 2 : lvl >= 15 ? 1 : 0;
      }
      filters.push(f);
    }
  }

  // Planes (whole macroblocks), reconstructed unfiltered; filtered afterwards.
  budget.allocate(yStride * mbh * 16 + 2 * uvStride * mbh * 8, 'WebP lossy planes');
  const yPlane = new Uint8Array(yStride * mbh * 16);
  const uPlane = new Uint8Array(uvStride * mbh * 8);
  const vPlane = new Uint8Array(uvStride * mbh * 8);
  budget.allocate(mbw * 64 + mbw * mbh * 2, 'WebP lossy contexts');
  const topY = new Uint8Array(yStride);
  const topU = new Uint8Array(uvStride);
  const topV = new Uint8Array(uvStride);
  const intraT = new Uint8Array(mbw * 4);
  const intraL = new Uint8Array(4);
  const topNz = new Uint8Array(mbw * 9);
  const leftNz = new Uint8Array(9);
  const mbFilter = new Uint8Array(mbw * mbh); // filter params index | inner << 3
  const work = new Uint8Array(workSize);
  const coeffs = new Int16Array(384);
  const blockNz = new Uint8Array(24); // per block: 0 none, 1 DC only, 2 full
  const modes = new Uint8Array(16);
  const dc = new Int16Array(16);

  const coeffDecoder = new CoeffDecoder(probs);

  for (let mby = 0; mby < mbh; mby++) {
    budget.tick();
    const tokens = parts[mby & (numParts - 1)] as BoolDecoder;
    setBytes(intraL, 0, 4, 0);
    setBytes(leftNz, 0, 9, 0);
    // Left borders (libwebp ReconstructRow).
    for (let j = 0; j < 16; j++) work[yOff + j * bps - 1] = 129;
    for (let j = 0; j < 8; j++) {
      work[uOff + j * bps - 1] = 129;
      work[vOff + j * bps - 1] = 129;
    }
    if (mby > 0) {
      work[yOff - bps - 1] = 129;
      work[uOff - bps - 1] = 129;
      work[vOff - bps - 1] = 129;
    } else {
      work.fill(127, yOff - bps - 1, yOff - bps - 1 + 21);
      work.fill(127, uOff - bps - 1, uOff - bps - 1 + 9);
      work.fill(127, vOff - bps - 1, vOff - bps - 1 + 9);
    }
    for (let mbx = 0; mbx < mbw; mbx++) {
      // --- modes (§11.2–11.4), from the first partition ---
      let segment = 0;
      if (updateMap)
        segment = !br.bit(segmentProbs[0] as number)
          ? br.bit(segmentProbs[1] as number)
          : 2 + br.bit(segmentProbs[2] as number);
      const skip = useSkip ? br.bit(skipProb) : 0;
      const i4x4 = !br.bit(145);
      let ymode = 0;
      if (!i4x4) {
        ymode = br.bit(156) ? (br.bit(128) ? predTm : predHe) : br.bit(163) ? predVe : predDc;
        setBytes(intraT, mbx * 4, 4, ymode);
        setBytes(intraL, 0, 4, ymode);
      } else {
        for (let y = 0; y < 4; y++) {
          let left = intraL[y] as number;
          for (let x = 0; x < 4; x++) {
            const p = ((intraT[mbx * 4 + x] as number) * 10 + left) * 9;
            left = readSubblockMode(br, p);
            intraT[mbx * 4 + x] = left;
            modes[y * 4 + x] = left;
          }
          intraL[y] = left;
        }
      }
      const uvmode = !br.bit(142) ? predDc : !br.bit(114) ? predVe : br.bit(183) ? predTm : predHe;

      // --- residuals (§13), from the row's token partition ---
      // Coefficients are all zero here: addResidual clears what it reads.
      setBytes(blockNz, 0, 24, 0);
      let anyNonZero = false;
      const tn = mbx * 9;
      if (!skip) {
        const q = segment * 6;
        let first = 0;
        let acType = 3;
        if (!i4x4) {
          dc.fill(0);
          const ctx = (topNz[tn + 8] as number) + (leftNz[8] as number);
          const nz = coeffDecoder.read(tokens, 1, ctx, dq[q + 2] as number, dq[q + 3] as number, 0, dc, 0);
          const flag = nz > 0 ? 1 : 0;
          topNz[tn + 8] = flag;
          leftNz[8] = flag;
          if (nz > 1) inverseWht(dc, coeffs);
          else {
            const dc0 = ((dc[0] as number) + 3) >> 3;
            for (let i = 0; i < 256; i += 16) coeffs[i] = dc0;
          }
          first = 1;
          acType = 0;
        }
        for (let y = 0; y < 4; y++) {
          let l = leftNz[y] as number;
          for (let x = 0; x < 4; x++) {
            const n = y * 4 + x;
            const ctx = l + (topNz[tn + x] as number);
            const nz = coeffDecoder.read(
              tokens,
              acType,
              ctx,
              dq[q] as number,
              dq[q + 1] as number,
              first,
              coeffs,
              n * 16,
            );
            l = nz > first ? 1 : 0;
            topNz[tn + x] = l;
            const kind = nz > 1 ? 2 : coeffs[n * 16] !== 0 ? 1 : 0;
            blockNz[n] = kind;
            if (kind) anyNonZero = true;
          }
          leftNz[y] = l;
        }
        for (let ch = 0; ch < 2; ch++) {
          for (let y = 0; y < 2; y++) {
            let l = leftNz[4 + ch * 2 + y] as number;
            for (let x = 0; x < 2; x++) {
              const n = 16 + ch * 4 + y * 2 + x;
              const ctx = l + (topNz[tn + 4 + ch * 2 + x] as number);
              const nz = coeffDecoder.read(
                tokens,
                2,
                ctx,
                dq[q + 4] as number,
                dq[q + 5] as number,
                0,
                coeffs,
                n * 16,
              );
              l = nz > 0 ? 1 : 0;
              topNz[tn + 4 + ch * 2 + x] = l;
              const kind = nz > 1 ? 2 : coeffs[n * 16] !== 0 ? 1 : 0;
              blockNz[n] = kind;
              if (kind) anyNonZero = true;
            }
            leftNz[4 + ch * 2 + y] = l;
          }
        }
        if (tokens.eof) refuse('truncated', 'WebP lossy data ends early');
      } else {
        setBytes(topNz, tn, 8, 0);
        setBytes(leftNz, 0, 8, 0);
        if (!i4x4) {
          topNz[tn + 8] = 0;
          leftNz[8] = 0;
        }
      }
      if (filterType > 0)
        mbFilter[mby * mbw + mbx] = (segment * 2 + (i4x4 ? 1 : 0)) | ((anyNonZero ? 1 : 0) << 3);

      // --- reconstruction (libwebp ReconstructRow) ---
      if (mbx > 0) {
        for (let j = -1; j < 16; j++) copy(work, yOff + j * bps + 12, work, yOff + j * bps - 4, 4);
        for (let j = -1; j < 8; j++) {
          copy(work, uOff + j * bps + 4, work, uOff + j * bps - 4, 4);
          copy(work, vOff + j * bps + 4, work, vOff + j * bps - 4, 4);
        }
      }
      if (mby > 0) {
        copy(topY, mbx * 16, work, yOff - bps, 16);
        copy(topU, mbx * 8, work, uOff - bps, 8);
        copy(topV, mbx * 8, work, vOff - bps, 8);
      }
      if (i4x4) {
        const topRight = yOff - bps + 16;
        if (mby > 0) {
          if (mbx >= mbw - 1) setBytes(work, topRight, 4, topY[mbx * 16 + 15] as number);
          else copy(topY, mbx * 16 + 16, work, topRight, 4);
        }
        for (let k = 1; k <= 3; k++) copy(work, topRight, work, topRight + k * 4 * bps, 4);
        for (let n = 0; n < 16; n++) {
          const dst = yOff + (scan[n] as number);
          predict4(work, dst, modes[n] as number);
          addResidual(coeffs, n * 16, blockNz[n] as number, work, dst);
        }
      } else {
        predict16(work, yOff, checkMode(mbx, mby, ymode));
        for (let n = 0; n < 16; n++)
          addResidual(coeffs, n * 16, blockNz[n] as number, work, yOff + (scan[n] as number));
      }
      const uvPred = checkMode(mbx, mby, uvmode);
      predict8(work, uOff, uvPred);
      predict8(work, vOff, uvPred);
      for (let n = 0; n < 4; n++) {
        const o = (n & 1) * 4 + (n >> 1) * 4 * bps;
        addResidual(coeffs, (16 + n) * 16, blockNz[16 + n] as number, work, uOff + o);
        addResidual(coeffs, (20 + n) * 16, blockNz[20 + n] as number, work, vOff + o);
      }
      if (mby < mbh - 1) {
        copy(work, yOff + 15 * bps, topY, mbx * 16, 16);
        copy(work, uOff + 7 * bps, topU, mbx * 8, 8);
        copy(work, vOff + 7 * bps, topV, mbx * 8, 8);
      }
      for (let j = 0; j < 16; j++)
        copy(work, yOff + j * bps, yPlane, (mby * 16 + j) * yStride + mbx * 16, 16);
      for (let j = 0; j < 8; j++) {
        copy(work, uOff + j * bps, uPlane, (mby * 8 + j) * uvStride + mbx * 8, 8);
        copy(work, vOff + j * bps, vPlane, (mby * 8 + j) * uvStride + mbx * 8, 8);
      }
    }
    if (br.eof) refuse('truncated', 'WebP lossy mode data ends early');
  }

  if (filterType > 0) {
    for (let mby = 0; mby < mbh; mby++) {
      budget.tick();
      for (let mbx = 0; mbx < mbw; mbx++) {
        const info = mbFilter[mby * mbw + mbx] as number;
        const f = filters[info & 7] as FilterParams;
        const limit = f.limit;
        if (limit === 0) continue;
        const inner = f.inner | (info >> 3);
        const yp = mby * 16 * yStride + mbx * 16;
        if (filterType === 1) {
          if (mbx > 0) simpleFilter16(yPlane, yp, 1, yStride, limit + 4);
          if (inner) for (let k = 4; k < 16; k += 4) simpleFilter16(yPlane, yp + k, 1, yStride, limit);
          if (mby > 0) simpleFilter16(yPlane, yp, yStride, 1, limit + 4);
          if (inner)
            for (let k = 4; k < 16; k += 4) simpleFilter16(yPlane, yp + k * yStride, yStride, 1, limit);
        } else {
          const up = mby * 8 * uvStride + mbx * 8;
          const { ilevel, hevThresh } = f;
          if (mbx > 0) {
            filterEdge(yPlane, yp, 1, yStride, 16, limit + 4, ilevel, hevThresh, true);
            filterEdge(uPlane, up, 1, uvStride, 8, limit + 4, ilevel, hevThresh, true);
            filterEdge(vPlane, up, 1, uvStride, 8, limit + 4, ilevel, hevThresh, true);
          }
          if (inner) {
            for (let k = 4; k < 16; k += 4)
              filterEdge(yPlane, yp + k, 1, yStride, 16, limit, ilevel, hevThresh, false);
            filterEdge(uPlane, up + 4, 1, uvStride, 8, limit, ilevel, hevThresh, false);
            filterEdge(vPlane, up + 4, 1, uvStride, 8, limit, ilevel, hevThresh, false);
          }
          if (mby > 0) {
            filterEdge(yPlane, yp, yStride, 1, 16, limit + 4, ilevel, hevThresh, true);
            filterEdge(uPlane, up, uvStride, 1, 8, limit + 4, ilevel, hevThresh, true);
            filterEdge(vPlane, up, uvStride, 1, 8, limit + 4, ilevel, hevThresh, true);
          }
          if (inner) {
            for (let k = 4; k < 16; k += 4)
              filterEdge(yPlane, yp + k * yStride, yStride, 1, 16, limit, ilevel, hevThresh, false);
            filterEdge(uPlane, up + 4 * uvStride, uvStride, 1, 8, limit, ilevel, hevThresh, false);
            filterEdge(vPlane, up + 4 * uvStride, uvStride, 1, 8, limit, ilevel, hevThresh, false);
          }
        }
      }
    }
  }

  const rgba = budget.bytes(width * height * 4, 'WebP lossy RGBA');
  upsampleToRgba(yPlane, yStride, uPlane, vPlane, uvStride, width, height, rgba, budget);
  return { width, height, rgba };
}

/** Sub-block mode tree (RFC 6386 §11.2) with the probabilities at `bModesProba[p..]`. */
function readSubblockMode(br: BoolDecoder, p: number): number {
  const prob = bModesProba;
  if (!br.bit(prob[p] as number)) return 0;
  if (!br.bit(prob[p + 1] as number)) return 1;
  if (!br.bit(prob[p + 2] as number)) return 2;
  if (!br.bit(prob[p + 3] as number)) {
    if (!br.bit(prob[p + 4] as number)) return 3;
    return br.bit(prob[p + 5] as number) ? 5 : 4;
  }
  if (!br.bit(prob[p + 6] as number)) return 6;
  if (!br.bit(prob[p + 7] as number)) return 7;
  return br.bit(prob[p + 8] as number) ? 9 : 8;
}

/** Small fills: cheaper than TypedArray.fill for a few bytes. */
function setBytes(to: Uint8Array, at: number, n: number, v: number): void {
  for (let i = 0; i < n; i++) to[at + i] = v;
}

/** Small copies: cheaper than subarray + set for a few bytes. */
function copy(from: Uint8Array, at: number, to: Uint8Array, dst: number, n: number): void {
  for (let i = 0; i < n; i++) to[dst + i] = from[at + i] as number;
}

const checkMode = (mbx: number, mby: number, mode: number): number =>
  mode !== predDc
    ? mode
    : mbx === 0
      ? mby === 0
        ? predDcNoTopLeft
        : predDcNoLeft
      : mby === 0
        ? predDcNoTop
        : predDc;

/** Token reading (libwebp GetCoeffs / GetLargeValue, RFC 6386 §13.2). */
class CoeffDecoder {
  constructor(private readonly probs: Uint8Array) {}

  /**
   * Reads one block's tokens from position `n`; returns 1 + the last non-zero position
   * (0 if none). The boolean decoder's state is kept in locals here (BoolDecoder.bit's
   * steps written out): this loop is the hottest of a lossy decode.
   */
  read(
    br: BoolDecoder,
    type: number,
    ctx: number,
    dcq: number,
    acq: number,
    start: number,
    out: Int16Array,
    off: number,
  ): number {
    const probs = this.probs;
    const data = br.data;
    const end = br.end;
    let pos = br.pos;
    let value = br.value;
    let range = br.range;
    let bits = br.bits;
    let eof = br.eof;
    let n = start;
    let p = ((type * 8 + (bands[n] as number)) * 3 + ctx) * 11;
    let last = 16;
    let bit = 0;
    for (; n < 16; n++) {
      {
        if (bits < 0) {
          if (pos < end) {
            bits += 8;
            value = (data[pos++] as number) | (value << 8);
          } else if (!eof) {
            value <<= 8;
            bits += 8;
            eof = true;
          } else bits = 0;
        }
        const split = (range * (probs[p] as number)) >>> 8;
        if (value >>> bits > split) {
          range -= split;
          value -= (split + 1) << bits;
          bit = 1;
        } else {
          range = split + 1;
          bit = 0;
        }
        const shift = 7 ^ (31 - Math.clz32(range));
        bits -= shift;
        range = (range << shift) - 1;
      }
      if (!bit) {
        last = n;
        break;
      }
      for (;;) {
        {
          if (bits < 0) {
            if (pos < end) {
              bits += 8;
              value = (data[pos++] as number) | (value << 8);
            } else if (!eof) {
              value <<= 8;
              bits += 8;
              eof = true;
            } else bits = 0;
          }
          const split = (range * (probs[p + 1] as number)) >>> 8;
          if (value >>> bits > split) {
            range -= split;
            value -= (split + 1) << bits;
            bit = 1;
          } else {
            range = split + 1;
            bit = 0;
          }
          const shift = 7 ^ (31 - Math.clz32(range));
          bits -= shift;
          range = (range << shift) - 1;
        }
        if (bit) break;
        if (++n === 16) break;
        p = (type * 8 + (bands[n] as number)) * 33;
      }
      if (n === 16) break;
      const next = (type * 8 + (bands[n + 1] as number)) * 33;
      let v: number;
      {
        if (bits < 0) {
          if (pos < end) {
            bits += 8;
            value = (data[pos++] as number) | (value << 8);
          } else if (!eof) {
            value <<= 8;
            bits += 8;
            eof = true;
          } else bits = 0;
        }
        const split = (range * (probs[p + 2] as number)) >>> 8;
        if (value >>> bits > split) {
          range -= split;
          value -= (split + 1) << bits;
          bit = 1;
        } else {
          range = split + 1;
          bit = 0;
        }
        const shift = 7 ^ (31 - Math.clz32(range));
        bits -= shift;
        range = (range << shift) - 1;
      }
      if (!bit) {
        v = 1;
        p = next + 11;
      } else {
        br.pos = pos;
        br.value = value;
        br.range = range;
        br.bits = bits;
        br.eof = eof;
        v = largeValue(br, probs, p);
        pos = br.pos;
        value = br.value;
        range = br.range;
        bits = br.bits;
        eof = br.eof;
        p = next + 22;
      }
      {
        if (bits < 0) {
          if (pos < end) {
            bits += 8;
            value = (data[pos++] as number) | (value << 8);
          } else if (!eof) {
            value <<= 8;
            bits += 8;
            eof = true;
          } else bits = 0;
        }
        const split = (range * 0x80) >>> 8;
        if (value >>> bits > split) {
          range -= split;
          value -= (split + 1) << bits;
          bit = 1;
        } else {
          range = split + 1;
          bit = 0;
        }
        const shift = 7 ^ (31 - Math.clz32(range));
        bits -= shift;
        range = (range << shift) - 1;
      }
      out[off + (zigzag[n] as number)] = (bit ? -v : v) * (n > 0 ? acq : dcq);
    }
    br.pos = pos;
    br.value = value;
    br.range = range;
    br.bits = bits;
    br.eof = eof;
    return last;
  }
}

function largeValue(br: BoolDecoder, probs: Uint8Array, p: number): number {
  if (!br.bit(probs[p + 3] as number)) {
    if (!br.bit(probs[p + 4] as number)) return 2;
    return 3 + br.bit(probs[p + 5] as number);
  }
  if (!br.bit(probs[p + 6] as number)) {
    if (!br.bit(probs[p + 7] as number)) return 5 + br.bit(159);
    return 7 + 2 * br.bit(165) + br.bit(145);
  }
  const bit1 = br.bit(probs[p + 8] as number);
  const bit0 = br.bit(probs[p + 9 + bit1] as number);
  const cat = 2 * bit1 + bit0;
  let v = 0;
  for (const prob of catProbs[cat] as number[]) v = 2 * v + br.bit(prob);
  return v + 3 + (8 << cat);
}

/** Inverse Walsh-Hadamard transform of the Y2 block into the 16 luma DCs (libwebp TransformWHT). */
const whtTmp = new Int32Array(16);
function inverseWht(input: Int16Array, out: Int16Array): void {
  const tmp = whtTmp;
  for (let i = 0; i < 4; i++) {
    const a0 = (input[i] as number) + (input[12 + i] as number);
    const a1 = (input[4 + i] as number) + (input[8 + i] as number);
    const a2 = (input[4 + i] as number) - (input[8 + i] as number);
    const a3 = (input[i] as number) - (input[12 + i] as number);
    tmp[i] = a0 + a1;
    tmp[8 + i] = a0 - a1;
    tmp[4 + i] = a3 + a2;
    tmp[12 + i] = a3 - a2;
  }
  for (let i = 0; i < 4; i++) {
    const dcv = (tmp[i * 4] as number) + 3;
    const a0 = dcv + (tmp[3 + i * 4] as number);
    const a1 = (tmp[1 + i * 4] as number) + (tmp[2 + i * 4] as number);
    const a2 = (tmp[1 + i * 4] as number) - (tmp[2 + i * 4] as number);
    const a3 = dcv - (tmp[3 + i * 4] as number);
    const o = i * 64;
    out[o] = (a0 + a1) >> 3;
    out[o + 16] = (a3 + a2) >> 3;
    out[o + 32] = (a0 - a1) >> 3;
    out[o + 48] = (a3 - a2) >> 3;
  }
}

const clip8 = (v: number): number => (v < 0 ? 0 : Math.min(v, 255));
const mul1 = (a: number): number => ((a * 20091) >> 16) + a;
const mul2 = (a: number): number => (a * 35468) >> 16;
const idctTmp = new Int32Array(16);

/** Adds a block's inverse DCT to the prediction at `dst` (libwebp TransformOne / TransformDC). */
function addResidual(c: Int16Array, o: number, kind: number, buf: Uint8Array, dst: number): void {
  if (kind === 0) return;
  if (kind === 1) {
    const dcv = ((c[o] as number) + 4) >> 3;
    c[o] = 0;
    for (let y = 0; y < 4; y++)
      for (let x = 0; x < 4; x++) {
        const p = dst + y * bps + x;
        buf[p] = clip8((buf[p] as number) + dcv);
      }
    return;
  }
  const tmp = idctTmp;
  for (let i = 0; i < 4; i++) {
    const i0 = c[o + i] as number;
    const i4 = c[o + 4 + i] as number;
    const i8 = c[o + 8 + i] as number;
    const i12 = c[o + 12 + i] as number;
    c[o + i] = 0;
    c[o + 4 + i] = 0;
    c[o + 8 + i] = 0;
    c[o + 12 + i] = 0;
    const a = i0 + i8;
    const b = i0 - i8;
    const cc = mul2(i4) - mul1(i12);
    const d = mul1(i4) + mul2(i12);
    tmp[i * 4] = a + d;
    tmp[i * 4 + 1] = b + cc;
    tmp[i * 4 + 2] = b - cc;
    tmp[i * 4 + 3] = a - d;
  }
  for (let i = 0; i < 4; i++) {
    const dcv = (tmp[i] as number) + 4;
    const a = dcv + (tmp[8 + i] as number);
    const b = dcv - (tmp[8 + i] as number);
    const cc = mul2(tmp[4 + i] as number) - mul1(tmp[12 + i] as number);
    const d = mul1(tmp[4 + i] as number) + mul2(tmp[12 + i] as number);
    const p = dst + i * bps;
    buf[p] = clip8((buf[p] as number) + ((a + d) >> 3));
    buf[p + 1] = clip8((buf[p + 1] as number) + ((b + cc) >> 3));
    buf[p + 2] = clip8((buf[p + 2] as number) + ((b - cc) >> 3));
    buf[p + 3] = clip8((buf[p + 3] as number) + ((a - d) >> 3));
  }
}

// --- intra prediction (libwebp src/dsp/dec.c) ---------------------------------------------

function trueMotion(b: Uint8Array, dst: number, size: number): void {
  const topLeft = b[dst - bps - 1] as number;
  for (let y = 0; y < size; y++) {
    const left = (b[dst + y * bps - 1] as number) - topLeft;
    for (let x = 0; x < size; x++) b[dst + y * bps + x] = clip8((b[dst - bps + x] as number) + left);
  }
}

function fill(b: Uint8Array, dst: number, size: number, v: number): void {
  for (let y = 0; y < size; y++) setBytes(b, dst + y * bps, size, v);
}

function predictBlock(b: Uint8Array, dst: number, size: number, mode: number): void {
  const shift = size === 16 ? 4 : 3;
  switch (mode) {
    case predTm:
      trueMotion(b, dst, size);
      return;
    case predVe:
      for (let y = 0; y < size; y++) copy(b, dst - bps, b, dst + y * bps, size);
      return;
    case predHe:
      for (let y = 0; y < size; y++) setBytes(b, dst + y * bps, size, b[dst + y * bps - 1] as number);
      return;
    case predDc: {
      let s = size;
      for (let i = 0; i < size; i++) s += (b[dst - bps + i] as number) + (b[dst + i * bps - 1] as number);
      fill(b, dst, size, s >> (shift + 1));
      return;
    }
    case predDcNoTop: {
      let s = size >> 1;
      for (let i = 0; i < size; i++) s += b[dst + i * bps - 1] as number;
      fill(b, dst, size, s >> shift);
      return;
    }
    case predDcNoLeft: {
      let s = size >> 1;
      for (let i = 0; i < size; i++) s += b[dst - bps + i] as number;
      fill(b, dst, size, s >> shift);
      return;
    }
    default:
      fill(b, dst, size, 0x80);
      return;
  }
}

const predict16 = (b: Uint8Array, dst: number, mode: number) => predictBlock(b, dst, 16, mode);
const predict8 = (b: Uint8Array, dst: number, mode: number) => predictBlock(b, dst, 8, mode);

const avg3 = (a: number, b: number, c: number) => (a + 2 * b + c + 2) >> 2;
const avg2 = (a: number, b: number) => (a + b + 1) >> 1;

function predict4(b: Uint8Array, dst: number, mode: number): void {
  const top = dst - bps;
  const A = b[top] as number;
  const B = b[top + 1] as number;
  const C = b[top + 2] as number;
  const D = b[top + 3] as number;
  const E = b[top + 4] as number;
  const F = b[top + 5] as number;
  const G = b[top + 6] as number;
  const H = b[top + 7] as number;
  const X = b[top - 1] as number;
  const I = b[dst - 1] as number;
  const J = b[dst + bps - 1] as number;
  const K = b[dst + 2 * bps - 1] as number;
  const L = b[dst + 3 * bps - 1] as number;
  switch (mode) {
    case 0: {
      let s = 4;
      for (let i = 0; i < 4; i++) s += (b[top + i] as number) + (b[dst + i * bps - 1] as number);
      fill(b, dst, 4, s >> 3);
      return;
    }
    case 1:
      trueMotion(b, dst, 4);
      return;
    case 2: {
      const v0 = avg3(X, A, B);
      const v1 = avg3(A, B, C);
      const v2 = avg3(B, C, D);
      const v3 = avg3(C, D, E);
      for (let y = 0; y < 4; y++) {
        const o = dst + y * bps;
        b[o] = v0;
        b[o + 1] = v1;
        b[o + 2] = v2;
        b[o + 3] = v3;
      }
      return;
    }
    case 3: {
      setBytes(b, dst, 4, avg3(X, I, J));
      setBytes(b, dst + bps, 4, avg3(I, J, K));
      setBytes(b, dst + 2 * bps, 4, avg3(J, K, L));
      setBytes(b, dst + 3 * bps, 4, avg3(K, L, L));
      return;
    }
    case 4: // down-right
      b[dst + 96] = avg3(J, K, L);
      b[dst + 97] = avg3(I, J, K);
      b[dst + 64] = avg3(I, J, K);
      b[dst + 98] = avg3(X, I, J);
      b[dst + 65] = avg3(X, I, J);
      b[dst + 32] = avg3(X, I, J);
      b[dst + 99] = avg3(A, X, I);
      b[dst + 66] = avg3(A, X, I);
      b[dst + 33] = avg3(A, X, I);
      b[dst + 0] = avg3(A, X, I);
      b[dst + 67] = avg3(B, A, X);
      b[dst + 34] = avg3(B, A, X);
      b[dst + 1] = avg3(B, A, X);
      b[dst + 35] = avg3(C, B, A);
      b[dst + 2] = avg3(C, B, A);
      b[dst + 3] = avg3(D, C, B);
      return;
    case 5: // vertical-right
      b[dst + 0] = avg2(X, A);
      b[dst + 65] = avg2(X, A);
      b[dst + 1] = avg2(A, B);
      b[dst + 66] = avg2(A, B);
      b[dst + 2] = avg2(B, C);
      b[dst + 67] = avg2(B, C);
      b[dst + 3] = avg2(C, D);
      b[dst + 96] = avg3(K, J, I);
      b[dst + 64] = avg3(J, I, X);
      b[dst + 32] = avg3(I, X, A);
      b[dst + 97] = avg3(I, X, A);
      b[dst + 33] = avg3(X, A, B);
      b[dst + 98] = avg3(X, A, B);
      b[dst + 34] = avg3(A, B, C);
      b[dst + 99] = avg3(A, B, C);
      b[dst + 35] = avg3(B, C, D);
      return;
    case 6: // down-left
      b[dst + 0] = avg3(A, B, C);
      b[dst + 1] = avg3(B, C, D);
      b[dst + 32] = avg3(B, C, D);
      b[dst + 2] = avg3(C, D, E);
      b[dst + 33] = avg3(C, D, E);
      b[dst + 64] = avg3(C, D, E);
      b[dst + 3] = avg3(D, E, F);
      b[dst + 34] = avg3(D, E, F);
      b[dst + 65] = avg3(D, E, F);
      b[dst + 96] = avg3(D, E, F);
      b[dst + 35] = avg3(E, F, G);
      b[dst + 66] = avg3(E, F, G);
      b[dst + 97] = avg3(E, F, G);
      b[dst + 67] = avg3(F, G, H);
      b[dst + 98] = avg3(F, G, H);
      b[dst + 99] = avg3(G, H, H);
      return;
    case 7: // vertical-left
      b[dst + 0] = avg2(A, B);
      b[dst + 1] = avg2(B, C);
      b[dst + 64] = avg2(B, C);
      b[dst + 2] = avg2(C, D);
      b[dst + 65] = avg2(C, D);
      b[dst + 3] = avg2(D, E);
      b[dst + 66] = avg2(D, E);
      b[dst + 32] = avg3(A, B, C);
      b[dst + 33] = avg3(B, C, D);
      b[dst + 96] = avg3(B, C, D);
      b[dst + 34] = avg3(C, D, E);
      b[dst + 97] = avg3(C, D, E);
      b[dst + 35] = avg3(D, E, F);
      b[dst + 98] = avg3(D, E, F);
      b[dst + 67] = avg3(E, F, G);
      b[dst + 99] = avg3(F, G, H);
      return;
    case 8: // horizontal-down
      b[dst + 0] = avg2(I, X);
      b[dst + 34] = avg2(I, X);
      b[dst + 32] = avg2(J, I);
      b[dst + 66] = avg2(J, I);
      b[dst + 64] = avg2(K, J);
      b[dst + 98] = avg2(K, J);
      b[dst + 96] = avg2(L, K);
      b[dst + 3] = avg3(A, B, C);
      b[dst + 2] = avg3(X, A, B);
      b[dst + 1] = avg3(I, X, A);
      b[dst + 35] = avg3(I, X, A);
      b[dst + 33] = avg3(J, I, X);
      b[dst + 67] = avg3(J, I, X);
      b[dst + 65] = avg3(K, J, I);
      b[dst + 99] = avg3(K, J, I);
      b[dst + 97] = avg3(L, K, J);
      return;
    default: // 9, horizontal-up
      b[dst + 0] = avg2(I, J);
      b[dst + 2] = avg2(J, K);
      b[dst + 32] = avg2(J, K);
      b[dst + 34] = avg2(K, L);
      b[dst + 64] = avg2(K, L);
      b[dst + 1] = avg3(I, J, K);
      b[dst + 3] = avg3(J, K, L);
      b[dst + 33] = avg3(J, K, L);
      b[dst + 35] = avg3(K, L, L);
      b[dst + 65] = avg3(K, L, L);
      b[dst + 67] = L;
      b[dst + 66] = L;
      b[dst + 96] = L;
      b[dst + 97] = L;
      b[dst + 98] = L;
      b[dst + 99] = L;
      return;
  }
}

// --- loop filters (RFC 6386 §15, libwebp src/dsp/dec.c) --------------------------------------

const sclip1 = (v: number) => (v < -128 ? -128 : Math.min(v, 127));
const sclip2 = (v: number) => (v < -16 ? -16 : Math.min(v, 15));

/** Filters 2 pixels across the edge at `p` (step `s` crosses the edge). */
function doFilter2(b: Uint8Array, p: number, s: number): void {
  const p1 = b[p - 2 * s] as number;
  const p0 = b[p - s] as number;
  const q0 = b[p] as number;
  const q1 = b[p + s] as number;
  const a = 3 * (q0 - p0) + sclip1(p1 - q1);
  const a1 = sclip2((a + 4) >> 3);
  const a2 = sclip2((a + 3) >> 3);
  b[p - s] = clip8(p0 + a2);
  b[p] = clip8(q0 - a1);
}

function doFilter4(b: Uint8Array, p: number, s: number): void {
  const p1 = b[p - 2 * s] as number;
  const p0 = b[p - s] as number;
  const q0 = b[p] as number;
  const q1 = b[p + s] as number;
  const a = 3 * (q0 - p0);
  const a1 = sclip2((a + 4) >> 3);
  const a2 = sclip2((a + 3) >> 3);
  const a3 = (a1 + 1) >> 1;
  b[p - 2 * s] = clip8(p1 + a3);
  b[p - s] = clip8(p0 + a2);
  b[p] = clip8(q0 - a1);
  b[p + s] = clip8(q1 - a3);
}

function doFilter6(b: Uint8Array, p: number, s: number): void {
  const p2 = b[p - 3 * s] as number;
  const p1 = b[p - 2 * s] as number;
  const p0 = b[p - s] as number;
  const q0 = b[p] as number;
  const q1 = b[p + s] as number;
  const q2 = b[p + 2 * s] as number;
  const a = sclip1(3 * (q0 - p0) + sclip1(p1 - q1));
  const a1 = (27 * a + 63) >> 7;
  const a2 = (18 * a + 63) >> 7;
  const a3 = (9 * a + 63) >> 7;
  b[p - 3 * s] = clip8(p2 + a3);
  b[p - 2 * s] = clip8(p1 + a2);
  b[p - s] = clip8(p0 + a1);
  b[p] = clip8(q0 - a1);
  b[p + s] = clip8(q1 - a2);
  b[p + 2 * s] = clip8(q2 - a3);
}

/** Simple filter along 16 pixels of an edge: `s` crosses the edge, `along` moves along it. */
function simpleFilter16(b: Uint8Array, p: number, s: number, along: number, thresh: number): void {
  const t = 2 * thresh + 1;
  for (let i = 0; i < 16; i++, p += along) {
    const d =
      4 * Math.abs((b[p - s] as number) - (b[p] as number)) +
      Math.abs((b[p - 2 * s] as number) - (b[p + s] as number));
    if (d <= t) doFilter2(b, p, s);
  }
}

/** Normal filter along `size` pixels of a macroblock edge (6-tap) or an inner edge (4-tap). */
function filterEdge(
  b: Uint8Array,
  p: number,
  s: number,
  along: number,
  size: number,
  thresh: number,
  ithresh: number,
  hevThresh: number,
  macroblockEdge: boolean,
): void {
  const t = 2 * thresh + 1;
  for (let i = 0; i < size; i++, p += along) {
    const p1 = b[p - 2 * s] as number;
    const p0 = b[p - s] as number;
    const q0 = b[p] as number;
    const q1 = b[p + s] as number;
    if (4 * Math.abs(p0 - q0) + Math.abs(p1 - q1) > t) continue;
    if (Math.abs(p1 - p0) > ithresh || Math.abs(q1 - q0) > ithresh) continue;
    const p2 = b[p - 3 * s] as number;
    const q2 = b[p + 2 * s] as number;
    if (Math.abs(p2 - p1) > ithresh || Math.abs(q2 - q1) > ithresh) continue;
    if (
      Math.abs((b[p - 4 * s] as number) - p2) > ithresh ||
      Math.abs((b[p + 3 * s] as number) - q2) > ithresh
    )
      continue;
    const hev = Math.abs(p1 - p0) > hevThresh || Math.abs(q1 - q0) > hevThresh;
    if (hev) doFilter2(b, p, s);
    else if (macroblockEdge) doFilter6(b, p, s);
    else doFilter4(b, p, s);
  }
}

// --- fancy upsampling and YUV → RGB (libwebp src/dsp/upsampling.c, yuv.h) ---------------------

const yTerm = new Int32Array(256);
const vToR = new Int32Array(256);
const uToG = new Int32Array(256);
const vToG = new Int32Array(256);
const uToB = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  yTerm[i] = (i * 19077) >> 8;
  vToR[i] = ((i * 26149) >> 8) - 14234;
  uToG[i] = (i * 6419) >> 8;
  vToG[i] = ((i * 13320) >> 8) - 8708;
  uToB[i] = ((i * 33050) >> 8) - 17685;
}
const clipRgb = (v: number) => ((v & ~16383) === 0 ? v >> 6 : v < 0 ? 0 : 255);

/**
 * Chroma of the two output rows between chroma rows `top` and `cur` (libwebp
 * UpsampleRgbaLinePair): the upper row weighs `top` 3:1, the lower `cur`, and each
 * interpolates horizontally the same way; both rows share the diagonal sums.
 */
function upsamplePair(
  plane: Uint8Array,
  top: number,
  cur: number,
  width: number,
  upper: Uint8Array,
  lower: Uint8Array,
): void {
  const lastPair = (width - 1) >> 1;
  let tl = plane[top] as number;
  let l = plane[cur] as number;
  upper[0] = (3 * tl + l + 2) >> 2;
  lower[0] = (3 * l + tl + 2) >> 2;
  for (let x = 1; x <= lastPair; x++) {
    const t = plane[top + x] as number;
    const uv = plane[cur + x] as number;
    const avg = tl + t + l + uv + 8;
    const diag12 = (avg + 2 * (t + l)) >> 3;
    const diag03 = (avg + 2 * (tl + uv)) >> 3;
    upper[2 * x - 1] = (diag12 + tl) >> 1;
    upper[2 * x] = (diag03 + t) >> 1;
    lower[2 * x - 1] = (diag03 + l) >> 1;
    lower[2 * x] = (diag12 + uv) >> 1;
    tl = t;
    l = uv;
  }
  if (!(width & 1)) {
    upper[width - 1] = (3 * tl + l + 2) >> 2;
    lower[width - 1] = (3 * l + tl + 2) >> 2;
  }
}

const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** One row of RGBA from luma and per-pixel chroma (libwebp VP8YuvToRgba). */
function convertRow(
  yPlane: Uint8Array,
  yRow: number,
  rowU: Uint8Array,
  rowV: Uint8Array,
  width: number,
  rgba: Uint8Array,
  words: Uint32Array | undefined,
  r: number,
): void {
  if (words) {
    // One 32-bit store per pixel (RGBA in memory order on a little-endian machine).
    const o = r * width;
    for (let x = 0; x < width; x++) {
      const y = yTerm[yPlane[yRow + x] as number] as number;
      const u = rowU[x] as number;
      const v = rowV[x] as number;
      words[o + x] =
        clipRgb(y + (vToR[v] as number)) |
        (clipRgb(y - (uToG[u] as number) - (vToG[v] as number)) << 8) |
        (clipRgb(y + (uToB[u] as number)) << 16) |
        0xff000000;
    }
    return;
  }
  let o = r * width * 4;
  for (let x = 0; x < width; x++, o += 4) {
    const y = yTerm[yPlane[yRow + x] as number] as number;
    const u = rowU[x] as number;
    const v = rowV[x] as number;
    rgba[o] = clipRgb(y + (vToR[v] as number));
    rgba[o + 1] = clipRgb(y - (uToG[u] as number) - (vToG[v] as number));
    rgba[o + 2] = clipRgb(y + (uToB[u] as number));
    rgba[o + 3] = 255;
  }
}

function upsampleToRgba(
  yPlane: Uint8Array,
  yStride: number,
  uPlane: Uint8Array,
  vPlane: Uint8Array,
  uvStride: number,
  width: number,
  height: number,
  rgba: Uint8Array,
  budget: DecodeBudget,
): void {
  const uvHeight = (height + 1) >> 1;
  const upperU = new Uint8Array(width);
  const upperV = new Uint8Array(width);
  const lowerU = new Uint8Array(width);
  const lowerV = new Uint8Array(width);
  const words =
    littleEndian && rgba.byteOffset % 4 === 0
      ? new Uint32Array(rgba.buffer, rgba.byteOffset, width * height)
      : undefined;
  // Row 0 has only chroma row 0 (both weights on it); then rows 2k-1 and 2k lie between
  // chroma rows k-1 and k; an even height's last row has only the last chroma row.
  upsamplePair(uPlane, 0, 0, width, upperU, lowerU);
  upsamplePair(vPlane, 0, 0, width, upperV, lowerV);
  convertRow(yPlane, 0, upperU, upperV, width, rgba, words, 0);
  for (let r = 1; r < height; r += 2) {
    if ((r & 63) === 1) budget.tick();
    const k = (r + 1) >> 1;
    const top = (k - 1) * uvStride;
    const cur = Math.min(k, uvHeight - 1) * uvStride;
    upsamplePair(uPlane, top, cur, width, upperU, lowerU);
    upsamplePair(vPlane, top, cur, width, upperV, lowerV);
    convertRow(yPlane, r * yStride, upperU, upperV, width, rgba, words, r);
    if (r + 1 < height) convertRow(yPlane, (r + 1) * yStride, lowerU, lowerV, width, rgba, words, r + 1);
  }
}
