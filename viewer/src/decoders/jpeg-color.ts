/**
 * JPEG planes → RGBA: libjpeg's "fancy" chroma upsampling (jdsample.c: h2v1, h1v2, h2v2
 * triangle filters; replication for other ratios) and its fixed-point YCbCr→RGB
 * (jdcolor.c), so results match libjpeg-turbo/libvips closely. CMYK/YCCK follow the Adobe
 * convention (inverted samples when an Adobe APP14 marker is present).
 */
import type { DecodeBudget } from './budget.ts';
import type { JpegPlanes } from './jpeg-core.ts';

const scaleBits = 16;
const half = 1 << (scaleBits - 1);
const fix = (x: number) => Math.round(x * (1 << scaleBits));
const crR = new Int32Array(256);
const cbB = new Int32Array(256);
const crG = new Int32Array(256);
const cbG = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  crR[i] = (fix(1.402) * x + half) >> scaleBits;
  cbB[i] = (fix(1.772) * x + half) >> scaleBits;
  crG[i] = -fix(0.71414) * x;
  cbG[i] = -fix(0.34414) * x + half;
}
/**
 * libjpeg's range limit: 0..255 for -384..639, wrapping outside (only reached by damaged
 * data, where any value is as good as another) instead of a branch per sample.
 */
const rangeLimit = new Uint8Array(1024);
for (let i = 0; i < 1024; i++) rangeLimit[i] = Math.max(0, Math.min(255, i - 384));
const clamp = (v: number) => rangeLimit[(v + 384) & 1023] as number;

export type JpegColour = 'grey' | 'ycbcr' | 'rgb' | 'cmyk' | 'ycck';

type PlaneComponent = JpegPlanes['components'][number];

/** Offset of sample row `r` of a component in its plane (which may hold only some rows). */
const rowAt = (c: PlaneComponent, r: number) => (r % c.rows) * c.stride;

/** Writes output row `y` of one subsampled component at full resolution into `out`. */
function upsampleRow(
  c: JpegPlanes['components'][number],
  maxH: number,
  maxV: number,
  fancy: boolean,
  width: number,
  y: number,
  out: Uint8Array,
): void {
  const rh = maxH / c.h;
  const rv = maxV / c.v;
  const cw = c.width;
  const ch = c.height;
  const src = c.plane;
  if (fancy && rh === 2 && rv === 1) {
    h2v1Row(src, rowAt(c, y), cw, out, 0, width);
  } else if (fancy && rh === 1 && rv === 2) {
    const sy = y >> 1;
    const other = y & 1 ? Math.min(sy + 1, ch - 1) : Math.max(sy - 1, 0);
    const bias = y & 1 ? 2 : 1;
    const a = rowAt(c, sy);
    const b = rowAt(c, other);
    for (let x = 0; x < width; x++)
      out[x] = ((src[a + x] as number) * 3 + (src[b + x] as number) + bias) >> 2;
  } else if (fancy && rh === 2 && rv === 2) {
    const sy = y >> 1;
    const other = y & 1 ? Math.min(sy + 1, ch - 1) : Math.max(sy - 1, 0);
    h2v2Row(src, rowAt(c, sy), rowAt(c, other), cw, out, 0, width);
  } else {
    // Other ratios, and every ratio without fancy upsampling: replication, as libjpeg's
    // int_upsample (h2v1_upsample and h2v2_upsample give the same samples).
    const row = rowAt(c, Math.min(Math.floor((y * c.v) / maxV), ch - 1));
    for (let x = 0; x < width; x++)
      out[x] = src[row + Math.min(Math.floor((x * c.h) / maxH), cw - 1)] as number;
  }
}

function h2v1Row(src: Uint8Array, a: number, cw: number, out: Uint8Array, o: number, width: number): void {
  if (cw === 1) {
    out[o] = src[a] as number;
    if (width > 1) out[o + 1] = src[a] as number;
    return;
  }
  out[o] = src[a] as number;
  out[o + 1] = ((src[a] as number) * 3 + (src[a + 1] as number) + 2) >> 2;
  for (let i = 1; i < cw - 1; i++) {
    const v = (src[a + i] as number) * 3;
    out[o + 2 * i] = (v + (src[a + i - 1] as number) + 1) >> 2;
    out[o + 2 * i + 1] = (v + (src[a + i + 1] as number) + 2) >> 2;
  }
  const last = cw - 1;
  const v = (src[a + last] as number) * 3;
  if (2 * last < width) out[o + 2 * last] = (v + (src[a + last - 1] as number) + 1) >> 2;
  if (2 * last + 1 < width) out[o + 2 * last + 1] = src[a + last] as number;
}

function h2v2Row(
  src: Uint8Array,
  a: number,
  b: number,
  cw: number,
  out: Uint8Array,
  o: number,
  width: number,
): void {
  // Column sums of the two contributing rows, weighted 3:1 (jdsample.c h2v2_fancy_upsample).
  let thisSum = (src[a] as number) * 3 + (src[b] as number);
  if (cw === 1) {
    out[o] = (thisSum * 4 + 8) >> 4;
    if (width > 1) out[o + 1] = (thisSum * 4 + 7) >> 4;
    return;
  }
  let nextSum = (src[a + 1] as number) * 3 + (src[b + 1] as number);
  out[o] = (thisSum * 4 + 8) >> 4;
  out[o + 1] = (thisSum * 3 + nextSum + 7) >> 4;
  let lastSum = thisSum;
  thisSum = nextSum;
  for (let i = 1; i < cw - 1; i++) {
    nextSum = (src[a + i + 1] as number) * 3 + (src[b + i + 1] as number);
    out[o + 2 * i] = (thisSum * 3 + lastSum + 8) >> 4;
    out[o + 2 * i + 1] = (thisSum * 3 + nextSum + 7) >> 4;
    lastSum = thisSum;
    thisSum = nextSum;
  }
  const last = cw - 1;
  if (2 * last < width) out[o + 2 * last] = (thisSum * 3 + lastSum + 8) >> 4;
  if (2 * last + 1 < width) out[o + 2 * last + 1] = (thisSum * 4 + 7) >> 4;
}

/**
 * What writes image rows [y0, y1) of `planes` into `out` (width × height RGBA), for
 * jpeg-core's row sink. Row buffers are allocated here, once.
 */
export function rgbaRowWriter(
  planes: JpegPlanes,
  colour: JpegColour,
  adobe: boolean,
  budget: DecodeBudget,
  out: Uint8Array,
): (y0: number, y1: number) => void {
  if (colour === 'ycbcr' && littleEndian) {
    const fused = fusedYcbcrRows(planes, out, budget);
    if (fused) return fused;
  }
  const { width, maxH, maxV } = planes;
  // Full-resolution components are read in place; subsampled ones are upsampled one row
  // at a time into a row buffer (no full-size copy).
  const sources = planes.components.map((c) => {
    const full = c.h === maxH && c.v === maxV;
    return {
      c,
      full,
      row: full ? c.plane : budget.bytes(width, 'JPEG upsampled row'),
    };
  });
  // One 32-bit store per pixel where the byte order allows it.
  const out32 = littleEndian ? new Uint32Array(out.buffer, out.byteOffset, out.length >> 2) : undefined;
  const s0 = sources[0] as (typeof sources)[number];
  const s1 = sources[1] ?? s0;
  const s2 = sources[2] ?? s0;
  const s3 = sources[3] ?? s0;
  const y0 = s0.row;
  const c1 = s1.row;
  const c2 = s2.row;
  const k3 = s3.row;
  return (yFrom, yTo) => {
    for (let y = yFrom; y < yTo; y++) {
      budget.tick();
      for (const src of sources)
        if (!src.full) upsampleRow(src.c, maxH, maxV, planes.fancy, width, y, src.row);
      let o = y * width * 4;
      let i0 = s0.full ? rowAt(s0.c, y) : 0;
      let i1 = s1.full ? rowAt(s1.c, y) : 0;
      let i2 = s2.full ? rowAt(s2.c, y) : 0;
      let i3 = s3.full ? rowAt(s3.c, y) : 0;
      const end = i0 + width;
      if (colour === 'grey') {
        for (; i0 < end; i0++, o += 4) {
          const v = y0[i0] as number;
          out[o] = v;
          out[o + 1] = v;
          out[o + 2] = v;
          out[o + 3] = 255;
        }
      } else if (colour === 'ycbcr' && out32) {
        ycbcrRow32(y0, i0, c1, i1, c2, i2, out32, o >> 2, width);
      } else if (colour === 'ycbcr') {
        ycbcrRow(y0, i0, c1, i1, c2, i2, out, o, width);
      } else if (colour === 'rgb') {
        for (; i0 < end; i0++, i1++, i2++, o += 4) {
          out[o] = y0[i0] as number;
          out[o + 1] = c1[i1] as number;
          out[o + 2] = c2[i2] as number;
          out[o + 3] = 255;
        }
      } else {
        for (; i0 < end; i0++, i1++, i2++, i3++, o += 4) {
          const a = y0[i0] as number;
          const b1 = c1[i1] as number;
          const b2 = c2[i2] as number;
          let r = a;
          let g = b1;
          let b = b2;
          if (colour === 'ycck') {
            // YCCK decodes to inverted C, M, Y (jdcolor.c ycck_cmyk_convert).
            r = 255 - clamp(a + (crR[b2] as number));
            g = 255 - clamp(a + (((cbG[b1] as number) + (crG[b2] as number)) >> scaleBits));
            b = 255 - clamp(a + (cbB[b1] as number));
          }
          // Adobe files store inverted CMYK (255 = no ink): R = C·K/255 on stored values.
          const k = k3[i3] as number;
          const kk = adobe ? k : 255 - k;
          out[o] = (((adobe ? r : 255 - r) * kk + 127) / 255) | 0;
          out[o + 1] = (((adobe ? g : 255 - g) * kk + 127) / 255) | 0;
          out[o + 2] = (((adobe ? b : 255 - b) * kk + 127) / 255) | 0;
          out[o + 3] = 255;
        }
      }
    }
  };
}

const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** One row of YCbCr → RGBA as little-endian 32-bit pixels (R in the low byte, A = 255). */
function ycbcrRow32(
  y0: Uint8Array,
  i0: number,
  c1: Uint8Array,
  i1: number,
  c2: Uint8Array,
  i2: number,
  out: Uint32Array,
  o: number,
  width: number,
): void {
  for (let x = 0; x < width; x++) {
    const l = (y0[i0 + x] as number) + 384;
    const cb = c1[i1 + x] as number;
    const cr = c2[i2 + x] as number;
    const r = rangeLimit[(l + (crR[cr] as number)) & 1023] as number;
    const g = rangeLimit[(l + (((cbG[cb] as number) + (crG[cr] as number)) >> scaleBits)) & 1023] as number;
    const b = rangeLimit[(l + (cbB[cb] as number)) & 1023] as number;
    out[o + x] = r | (g << 8) | (b << 16) | 0xff000000;
  }
}

/** One row of YCbCr → RGBA (kept small and monomorphic so that V8 optimises it well). */
function ycbcrRow(
  y0: Uint8Array,
  i0: number,
  c1: Uint8Array,
  i1: number,
  c2: Uint8Array,
  i2: number,
  out: Uint8Array,
  o: number,
  width: number,
): void {
  for (let x = 0; x < width; x++, o += 4) {
    const l = (y0[i0 + x] as number) + 384;
    const cb = c1[i1 + x] as number;
    const cr = c2[i2 + x] as number;
    out[o] = rangeLimit[(l + (crR[cr] as number)) & 1023] as number;
    out[o + 1] = rangeLimit[
      (l + (((cbG[cb] as number) + (crG[cr] as number)) >> scaleBits)) & 1023
    ] as number;
    out[o + 2] = rangeLimit[(l + (cbB[cb] as number)) & 1023] as number;
    out[o + 3] = 255;
  }
}

// --- fused upsampling and YCbCr → RGBA ---------------------------------------------------
// jdcolor.c's tables computed inline (the same integers: fix(1.402) = 91881, fix(1.772) =
// 116130, fix(0.71414) = 46802, fix(0.34414) = 22554), so no table reads on the hot path.
const crToR = 91881;
const cbToB = 116130;
const crToG = 46802;
const cbToG = 22554;
const rBias = half - crToR * 128;
const gBias = half + (cbToG + crToG) * 128;
const bBias = half - cbToB * 128;

/**
 * One RGBA pixel (little-endian 32-bit, A = 255) from Y, Cb, Cr. In-range results, by far
 * the common case, need one test; the rest go through libjpeg's range-limit table.
 */
function ycbcrPixel(l: number, cb: number, cr: number): number {
  // c·(v - 128) + half with the constant parts folded together (exact integers).
  let r = l + ((crToR * cr + rBias) >> scaleBits);
  let g = l + ((-cbToG * cb - crToG * cr + gBias) >> scaleBits);
  let b = l + ((cbToB * cb + bBias) >> scaleBits);
  if ((r | g | b) >>> 8 !== 0) {
    r = clamp(r);
    g = clamp(g);
    b = clamp(b);
  }
  return r | (g << 8) | (b << 16) | 0xff000000;
}

/**
 * YCbCr with full-resolution Y and Cb, Cr sampled alike at 1:1, 2:1 (h2v1) or 2:2 (h2v2):
 * libjpeg's fancy upsampling and colour conversion in one pass per row, written as 32-bit
 * pixels straight from the component planes (no upsampled rows). Undefined for other
 * layouts, which take the row-buffer path.
 */
function fusedYcbcrRows(
  planes: JpegPlanes,
  out: Uint8Array,
  budget: DecodeBudget,
): ((y0: number, y1: number) => void) | undefined {
  const { width, height, maxH, maxV } = planes;
  const [yc, cbc, crc] = planes.components;
  if (!yc || !cbc || !crc || planes.components.length !== 3) return undefined;
  if (yc.h !== maxH || yc.v !== maxV) return undefined;
  if (cbc.h !== crc.h || cbc.v !== crc.v || cbc.stride !== crc.stride || cbc.rows !== crc.rows)
    return undefined;
  const rh = maxH / cbc.h;
  const rv = maxV / cbc.v;
  const kind = rh === 1 && rv === 1 ? 0 : rh === 2 && rv === 1 ? 1 : rh === 2 && rv === 2 ? 2 : -1;
  if (kind > 0 && !planes.fancy) return undefined;
  if (kind < 0) return undefined;
  const out32 = new Uint32Array(out.buffer, out.byteOffset, width * height);
  const yp = yc.plane;
  const cbp = cbc.plane;
  const crp = crc.plane;
  const ch = cbc.height;
  return (y0, y1) => {
    for (let y = y0; y < y1; y++) {
      budget.tick();
      const o = y * width;
      const yo = rowAt(yc, y);
      if (kind === 0) ycbcr11Row(yp, yo, cbp, crp, rowAt(cbc, y), out32, o, width);
      else if (kind === 1) ycbcrH2v1Row(yp, yo, cbp, crp, rowAt(cbc, y), cbc.width, out32, o, width);
      else {
        const sy = y >> 1;
        const other = y & 1 ? Math.min(sy + 1, ch - 1) : Math.max(sy - 1, 0);
        ycbcrH2v2Row(yp, yo, cbp, crp, rowAt(cbc, sy), rowAt(cbc, other), cbc.width, out32, o, width);
      }
    }
  };
}

function ycbcr11Row(
  yp: Uint8Array,
  yo: number,
  cbp: Uint8Array,
  crp: Uint8Array,
  co: number,
  out: Uint32Array,
  o: number,
  width: number,
): void {
  for (let x = 0; x < width; x++)
    out[o + x] = ycbcrPixel(yp[yo + x] as number, cbp[co + x] as number, crp[co + x] as number);
}

/** h2v1: jdsample.c h2v1_fancy_upsample (3:1 horizontal triangle filter), then colour. */
function ycbcrH2v1Row(
  yp: Uint8Array,
  yo: number,
  cbp: Uint8Array,
  crp: Uint8Array,
  a: number,
  cw: number,
  out: Uint32Array,
  o: number,
  width: number,
): void {
  // The edge samples are the neighbours of the first and last ones: (3v + v + 1) >> 2 = v.
  let cbLast = cbp[a] as number;
  let crLast = crp[a] as number;
  let cbThis = cbLast;
  let crThis = crLast;
  const last = cw - 1;
  for (let i = 0; i < last; i++) {
    const cbNext = cbp[a + i + 1] as number;
    const crNext = crp[a + i + 1] as number;
    const cb3 = cbThis * 3;
    const cr3 = crThis * 3;
    const x = yo + 2 * i;
    out[o + 2 * i] = ycbcrPixel(yp[x] as number, (cb3 + cbLast + 1) >> 2, (cr3 + crLast + 1) >> 2);
    out[o + 2 * i + 1] = ycbcrPixel(yp[x + 1] as number, (cb3 + cbNext + 2) >> 2, (cr3 + crNext + 2) >> 2);
    cbLast = cbThis;
    crLast = crThis;
    cbThis = cbNext;
    crThis = crNext;
  }
  const cb3 = cbThis * 3;
  const cr3 = crThis * 3;
  const x = 2 * last;
  out[o + x] = ycbcrPixel(yp[yo + x] as number, (cb3 + cbLast + 1) >> 2, (cr3 + crLast + 1) >> 2);
  if (x + 1 < width)
    out[o + x + 1] = ycbcrPixel(yp[yo + x + 1] as number, (cb3 + cbThis + 2) >> 2, (cr3 + crThis + 2) >> 2);
}

/**
 * h2v2: jdsample.c h2v2_fancy_upsample (column sums of the nearer and the other chroma row,
 * 3:1, then 3:1 horizontally), then colour.
 */
function ycbcrH2v2Row(
  yp: Uint8Array,
  yo: number,
  cbp: Uint8Array,
  crp: Uint8Array,
  a: number,
  b: number,
  cw: number,
  out: Uint32Array,
  o: number,
  width: number,
): void {
  // At the edges the missing neighbour is the column itself: (3t + t + 8) >> 4, (4t + 7) >> 4.
  let cbLast = (cbp[a] as number) * 3 + (cbp[b] as number);
  let crLast = (crp[a] as number) * 3 + (crp[b] as number);
  let cbThis = cbLast;
  let crThis = crLast;
  const last = cw - 1;
  for (let i = 0; i < last; i++) {
    const cbNext = (cbp[a + i + 1] as number) * 3 + (cbp[b + i + 1] as number);
    const crNext = (crp[a + i + 1] as number) * 3 + (crp[b + i + 1] as number);
    const cb3 = cbThis * 3;
    const cr3 = crThis * 3;
    const x = yo + 2 * i;
    out[o + 2 * i] = ycbcrPixel(yp[x] as number, (cb3 + cbLast + 8) >> 4, (cr3 + crLast + 8) >> 4);
    out[o + 2 * i + 1] = ycbcrPixel(yp[x + 1] as number, (cb3 + cbNext + 7) >> 4, (cr3 + crNext + 7) >> 4);
    cbLast = cbThis;
    crLast = crThis;
    cbThis = cbNext;
    crThis = crNext;
  }
  const cb3 = cbThis * 3;
  const cr3 = crThis * 3;
  const x = 2 * last;
  out[o + x] = ycbcrPixel(yp[yo + x] as number, (cb3 + cbLast + 8) >> 4, (cr3 + crLast + 8) >> 4);
  if (x + 1 < width)
    out[o + x + 1] = ycbcrPixel(yp[yo + x + 1] as number, (cb3 + cbThis + 7) >> 4, (cr3 + crThis + 7) >> 4);
}
