/**
 * Huffman JPEG decoding (baseline, extended 8-bit, progressive), written here because
 * jpeg-js, the maintained pure-JS decoder, decoded our corpora at 1/12 of libvips' speed
 * (`./moat bench decoders`), upsamples chroma by replication and ignores Adobe's "no
 * transform" flag. This one follows libjpeg's arithmetic so that its output can be held
 * to libvips': the "islow" integer IDCT (jidctint.c), libjpeg's fixed-point YCbCr→RGB
 * (jdcolor.c) and its "fancy" triangle-filter chroma upsampling (jdsample.c).
 *
 * Every allocation is sized from the frame header and reserved in the budget before it is
 * made; entropy-coded data is read with bounds checks (a damaged or short scan reads as
 * zeros, like libjpeg's), and the deadline is checked once per MCU row.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import { type StandardTable, standardAcTables, standardDcTables } from './jpeg-annex-k.ts';

// --- wire layout -----------------------------------------------------------------------
const SOF0 = 0xc0;
const SOF1 = 0xc1;
const SOF2 = 0xc2;
const DHT = 0xc4;
const DQT = 0xdb;
const DRI = 0xdd;
const SOS = 0xda;
const EOI = 0xd9;
const RST0 = 0xd0;
const RST7 = 0xd7;

/** Zig-zag position → natural (row-major) position, with 16 guard entries for bad runs. */
const naturalOrder = Int32Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46,
  53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
]);

const lookBits = 9;
const maxScans = 256;

/** Canonical Huffman table with a 9-bit first-level lookup. */
interface HuffmanTable {
  /** (length << 8) | symbol for codes of ≤ 9 bits, indexed by the next 9 bits; 0 = longer. */
  lookup: Uint16Array;
  /** Largest code of each length 1..16 (-1 when none), for codes longer than 9 bits. */
  maxCode: Int32Array;
  /** Offset from code to symbol index, per length. */
  valOffset: Int32Array;
  symbols: Uint8Array;
  /**
   * For AC tables, stb_image's trick: when a code and the magnitude bits that follow it fit
   * in the 9 lookahead bits, the whole coefficient is one lookup:
   * (value << 16) | (run << 8) | bits used; 0 = take the slow path.
   */
  fastAc: Int32Array;
}

function buildHuffman(counts: Uint8Array, symbols: Uint8Array): HuffmanTable {
  const lookup = new Uint16Array(1 << lookBits);
  const maxCode = new Int32Array(18).fill(-1);
  const valOffset = new Int32Array(18);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1] as number;
    valOffset[len] = k - code;
    for (let i = 0; i < n; i++, k++, code++) {
      if (len <= lookBits) {
        const shift = lookBits - len;
        const base = code << shift;
        for (let j = 0; j < 1 << shift; j++) lookup[base + j] = (len << 8) | (symbols[k] as number);
      }
    }
    if (n > 0) maxCode[len] = code - 1;
    if (code > 1 << len) refuse('corrupt', 'JPEG Huffman table is over-subscribed');
    code <<= 1;
  }
  maxCode[17] = 0x7fffffff; // sentinel: a code longer than 16 bits is invalid
  const fastAc = new Int32Array(1 << lookBits);
  for (let i = 0; i < 1 << lookBits; i++) {
    const look = lookup[i] as number;
    if (look === 0) continue;
    const len = look >> 8;
    const rs = look & 0xff;
    const run = rs >> 4;
    const size = rs & 15;
    if (size === 0 || len + size > lookBits) continue;
    const raw = (i >> (lookBits - len - size)) & ((1 << size) - 1);
    const value = raw < 1 << (size - 1) ? raw - (1 << size) + 1 : raw;
    fastAc[i] = (value * 65536) | (run << 8) | (len + size);
  }
  return { lookup, maxCode, valOffset, symbols, fastAc };
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** Blocks actually covering the component (for non-interleaved scans). */
  blocksWide: number;
  blocksHigh: number;
  /** Blocks allocated: whole MCUs. */
  blocksPerLine: number;
  blocksPerColumn: number;
  /** Progressive frames only (baseline blocks go through the IDCT as they are decoded). */
  coefficients: Int16Array;
  /**
   * Progressive: per block, the highest zig-zag index of a non-zero AC coefficient (0: none),
   * so that refinement passes stop there and DC-only blocks skip the IDCT.
   */
  lastAc: Uint8Array;
  /**
   * Samples, whole MCUs wide; `plane32` views it for 4-sample stores (blocks are 4-aligned).
   * It holds `planeBlockRows` block rows: the whole component, or, when the image is
   * converted to RGBA band by band, two MCU rows used as a ring (block row `by` at
   * `by % planeBlockRows`). Allocated at the first scan (progressive: after the last).
   */
  plane: Uint8Array;
  plane32: Uint32Array;
  planeBlockRows: number;
  stride: number;
  /**
   * Samples per block side after DCT scaling: 8, or 4, 2, 1 when decoding at a reduced
   * size. Chroma of a subsampled image gets a larger block than luma where that makes its
   * upsampling 1:1, as libjpeg-turbo chooses (jdmaster.c jpeg_calc_output_dimensions).
   */
  blockSize: number;
  /** Baseline: some scan decoded this component (else its plane is mid-grey, like zero coefficients). */
  decoded: boolean;
  dcTable: HuffmanTable | undefined;
  acTable: HuffmanTable | undefined;
  pred: number;
}

export interface JpegFrameInfo {
  width: number;
  height: number;
  progressive: boolean;
}

/** Decoded planes and what the colour conversion needs. */
export interface JpegPlanes {
  /** Output size: the image's, or ceil(size × blockSize / 8) when scaled. */
  width: number;
  height: number;
  /**
   * libjpeg's triangle-filter ("fancy") upsampling, or replication: libjpeg-turbo turns it
   * off when the smallest block is one sample (jdsample.c jinit_upsampler).
   */
  fancy: boolean;
  components: {
    plane: Uint8Array;
    stride: number;
    /** Sample rows the plane holds: row r is at `(r % rows) * stride`. */
    rows: number;
    /** Samples of the component (its true size, before upsampling). */
    width: number;
    height: number;
    /** Sampling factors relative to `maxH`/`maxV` after DCT scaling (h × blockSize / smallest). */
    h: number;
    v: number;
  }[];
  maxH: number;
  maxV: number;
}

/**
 * Receives the planes once they exist and returns what turns image rows [y0, y1) of them
 * into output; rows arrive in order, each once, and only while the plane still holds them.
 */
export type JpegRowSink = (planes: JpegPlanes) => (y0: number, y1: number) => void;

/**
 * Entropy-decodes every scan and runs the IDCT, handing the rows to `sink` as they are
 * ready. A single interleaved sequential scan (nearly every baseline file) and the final
 * transform of a progressive one go band by band, one MCU row at a time, through planes of
 * two MCU rows, so that samples are converted while they are still in the cache. `height`
 * overrides a zero SOF height (DNL).
 */
export function decodeJpegPlanes(
  bytes: Uint8Array,
  height: number,
  budget: DecodeBudget,
  sink: JpegRowSink,
  /** 1, 2, 4 or 8: decode at 1/scale of the size with smaller IDCTs (libjpeg's scale_denom). */
  scale = 1,
): void {
  const quant: (Int32Array | undefined)[] = [];
  const dcTables: (HuffmanTable | undefined)[] = [];
  const acTables: (HuffmanTable | undefined)[] = [];
  let components: Component[] = [];
  let frame:
    | {
        width: number;
        height: number;
        progressive: boolean;
        maxH: number;
        maxV: number;
        mcusPerLine: number;
        mcusPerColumn: number;
        /** The smallest block size (8 / scale) and the output size. */
        blockSize: number;
        outWidth: number;
        outHeight: number;
      }
    | undefined;
  let restartInterval = 0;
  let scans = 0;
  let writeRows: ((y0: number, y1: number) => void) | undefined;
  let rowsWritten = 0;
  /** Allocates the planes (whole, or rings of two MCU rows) and hands them to the sink. */
  const allocatePlanes = (ring: boolean) => {
    if (!frame) return;
    const { width, height: frameHeight, maxH, maxV, blockSize } = frame;
    for (const c of components) {
      c.planeBlockRows = ring ? Math.min(2 * c.v, c.blocksPerColumn) : c.blocksPerColumn;
      const size = c.blocksPerLine * c.planeBlockRows * c.blockSize * c.blockSize;
      budget.allocate(size, 'JPEG component plane');
      c.plane = new Uint8Array(size);
      c.plane32 = new Uint32Array(c.plane.buffer, 0, size >> 2);
    }
    writeRows = sink({
      width: frame.outWidth,
      height: frame.outHeight,
      fancy: blockSize > 1,
      components: components.map((c) => ({
        plane: c.plane,
        stride: c.stride,
        rows: c.planeBlockRows * c.blockSize,
        // jdmaster.c: downsampled size after IDCT scaling, rounded up.
        width: Math.ceil((width * c.h * c.blockSize) / (maxH * 8)),
        height: Math.ceil((frameHeight * c.v * c.blockSize) / (maxV * 8)),
        h: (c.h * c.blockSize) / blockSize,
        v: (c.v * c.blockSize) / blockSize,
      })),
      maxH,
      maxV,
    });
  };
  /**
   * Rows up to the end of band `band` (8·maxV rows) but its last: the upsampling of that
   * one needs the next band. The last band goes to the end.
   */
  const emitBand = (band: number, bandHeight: number) => {
    if (!frame || !writeRows) return;
    const end = Math.min(frame.outHeight, (band + 1) * bandHeight);
    const y1 = end === frame.outHeight ? end : end - 1;
    if (y1 > rowsWritten) writeRows(rowsWritten, y1);
    rowsWritten = y1;
  };
  let pos = 2;
  const u16 = (o: number) => ((bytes[o] as number) << 8) | (bytes[o + 1] as number);

  while (pos + 1 < bytes.length) {
    if (bytes[pos] !== 0xff) {
      pos++;
      continue;
    }
    const marker = bytes[pos + 1] as number;
    pos += 2;
    if (marker === 0xff) {
      pos--;
      continue;
    }
    if (marker === EOI) break;
    if ((marker >= RST0 && marker <= RST7) || marker === 0x01 || marker === 0x00) continue;
    if (pos + 2 > bytes.length) break;
    const length = u16(pos);
    const end = Math.min(pos + length, bytes.length);
    let p = pos + 2;
    switch (marker) {
      case DQT:
        while (p < end) {
          const pq = (bytes[p] as number) >> 4;
          const tq = (bytes[p] as number) & 15;
          p++;
          if (tq > 3) refuse('corrupt', `JPEG quantisation table ${tq} is out of range`);
          const table = new Int32Array(64);
          for (let i = 0; i < 64; i++) {
            table[naturalOrder[i] as number] = pq ? u16(p + i * 2) : (bytes[p + i] as number);
          }
          p += pq ? 128 : 64;
          quant[tq] = table;
        }
        break;
      case DHT:
        while (p + 17 <= end) {
          const tc = (bytes[p] as number) >> 4;
          const th = (bytes[p] as number) & 15;
          if (th > 3 || tc > 1) refuse('corrupt', 'JPEG Huffman table id is out of range');
          const counts = bytes.subarray(p + 1, p + 17);
          let total = 0;
          for (let i = 0; i < 16; i++) total += counts[i] as number;
          if (total > 256 || p + 17 + total > end) refuse('corrupt', 'JPEG Huffman table is malformed');
          const symbols = bytes.subarray(p + 17, p + 17 + total);
          // A DC symbol is a magnitude size: above 15 is invalid (libjpeg refuses it too).
          if (tc === 0 && symbols.some((x) => x > 15))
            refuse('corrupt', 'JPEG DC Huffman table is malformed');
          const table = buildHuffman(counts, symbols);
          (tc === 0 ? dcTables : acTables)[th] = table;
          p += 17 + total;
        }
        break;
      case SOF0:
      case SOF1:
      case SOF2: {
        if (frame) refuse('unsupported', 'JPEG with several frames is not supported');
        const width = u16(p + 3);
        const count = bytes[p + 5] as number;
        let maxH = 1;
        let maxV = 1;
        const specs: [number, number, number, number][] = [];
        for (let i = 0; i < count; i++) {
          const q = p + 6 + i * 3;
          const h = (bytes[q + 1] as number) >> 4;
          const v = (bytes[q + 1] as number) & 15;
          specs.push([bytes[q] as number, h, v, bytes[q + 2] as number]);
          maxH = Math.max(maxH, h);
          maxV = Math.max(maxV, v);
        }
        const mcusPerLine = Math.ceil(width / (8 * maxH));
        const mcusPerColumn = Math.ceil(height / (8 * maxV));
        const blockSize = 8 / scale;
        frame = {
          width,
          height,
          progressive: marker === SOF2,
          maxH,
          maxV,
          mcusPerLine,
          mcusPerColumn,
          blockSize,
          outWidth: Math.ceil((width * blockSize) / 8),
          outHeight: Math.ceil((height * blockSize) / 8),
        };
        components = specs.map(([id, h, v, tq]) => {
          // libjpeg-turbo's choice (jdmaster.c): double the block while the component's
          // samples still need upsampling by a factor of 2 or more.
          const own = componentBlockSize(maxH, maxV, h, v, blockSize);
          const blocksPerLine = mcusPerLine * h;
          const blocksPerColumn = mcusPerColumn * v;
          const size = blocksPerLine * blocksPerColumn * 64;
          const progressive = marker === SOF2;
          if (progressive) budget.allocate(size * 2 + size / 64, 'JPEG coefficients');
          return {
            plane: new Uint8Array(0),
            plane32: new Uint32Array(0),
            planeBlockRows: 0,
            id,
            h,
            v,
            tq,
            blocksWide: Math.ceil(Math.ceil((width * h) / maxH) / 8),
            blocksHigh: Math.ceil(Math.ceil((height * v) / maxV) / 8),
            blocksPerLine,
            blocksPerColumn,
            coefficients: new Int16Array(progressive ? size : 0),
            lastAc: new Uint8Array(progressive ? size / 64 : 0),
            stride: blocksPerLine * own,
            blockSize: own,
            decoded: false,
            dcTable: undefined,
            acTable: undefined,
            pred: 0,
          };
        });
        break;
      }
      case DRI:
        restartInterval = u16(p);
        break;
      case SOS: {
        if (!frame) refuse('corrupt', 'JPEG scan comes before the frame header');
        // Each scan walks the whole image: thousands of tiny scans make a CPU bomb from a
        // small file (libjpeg-turbo's djpeg offers -maxscans for this). Real progressive
        // files have about 10.
        if (++scans > maxScans) refuse('limit', `JPEG has more than ${maxScans} scans`);
        const count = bytes[p] as number;
        const scan: Component[] = [];
        for (let i = 0; i < count; i++) {
          const id = bytes[p + 1 + i * 2];
          const tables = bytes[p + 2 + i * 2] as number;
          const c = components.find((x) => x.id === id);
          if (!c) refuse('corrupt', `JPEG scan names unknown component ${id}`);
          c.dcTable = dcTables[tables >> 4] ?? standardTable(standardDcTables, tables >> 4);
          c.acTable = acTables[tables & 15] ?? standardTable(standardAcTables, tables & 15);
          scan.push(c);
        }
        const q = p + 1 + count * 2;
        const ss = bytes[q] as number;
        const se = bytes[q + 1] as number;
        const ah = (bytes[q + 2] as number) >> 4;
        const al = (bytes[q + 2] as number) & 15;
        if (scan.length === 0 || scan.length > 4)
          refuse('corrupt', 'JPEG scan has no or too many components');
        if (frame.progressive) {
          if (ss > se || se > 63 || (ss === 0 && se !== 0) || (ss > 0 && scan.length !== 1) || al > 13)
            refuse('corrupt', 'JPEG progressive scan parameters are invalid');
        }
        if (!frame.progressive) {
          // One scan with every component (and sequential files have each component in
          // exactly one scan): the image goes band by band, and nothing after it is read.
          // A scan after that one is not decoded (its samples were converted already); the
          // marker walk goes on, so that the rest of the file is checked as before.
          if (rowsWritten > 0) break;
          const streamed = !writeRows && new Set(scan).size === components.length;
          if (!writeRows) allocatePlanes(streamed);
          const onBand = streamed ? emitBand : undefined;
          pos = decodeBaselineScan(bytes, end, frame, scan, restartInterval, quant, budget, onBand);
          if (streamed) emitBand(Number.MAX_SAFE_INTEGER, 1);
          continue;
        }
        pos = decodeScan(bytes, end, frame, scan, restartInterval, ss, se, ah, al, budget);
        continue;
      }
      default:
        break; // APPn, COM, DNL, unknown: skipped (the header walk read what we need)
    }
    pos = pos + length;
  }
  if (!frame) refuse('corrupt', 'JPEG has no frame header');
  for (const c of components)
    if (!quant[c.tq]) refuse('corrupt', `JPEG quantisation table ${c.tq} is missing`);

  if (frame.progressive) {
    // The IDCT of the accumulated coefficients, one MCU row of every component at a time,
    // each band converted at once.
    allocatePlanes(true);
    const ws = new Int32Array(64);
    for (let my = 0; my < frame.mcusPerColumn; my++) {
      budget.tick();
      for (const c of components)
        for (let v = 0; v < c.v; v++) transformBlockRow(c, quant[c.tq] as Int32Array, my * c.v + v, ws);
      emitBand(my, frame.blockSize * frame.maxV);
    }
    return;
  }
  if (rowsWritten > 0) return;
  // Sequential in several scans: the planes are whole. A component no scan decoded has
  // zero coefficients (mid-grey).
  if (!writeRows) allocatePlanes(false);
  for (const c of components) if (!c.decoded) c.plane.fill(128);
  emitBand(Number.MAX_SAFE_INTEGER, 1);
}

/**
 * A component's block size when the smallest is `smallest` (8 / scale): libjpeg-turbo's
 * choice (jdmaster.c jpeg_calc_output_dimensions) doubles it while the component's samples
 * would still need upsampling by 2 or more, so that subsampled chroma is scaled by the IDCT
 * rather than upsampled.
 */
export function componentBlockSize(
  maxH: number,
  maxV: number,
  h: number,
  v: number,
  smallest: number,
): number {
  let size = smallest;
  while (size < 8 && (maxH * smallest) % (h * size * 2) === 0 && (maxV * smallest) % (v * size * 2) === 0)
    size *= 2;
  return size;
}

/** A slot the file never defined: the Annex K table for slots 0 and 1, none for 2 and 3. */
function standardTable(tables: readonly StandardTable[], slot: number): HuffmanTable | undefined {
  const table = tables[slot];
  return table ? buildHuffman(table.counts, table.symbols) : undefined;
}

/** (length << 8) | symbol of a code longer than the lookahead; (16 << 8) | 0 when invalid. */
function decodeLongCode(table: HuffmanTable, bits: number, bitCount: number): number {
  let len = lookBits + 1;
  let code = (bits >>> (bitCount - len)) & ((1 << len) - 1);
  while (code > (table.maxCode[len] as number)) {
    len++;
    // Invalid code: 16 bits dropped and read as 0 (end of block), like libjpeg's recovery.
    if (len > 16) return 16 << 8;
    code = (bits >>> (bitCount - len)) & ((1 << len) - 1);
  }
  return (len << 8) | (table.symbols[(code + (table.valOffset[len] as number)) & 0xff] as number);
}

/**
 * A sequential (baseline or extended) scan: each block is entropy-decoded, dequantised and
 * transformed into its component's plane at once, so there are no coefficient arrays. The
 * bit buffer lives in locals for the whole scan; the refill (which handles 0xFF00 stuffing
 * and stops at a marker, feeding zeros from then on, like libjpeg) is written out where it
 * is needed rather than called, so that nothing leaves registers on the hot path.
 * Returns the offset of the marker that ends the scan.
 */
function decodeBaselineScan(
  data: Uint8Array,
  start: number,
  frame: { mcusPerLine: number; mcusPerColumn: number; maxV: number; blockSize: number },
  scan: Component[],
  restartInterval: number,
  quant: (Int32Array | undefined)[],
  budget: DecodeBudget,
  /** Called after each MCU row (single-component scans: block row) with its index and height. */
  onBand: ((band: number, bandHeight: number) => void) | undefined,
): number {
  // Quantisation tables in zig-zag order (latched at the scan, as libjpeg does).
  const zigzagQuant = scan.map((c) => {
    const q = quant[c.tq];
    if (!q) refuse('corrupt', `JPEG quantisation table ${c.tq} is missing`);
    if (!c.dcTable || !c.acTable) refuse('corrupt', 'JPEG scan uses a Huffman table that was never defined');
    c.pred = 0;
    c.decoded = true;
    const z = new Int32Array(80);
    for (let k = 0; k < 80; k++) z[k] = q[naturalOrder[k] as number] as number;
    return z;
  });
  const length = data.length;
  let pos = start;
  let end = length; // where reading stops: the end, or the marker that ends the scan
  let bits = 0; // bit buffer, most significant bits first
  let bitCount = 0;
  const blk = new Int32Array(64);
  const ws = new Int32Array(64);
  // A single-component scan is not interleaved: one block per MCU, over the blocks that
  // cover the component.
  const single = scan.length === 1;
  const first = scan[0] as Component;
  const mcuRows = single ? first.blocksHigh : frame.mcusPerColumn;
  const mcuColumns = single ? first.blocksWide : frame.mcusPerLine;
  const bandHeight = single ? first.blockSize : frame.blockSize * frame.maxV;
  let mcu = 0;
  for (let my = 0; my < mcuRows; my++) {
    budget.tick();
    for (let mx = 0; mx < mcuColumns; mx++, mcu++) {
      if (restartInterval > 0 && mcu > 0 && mcu % restartInterval === 0) {
        // Drop buffered bits, skip to the next marker and past it when it is RSTn.
        bits = 0;
        bitCount = 0;
        end = length;
        while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff))
          pos++;
        const m = data[pos + 1] as number;
        if (m >= RST0 && m <= RST7) pos += 2;
        for (const c of scan) c.pred = 0;
      }
      for (let ci = 0; ci < scan.length; ci++) {
        const c = scan[ci] as Component;
        const q = zigzagQuant[ci] as Int32Array;
        const dc = c.dcTable as HuffmanTable;
        const ac = c.acTable as HuffmanTable;
        const bh = single ? 1 : c.h;
        const bv = single ? 1 : c.v;
        for (let v = 0; v < bv; v++) {
          const bs = c.blockSize;
          const rowOffset = ((my * bv + v) % c.planeBlockRows) * bs * c.stride;
          for (let h = 0; h < bh; h++) {
            const o = rowOffset + (mx * bh + h) * bs;
            let pred = c.pred;
            let hasAc = 0;
            // DC: the difference from the prediction.
            if (bitCount < 16) {
              while (bitCount <= 24) {
                let byte = 0;
                if (pos < end) {
                  byte = data[pos] as number;
                  if (byte !== 0xff) pos++;
                  else if (data[pos + 1] === 0) pos += 2;
                  else {
                    end = pos;
                    byte = 0;
                  }
                }
                bits = (bits << 8) | byte;
                bitCount += 8;
              }
            }
            let look = dc.lookup[(bits >>> (bitCount - lookBits)) & ((1 << lookBits) - 1)] as number;
            if (look === 0) look = decodeLongCode(dc, bits, bitCount);
            bitCount -= look >> 8;
            const t = look & 0xff;
            if (t !== 0) {
              if (bitCount < t) {
                while (bitCount <= 24) {
                  let byte = 0;
                  if (pos < end) {
                    byte = data[pos] as number;
                    if (byte !== 0xff) pos++;
                    else if (data[pos + 1] === 0) pos += 2;
                    else {
                      end = pos;
                      byte = 0;
                    }
                  }
                  bits = (bits << 8) | byte;
                  bitCount += 8;
                }
              }
              bitCount -= t;
              const v = (bits >>> bitCount) & ((1 << t) - 1);
              pred += v < 1 << (t - 1) ? v - (1 << t) + 1 : v;
            }
            // The coefficient is 16-bit, as the progressive path stores it.
            blk[0] = ((pred << 16) >> 16) * (q[0] as number);
            c.pred = pred;
            // AC: run/size codes, most through the one-lookup fast table.
            const fastAc = ac.fastAc;
            const lookup = ac.lookup;
            for (let k = 1; k < 64; ) {
              if (bitCount < 16) {
                while (bitCount <= 24) {
                  let byte = 0;
                  if (pos < end) {
                    byte = data[pos] as number;
                    if (byte !== 0xff) pos++;
                    else if (data[pos + 1] === 0) pos += 2;
                    else {
                      end = pos;
                      byte = 0;
                    }
                  }
                  bits = (bits << 8) | byte;
                  bitCount += 8;
                }
              }
              const index = (bits >>> (bitCount - lookBits)) & ((1 << lookBits) - 1);
              const fast = fastAc[index] as number;
              if (fast !== 0) {
                bitCount -= fast & 0xff;
                k += (fast >> 8) & 0xff;
                if (k > 63) break;
                blk[naturalOrder[k] as number] = (fast >> 16) * (q[k] as number);
                hasAc = 1;
                k++;
                continue;
              }
              let code = lookup[index] as number;
              if (code === 0) code = decodeLongCode(ac, bits, bitCount);
              bitCount -= code >> 8;
              const s = code & 15;
              const r = (code >> 4) & 15;
              if (s === 0) {
                if (r < 15) break;
                k += 16;
                continue;
              }
              k += r;
              if (k > 63) break;
              if (bitCount < s) {
                while (bitCount <= 24) {
                  let byte = 0;
                  if (pos < end) {
                    byte = data[pos] as number;
                    if (byte !== 0xff) pos++;
                    else if (data[pos + 1] === 0) pos += 2;
                    else {
                      end = pos;
                      byte = 0;
                    }
                  }
                  bits = (bits << 8) | byte;
                  bitCount += 8;
                }
              }
              bitCount -= s;
              const v = (bits >>> bitCount) & ((1 << s) - 1);
              blk[naturalOrder[k] as number] = (v < 1 << (s - 1) ? v - (1 << s) + 1 : v) * (q[k] as number);
              hasAc = 1;
              k++;
            }
            if (bs !== 8) {
              idctReduced(blk, bs, ws, c.plane, o, c.stride);
            } else if (hasAc === 0) {
              dcOnlyBlock(blk[0] as number, c.plane32, o, c.stride);
              blk[0] = 0;
            } else {
              idctIslow(blk, ws, c.plane32, o, c.stride);
            }
          }
        }
      }
    }
    if (onBand) onBand(my, bandHeight);
  }
  // Find the marker that ends the scan.
  while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff)) pos++;
  return pos;
}

/** Progressive: dequantisation and IDCT of one block row of a component's coefficients. */
function transformBlockRow(c: Component, q: Int32Array, by: number, ws: Int32Array): void {
  const { plane32, stride } = c;
  const co = c.coefficients;
  const bs = c.blockSize;
  const o0 = (by % c.planeBlockRows) * bs * stride;
  for (let bx = 0; bx < c.blocksPerLine; bx++) {
    const block = by * c.blocksPerLine + bx;
    const o = o0 + bx * bs;
    const at = block * 64;
    if (bs !== 8) {
      // Reduced sizes: dequantised into a block first (the smaller IDCTs are cheap).
      const blk = reducedInput;
      for (let k = 0; k < 64; k++) blk[k] = (co[at + k] as number) * (q[k] as number);
      idctReduced(blk, bs, ws, c.plane, o, stride);
      continue;
    }
    if (c.lastAc[block] === 0) {
      dcOnlyBlock((co[at] as number) * (q[0] as number), plane32, o, stride);
      continue;
    }
    idctIslowQuantised(co, at, q, ws, plane32, o, stride);
  }
}

/**
 * One progressive scan starting at `start` (just after the SOS header); returns the offset
 * of the marker that ends the scan. AC scans (one component) have their own loops; DC scans
 * (first pass or refinement, possibly interleaved) are decoded here, the bit buffer in
 * locals for the whole scan.
 */
function decodeScan(
  data: Uint8Array,
  start: number,
  frame: { mcusPerLine: number; mcusPerColumn: number; progressive: boolean },
  scan: Component[],
  restartInterval: number,
  ss: number,
  se: number,
  ah: number,
  al: number,
  budget: DecodeBudget,
): number {
  if (ss !== 0) {
    // AC scans have one component (checked at SOS; a header cut short by the end of the
    // file reads as an empty band).
    for (const x of scan)
      if (!x.acTable) refuse('corrupt', 'JPEG scan uses a Huffman table that was never defined');
    const c = scan[0] as Component;
    if (!c.acTable) refuse('corrupt', 'JPEG scan uses a Huffman table that was never defined');
    return ah === 0
      ? decodeAcFirstScan(data, start, c, c.acTable, ss, se, al, restartInterval, budget)
      : decodeAcRefineScan(data, start, c, c.acTable, ss, se, al, restartInterval, budget);
  }
  if (ah === 0)
    for (const x of scan)
      if (!x.dcTable) refuse('corrupt', 'JPEG scan uses a Huffman table that was never defined');
  const length = data.length;
  let pos = start;
  let end = length; // where reading stops: the end, or the marker that ends the scan
  let bits = 0; // bit buffer, most significant bits first
  let bitCount = 0;
  // A single-component scan is not interleaved: one block per MCU.
  const single = scan.length === 1;
  const first = scan[0] as Component;
  const mcuRows = single ? first.blocksHigh : frame.mcusPerColumn;
  const mcuColumns = single ? first.blocksWide : frame.mcusPerLine;
  const scale = 1 << al;
  for (const c of scan) c.pred = 0;
  let mcu = 0;
  for (let my = 0; my < mcuRows; my++) {
    budget.tick();
    for (let mx = 0; mx < mcuColumns; mx++, mcu++) {
      if (restartInterval > 0 && mcu > 0 && mcu % restartInterval === 0) {
        // Drop buffered bits, skip to the next marker and past it when it is RSTn.
        bits = 0;
        bitCount = 0;
        end = length;
        while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff))
          pos++;
        const m = data[pos + 1] as number;
        if (m >= RST0 && m <= RST7) pos += 2;
        for (const c of scan) c.pred = 0;
      }
      for (let ci = 0; ci < scan.length; ci++) {
        const c = scan[ci] as Component;
        const co = c.coefficients;
        const bh = single ? 1 : c.h;
        const bv = single ? 1 : c.v;
        for (let v = 0; v < bv; v++) {
          const row = (my * bv + v) * c.blocksPerLine;
          for (let h = 0; h < bh; h++) {
            const offset = (row + mx * bh + h) * 64;
            if (ah === 0) {
              // First pass: the DC difference, scaled by 2^al.
              const table = c.dcTable as HuffmanTable;
              if (bitCount < 16) {
                while (bitCount <= 24) {
                  let byte = 0;
                  if (pos < end) {
                    byte = data[pos] as number;
                    if (byte !== 0xff) pos++;
                    else if (data[pos + 1] === 0) pos += 2;
                    else {
                      end = pos;
                      byte = 0;
                    }
                  }
                  bits = (bits << 8) | byte;
                  bitCount += 8;
                }
              }
              let look = table.lookup[(bits >>> (bitCount - lookBits)) & ((1 << lookBits) - 1)] as number;
              if (look === 0) look = decodeLongCode(table, bits, bitCount);
              bitCount -= look >> 8;
              const t = look & 0xff;
              if (t !== 0) {
                if (bitCount < t) {
                  while (bitCount <= 24) {
                    let byte = 0;
                    if (pos < end) {
                      byte = data[pos] as number;
                      if (byte !== 0xff) pos++;
                      else if (data[pos + 1] === 0) pos += 2;
                      else {
                        end = pos;
                        byte = 0;
                      }
                    }
                    bits = (bits << 8) | byte;
                    bitCount += 8;
                  }
                }
                bitCount -= t;
                const d = (bits >>> bitCount) & ((1 << t) - 1);
                c.pred += d < 1 << (t - 1) ? d - (1 << t) + 1 : d;
              }
              co[offset] = c.pred * scale;
            } else {
              // Refinement: one bit.
              if (bitCount < 1) {
                while (bitCount <= 24) {
                  let byte = 0;
                  if (pos < end) {
                    byte = data[pos] as number;
                    if (byte !== 0xff) pos++;
                    else if (data[pos + 1] === 0) pos += 2;
                    else {
                      end = pos;
                      byte = 0;
                    }
                  }
                  bits = (bits << 8) | byte;
                  bitCount += 8;
                }
              }
              bitCount--;
              if ((bits >>> bitCount) & 1) co[offset] = (co[offset] as number) | scale;
            }
          }
        }
      }
    }
  }
  // Find the marker that ends the scan.
  while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff)) pos++;
  return pos;
}

/**
 * A progressive AC refinement scan (libjpeg's decode_mcu_AC_refine) of one component, every
 * block in one loop with the bit buffer in locals. Returns the offset of the marker that
 * ends the scan.
 */
function decodeAcRefineScan(
  data: Uint8Array,
  start: number,
  c: Component,
  table: HuffmanTable,
  ss: number,
  se: number,
  al: number,
  restartInterval: number,
  budget: DecodeBudget,
): number {
  const length = data.length;
  let pos = start;
  let end = length; // where reading stops: the end, or the marker that ends the scan
  let bits = 0; // bit buffer, most significant bits first
  let bitCount = 0;
  const co = c.coefficients;
  const lastAc = c.lastAc;
  const lookup = table.lookup;
  const p1 = 1 << al;
  const m1 = -1 << al;
  let eobrun = 0;
  let mcu = 0;
  for (let by = 0; by < c.blocksHigh; by++) {
    budget.tick();
    for (let bx = 0; bx < c.blocksWide; bx++, mcu++) {
      if (restartInterval > 0 && mcu > 0 && mcu % restartInterval === 0) {
        // Drop buffered bits, skip to the next marker and past it when it is RSTn.
        bits = 0;
        bitCount = 0;
        end = length;
        while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff))
          pos++;
        const m = data[pos + 1] as number;
        if (m >= RST0 && m <= RST7) pos += 2;
        eobrun = 0;
      }
      const offset = (by * c.blocksPerLine + bx) * 64;
      let k = ss;
      const block = offset >> 6;
      let last = lastAc[block] as number;
      if (eobrun === 0) {
        for (; k <= se; k++) {
          // At least 25 bits: a code (16) and its correction bit; an end-of-band length refills.
          if (bitCount < 25) {
            while (bitCount <= 24) {
              let byte = 0;
              if (pos < end) {
                byte = data[pos] as number;
                if (byte !== 0xff) pos++;
                else if (data[pos + 1] === 0) pos += 2;
                else {
                  end = pos;
                  byte = 0;
                }
              }
              bits = (bits << 8) | byte;
              bitCount += 8;
            }
          }
          let code = lookup[(bits >>> (bitCount - lookBits)) & ((1 << lookBits) - 1)] as number;
          if (code === 0) code = decodeLongCode(table, bits, bitCount);
          bitCount -= code >> 8;
          let s = code & 15;
          let r = (code >> 4) & 15;
          if (s !== 0) {
            bitCount--;
            s = (bits >>> bitCount) & 1 ? p1 : m1;
          } else if (r !== 15) {
            if (bitCount < r) {
              while (bitCount <= 24) {
                let byte = 0;
                if (pos < end) {
                  byte = data[pos] as number;
                  if (byte !== 0xff) pos++;
                  else if (data[pos + 1] === 0) pos += 2;
                  else {
                    end = pos;
                    byte = 0;
                  }
                }
                bits = (bits << 8) | byte;
                bitCount += 8;
              }
            }
            bitCount -= r;
            eobrun = (1 << r) + ((bits >>> bitCount) & ((1 << r) - 1));
            break;
          }
          while (k <= se) {
            const z = offset + (naturalOrder[k] as number);
            const coef = co[z] as number;
            if (coef !== 0) {
              if (bitCount < 1) {
                while (bitCount <= 24) {
                  let byte = 0;
                  if (pos < end) {
                    byte = data[pos] as number;
                    if (byte !== 0xff) pos++;
                    else if (data[pos + 1] === 0) pos += 2;
                    else {
                      end = pos;
                      byte = 0;
                    }
                  }
                  bits = (bits << 8) | byte;
                  bitCount += 8;
                }
              }
              bitCount--;
              if ((bits >>> bitCount) & 1 && (coef & p1) === 0) co[z] = coef >= 0 ? coef + p1 : coef + m1;
            } else if (--r < 0) break;
            k++;
          }
          if (s !== 0 && k <= 63) {
            co[offset + (naturalOrder[k] as number)] = s;
            if (k > last) last = k;
          }
        }
        lastAc[block] = last;
      }
      if (eobrun > 0) {
        // Only non-zero coefficients take a correction bit: none lies past `last`.
        const stop = Math.min(se, last);
        for (; k <= stop; k++) {
          const z = offset + (naturalOrder[k] as number);
          const coef = co[z] as number;
          if (coef !== 0) {
            if (bitCount < 1) {
              while (bitCount <= 24) {
                let byte = 0;
                if (pos < end) {
                  byte = data[pos] as number;
                  if (byte !== 0xff) pos++;
                  else if (data[pos + 1] === 0) pos += 2;
                  else {
                    end = pos;
                    byte = 0;
                  }
                }
                bits = (bits << 8) | byte;
                bitCount += 8;
              }
            }
            bitCount--;
            if ((bits >>> bitCount) & 1 && (coef & p1) === 0) co[z] = coef >= 0 ? coef + p1 : coef + m1;
          }
        }
        eobrun--;
      }
    }
  }
  // Find the marker that ends the scan.
  while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff)) pos++;
  return pos;
}

/**
 * A progressive AC first scan (coefficients ss..se, scaled by 2^al) of one component, every
 * block in one loop with the bit buffer in locals, like the sequential scans. Returns the
 * offset of the marker that ends the scan.
 */
function decodeAcFirstScan(
  data: Uint8Array,
  start: number,
  c: Component,
  table: HuffmanTable,
  ss: number,
  se: number,
  al: number,
  restartInterval: number,
  budget: DecodeBudget,
): number {
  const length = data.length;
  let pos = start;
  let end = length; // where reading stops: the end, or the marker that ends the scan
  let bits = 0; // bit buffer, most significant bits first
  let bitCount = 0;
  const co = c.coefficients;
  const lastAc = c.lastAc;
  const fastAc = table.fastAc;
  const lookup = table.lookup;
  const scale = 1 << al;
  let eobrun = 0;
  let mcu = 0;
  for (let by = 0; by < c.blocksHigh; by++) {
    budget.tick();
    for (let bx = 0; bx < c.blocksWide; bx++, mcu++) {
      if (restartInterval > 0 && mcu > 0 && mcu % restartInterval === 0) {
        // Drop buffered bits, skip to the next marker and past it when it is RSTn.
        bits = 0;
        bitCount = 0;
        end = length;
        while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff))
          pos++;
        const m = data[pos + 1] as number;
        if (m >= RST0 && m <= RST7) pos += 2;
        eobrun = 0;
      }
      const offset = (by * c.blocksPerLine + bx) * 64;
      if (eobrun > 0) {
        eobrun--;
        continue;
      }
      let last = 0;
      for (let k = ss; k <= se; ) {
        if (bitCount < 16) {
          while (bitCount <= 24) {
            let byte = 0;
            if (pos < end) {
              byte = data[pos] as number;
              if (byte !== 0xff) pos++;
              else if (data[pos + 1] === 0) pos += 2;
              else {
                end = pos;
                byte = 0;
              }
            }
            bits = (bits << 8) | byte;
            bitCount += 8;
          }
        }
        const index = (bits >>> (bitCount - lookBits)) & ((1 << lookBits) - 1);
        const fast = fastAc[index] as number;
        if (fast !== 0) {
          bitCount -= fast & 0xff;
          k += (fast >> 8) & 0xff;
          if (k > 63) break;
          co[offset + (naturalOrder[k] as number)] = (fast >> 16) * scale;
          last = k;
          k++;
          continue;
        }
        let code = lookup[index] as number;
        if (code === 0) code = decodeLongCode(table, bits, bitCount);
        bitCount -= code >> 8;
        const s = code & 15;
        const r = (code >> 4) & 15;
        // Both the end-of-band length (r bits) and a magnitude (s bits) need at most 15 bits.
        const extra = s === 0 ? (r < 15 ? r : 0) : s;
        if (bitCount < extra) {
          while (bitCount <= 24) {
            let byte = 0;
            if (pos < end) {
              byte = data[pos] as number;
              if (byte !== 0xff) pos++;
              else if (data[pos + 1] === 0) pos += 2;
              else {
                end = pos;
                byte = 0;
              }
            }
            bits = (bits << 8) | byte;
            bitCount += 8;
          }
        }
        if (s === 0) {
          if (r < 15) {
            bitCount -= r;
            eobrun = (1 << r) - 1 + ((bits >>> bitCount) & ((1 << r) - 1));
            break;
          }
          k += 16;
          continue;
        }
        k += r;
        if (k > 63) break;
        bitCount -= s;
        const v = (bits >>> bitCount) & ((1 << s) - 1);
        co[offset + (naturalOrder[k] as number)] = (v < 1 << (s - 1) ? v - (1 << s) + 1 : v) * scale;
        last = k;
        k++;
      }
      if (last > (lastAc[offset >> 6] as number)) lastAc[offset >> 6] = last;
    }
  }
  // Find the marker that ends the scan.
  while (pos + 1 < length && !(data[pos] === 0xff && data[pos + 1] !== 0 && data[pos + 1] !== 0xff)) pos++;
  return pos;
}

// --- IDCT: libjpeg's jpeg_idct_islow (jidctint.c), CONST_BITS 13, PASS1_BITS 2 -------------
const FIX_0_298631336 = 2446;
const FIX_0_390180644 = 3196;
const FIX_0_541196100 = 4433;
const FIX_0_765366865 = 6270;
const FIX_0_899976223 = 7373;
const FIX_1_175875602 = 9633;
const FIX_1_501321110 = 12299;
const FIX_1_847759065 = 15137;
const FIX_1_961570560 = 16069;
const FIX_2_053119869 = 16819;
const FIX_2_562915447 = 20995;
const FIX_3_072711026 = 25172;

/** The IDCT of a block whose DC is the only non-zero coefficient: one value (the same
 *  arithmetic as idctIslow's shortcuts, so the result is identical). */
function dcOnlyBlock(dequantisedDc: number, out: Uint32Array, o: number, stride: number): void {
  const v = clamp((((dequantisedDc << 2) + 16) >> 5) + 128) * 0x01010101;
  for (let r = 0, d = o >> 2; r < 8; r++, d += stride >> 2) {
    out[d] = v;
    out[d + 1] = v;
  }
}

/** Pass 1 of a column whose AC coefficients are all zero: the DC scaled, down the column. */
function idctDcColumn(ws: Int32Array, c: number, i0: number): void {
  const dc = i0 << 2;
  ws[c] = dc;
  ws[c + 8] = dc;
  ws[c + 16] = dc;
  ws[c + 24] = dc;
  ws[c + 32] = dc;
  ws[c + 40] = dc;
  ws[c + 48] = dc;
  ws[c + 56] = dc;
}

/**
 * `blk`: dequantised coefficients in natural order (products of int16 and ≤16-bit values fit
 * int32). Leaves `blk` all zeros, ready for the next block (cheaper than a fill: a column
 * without AC has only its DC to clear).
 */
function idctIslow(blk: Int32Array, ws: Int32Array, out: Uint32Array, o: number, stride: number): void {
  for (let c = 0; c < 8; c++) {
    // Each input read once; one test for "no AC in this column" (libjpeg's shortcut).
    const i0 = blk[c] as number;
    const i1 = blk[c + 8] as number;
    const i2 = blk[c + 16] as number;
    const i3 = blk[c + 24] as number;
    const i4 = blk[c + 32] as number;
    const i5 = blk[c + 40] as number;
    const i6 = blk[c + 48] as number;
    const i7 = blk[c + 56] as number;
    blk[c] = 0;
    if ((i1 | i2 | i3 | i4 | i5 | i6 | i7) === 0) {
      idctDcColumn(ws, c, i0);
      continue;
    }
    blk[c + 8] = 0;
    blk[c + 16] = 0;
    blk[c + 24] = 0;
    blk[c + 32] = 0;
    blk[c + 40] = 0;
    blk[c + 48] = 0;
    blk[c + 56] = 0;
    let z2 = i2;
    let z3 = i6;
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    z2 = i0;
    z3 = i4;
    let tmp0 = (z2 + z3) << 13;
    let tmp1 = (z2 - z3) << 13;
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    tmp0 = i7;
    tmp1 = i5;
    tmp2 = i3;
    tmp3 = i1;
    z1 = tmp0 + tmp3;
    z2 = tmp1 + tmp2;
    z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * FIX_1_175875602;
    tmp0 *= FIX_0_298631336;
    tmp1 *= FIX_2_053119869;
    tmp2 *= FIX_3_072711026;
    tmp3 *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 = z3 * -FIX_1_961570560 + z5;
    z4 = z4 * -FIX_0_390180644 + z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    const round = 1 << 10; // DESCALE by CONST_BITS - PASS1_BITS = 11
    ws[c] = (tmp10 + tmp3 + round) >> 11;
    ws[56 + c] = (tmp10 - tmp3 + round) >> 11;
    ws[8 + c] = (tmp11 + tmp2 + round) >> 11;
    ws[48 + c] = (tmp11 - tmp2 + round) >> 11;
    ws[16 + c] = (tmp12 + tmp1 + round) >> 11;
    ws[40 + c] = (tmp12 - tmp1 + round) >> 11;
    ws[24 + c] = (tmp13 + tmp0 + round) >> 11;
    ws[32 + c] = (tmp13 - tmp0 + round) >> 11;
  }
  idctRows(ws, out, o, stride);
}

/**
 * The same from quantised coefficients `co[at..at+63]` (natural order), dequantised with `q`
 * (natural order) on the way, as libjpeg's DEQUANTIZE: the progressive path, whose stored
 * coefficients stay quantised.
 */
function idctIslowQuantised(
  co: Int16Array,
  at: number,
  q: Int32Array,
  ws: Int32Array,
  out: Uint32Array,
  o: number,
  stride: number,
): void {
  for (let c = 0; c < 8; c++) {
    const z = at + c;
    const i0 = (co[z] as number) * (q[c] as number);
    const r1 = co[z + 8] as number;
    const r2 = co[z + 16] as number;
    const r3 = co[z + 24] as number;
    const r4 = co[z + 32] as number;
    const r5 = co[z + 40] as number;
    const r6 = co[z + 48] as number;
    const r7 = co[z + 56] as number;
    if ((r1 | r2 | r3 | r4 | r5 | r6 | r7) === 0) {
      idctDcColumn(ws, c, i0);
      continue;
    }
    // The same butterfly as idctIslow's (written out twice: a shared function is not inlined).
    const i1 = r1 * (q[c + 8] as number);
    const i2 = r2 * (q[c + 16] as number);
    const i3 = r3 * (q[c + 24] as number);
    const i4 = r4 * (q[c + 32] as number);
    const i5 = r5 * (q[c + 40] as number);
    const i6 = r6 * (q[c + 48] as number);
    const i7 = r7 * (q[c + 56] as number);
    let z2 = i2;
    let z3 = i6;
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    z2 = i0;
    z3 = i4;
    let tmp0 = (z2 + z3) << 13;
    let tmp1 = (z2 - z3) << 13;
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    tmp0 = i7;
    tmp1 = i5;
    tmp2 = i3;
    tmp3 = i1;
    z1 = tmp0 + tmp3;
    z2 = tmp1 + tmp2;
    z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * FIX_1_175875602;
    tmp0 *= FIX_0_298631336;
    tmp1 *= FIX_2_053119869;
    tmp2 *= FIX_3_072711026;
    tmp3 *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 = z3 * -FIX_1_961570560 + z5;
    z4 = z4 * -FIX_0_390180644 + z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    const round = 1 << 10; // DESCALE by CONST_BITS - PASS1_BITS = 11
    ws[c] = (tmp10 + tmp3 + round) >> 11;
    ws[56 + c] = (tmp10 - tmp3 + round) >> 11;
    ws[8 + c] = (tmp11 + tmp2 + round) >> 11;
    ws[48 + c] = (tmp11 - tmp2 + round) >> 11;
    ws[16 + c] = (tmp12 + tmp1 + round) >> 11;
    ws[40 + c] = (tmp12 - tmp1 + round) >> 11;
    ws[24 + c] = (tmp13 + tmp0 + round) >> 11;
    ws[32 + c] = (tmp13 - tmp0 + round) >> 11;
  }
  idctRows(ws, out, o, stride);
}

/** Pass 2: rows; DESCALE by CONST_BITS + PASS1_BITS + 3 = 18, then +128 and clamp. */
function idctRows(ws: Int32Array, out: Uint32Array, o: number, stride: number): void {
  for (let r = 0; r < 8; r++) {
    const w = r * 8;
    const d = (o + r * stride) >> 2;
    const w0 = ws[w] as number;
    const w1 = ws[w + 1] as number;
    const w2 = ws[w + 2] as number;
    const w3 = ws[w + 3] as number;
    const w4 = ws[w + 4] as number;
    const w5 = ws[w + 5] as number;
    const w6 = ws[w + 6] as number;
    const w7 = ws[w + 7] as number;
    if ((w1 | w2 | w3 | w4 | w5 | w6 | w7) === 0) {
      // Only the row's DC term: the full computation reduces to this (libjpeg does the same).
      const v = clamp(((w0 + 16) >> 5) + 128) * 0x01010101;
      out[d] = v;
      out[d + 1] = v;
      continue;
    }
    let z2 = w2;
    let z3 = w6;
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    // The rounding constant (1 << 17) and the +128 offset (128 << 18) are folded in here.
    let tmp0 = (w0 + w4) * 8192 + (1 << 17) + 128 * (1 << 18);
    let tmp1 = (w0 - w4) * 8192 + (1 << 17) + 128 * (1 << 18);
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    tmp0 = w7;
    tmp1 = w5;
    tmp2 = w3;
    tmp3 = w1;
    z1 = tmp0 + tmp3;
    z2 = tmp1 + tmp2;
    z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * FIX_1_175875602;
    tmp0 *= FIX_0_298631336;
    tmp1 *= FIX_2_053119869;
    tmp2 *= FIX_3_072711026;
    tmp3 *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 = z3 * -FIX_1_961570560 + z5;
    z4 = z4 * -FIX_0_390180644 + z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    let s0 = (tmp10 + tmp3) >> 18;
    let s1 = (tmp11 + tmp2) >> 18;
    let s2 = (tmp12 + tmp1) >> 18;
    let s3 = (tmp13 + tmp0) >> 18;
    let s4 = (tmp13 - tmp0) >> 18;
    let s5 = (tmp12 - tmp1) >> 18;
    let s6 = (tmp11 - tmp2) >> 18;
    let s7 = (tmp10 - tmp3) >> 18;
    // In range (by far the common case) after one test; else libjpeg's range limit.
    if ((s0 | s1 | s2 | s3 | s4 | s5 | s6 | s7) >>> 8 !== 0) {
      s0 = clamp(s0);
      s1 = clamp(s1);
      s2 = clamp(s2);
      s3 = clamp(s3);
      s4 = clamp(s4);
      s5 = clamp(s5);
      s6 = clamp(s6);
      s7 = clamp(s7);
    }
    if (littleEndian) {
      out[d] = s0 | (s1 << 8) | (s2 << 16) | (s3 << 24);
      out[d + 1] = s4 | (s5 << 8) | (s6 << 16) | (s7 << 24);
    } else {
      out[d] = (s0 << 24) | (s1 << 16) | (s2 << 8) | s3;
      out[d + 1] = (s4 << 24) | (s5 << 16) | (s6 << 8) | s7;
    }
  }
}

/**
 * libjpeg's range limit: 0..255 for -384..639, wrapping outside (only reached by damaged
 * data, where any value is as good as another) instead of a branch per sample.
 */
const rangeLimit = new Uint8Array(1024);
for (let i = 0; i < 1024; i++) rangeLimit[i] = Math.max(0, Math.min(255, i - 384));
const clamp = (v: number) => rangeLimit[(v + 384) & 1023] as number;
const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

// --- reduced-size IDCTs: libjpeg's jpeg_idct_4x4, _2x2, _1x1 (jidctred.c) -------------------
// 8×8 coefficients to 4×4, 2×2 or 1×1 samples, as libjpeg-turbo decodes at scale 1/2, 1/4,
// 1/8: the same fixed-point constants (CONST_BITS 13, PASS1_BITS 2), the same rounding, and
// the same coefficients left out (row and column 4 for 4×4; 2, 4, 6 for 2×2).
const FIX_0_211164243 = 1730;
const FIX_0_509795579 = 4176;
const FIX_0_601344887 = 4926;
const FIX_0_720959822 = 5906;
const FIX_0_850430095 = 6967;
const FIX_1_061594337 = 8697;
const FIX_1_272758580 = 10426;
const FIX_1_451774981 = 11893;
const FIX_2_172734803 = 17799;
const FIX_3_624509785 = 29692;

const reducedInput = new Int32Array(64);

/**
 * `blk`: dequantised coefficients, natural order; left all zeros. Writes `size`×`size`
 * samples at `out[o]`, rows `stride` apart.
 */
function idctReduced(
  blk: Int32Array,
  size: number,
  ws: Int32Array,
  out: Uint8Array,
  o: number,
  stride: number,
): void {
  if (size === 1) {
    // One-eighth of the DC coefficient, rounded (DESCALE by 3).
    out[o] = clamp((((blk[0] as number) + 4) >> 3) + 128);
    blk.fill(0);
    return;
  }
  if (size === 4) {
    for (let c = 0; c < 8; c++) {
      if (c === 4) continue;
      const i0 = blk[c] as number;
      const i1 = blk[c + 8] as number;
      const i2 = blk[c + 16] as number;
      const i3 = blk[c + 24] as number;
      const i5 = blk[c + 40] as number;
      const i6 = blk[c + 48] as number;
      const i7 = blk[c + 56] as number;
      if ((i1 | i2 | i3 | i5 | i6 | i7) === 0) {
        const dc = i0 * 4;
        ws[c] = dc;
        ws[c + 8] = dc;
        ws[c + 16] = dc;
        ws[c + 24] = dc;
        continue;
      }
      const t0 = i0 * (1 << 14);
      const t2 = i2 * FIX_1_847759065 - i6 * FIX_0_765366865;
      const t10 = t0 + t2;
      const t12 = t0 - t2;
      const odd0 = -i7 * FIX_0_211164243 + i5 * FIX_1_451774981 - i3 * FIX_2_172734803 + i1 * FIX_1_061594337;
      const odd2 = -i7 * FIX_0_509795579 - i5 * FIX_0_601344887 + i3 * FIX_0_899976223 + i1 * FIX_2_562915447;
      // DESCALE by CONST_BITS - PASS1_BITS + 1 = 12
      ws[c] = (t10 + odd2 + 2048) >> 12;
      ws[c + 24] = (t10 - odd2 + 2048) >> 12;
      ws[c + 8] = (t12 + odd0 + 2048) >> 12;
      ws[c + 16] = (t12 - odd0 + 2048) >> 12;
    }
    for (let r = 0; r < 4; r++) {
      const w = r * 8;
      const d = o + r * stride;
      const w0 = ws[w] as number;
      const w1 = ws[w + 1] as number;
      const w2 = ws[w + 2] as number;
      const w3 = ws[w + 3] as number;
      const w5 = ws[w + 5] as number;
      const w6 = ws[w + 6] as number;
      const w7 = ws[w + 7] as number;
      if ((w1 | w2 | w3 | w5 | w6 | w7) === 0) {
        const v = clamp(((w0 + 16) >> 5) + 128);
        out[d] = v;
        out[d + 1] = v;
        out[d + 2] = v;
        out[d + 3] = v;
        continue;
      }
      const t0 = w0 * (1 << 14);
      const t2 = w2 * FIX_1_847759065 - w6 * FIX_0_765366865;
      const t10 = t0 + t2;
      const t12 = t0 - t2;
      const odd0 = -w7 * FIX_0_211164243 + w5 * FIX_1_451774981 - w3 * FIX_2_172734803 + w1 * FIX_1_061594337;
      const odd2 = -w7 * FIX_0_509795579 - w5 * FIX_0_601344887 + w3 * FIX_0_899976223 + w1 * FIX_2_562915447;
      // DESCALE by CONST_BITS + PASS1_BITS + 3 + 1 = 19, then the +128 offset.
      out[d] = clamp(((t10 + odd2 + (1 << 18)) >> 19) + 128);
      out[d + 3] = clamp(((t10 - odd2 + (1 << 18)) >> 19) + 128);
      out[d + 1] = clamp(((t12 + odd0 + (1 << 18)) >> 19) + 128);
      out[d + 2] = clamp(((t12 - odd0 + (1 << 18)) >> 19) + 128);
    }
    blk.fill(0);
    return;
  }
  // 2×2: columns 0, 1, 3, 5, 7.
  for (let c = 0; c < 8; c++) {
    if (c === 2 || c === 4 || c === 6) continue;
    const i0 = blk[c] as number;
    const i1 = blk[c + 8] as number;
    const i3 = blk[c + 24] as number;
    const i5 = blk[c + 40] as number;
    const i7 = blk[c + 56] as number;
    if ((i1 | i3 | i5 | i7) === 0) {
      ws[c] = i0 * 4;
      ws[c + 8] = i0 * 4;
      continue;
    }
    const t10 = i0 * (1 << 15);
    const t0 = -i7 * FIX_0_720959822 + i5 * FIX_0_850430095 - i3 * FIX_1_272758580 + i1 * FIX_3_624509785;
    // DESCALE by CONST_BITS - PASS1_BITS + 2 = 13
    ws[c] = (t10 + t0 + 4096) >> 13;
    ws[c + 8] = (t10 - t0 + 4096) >> 13;
  }
  for (let r = 0; r < 2; r++) {
    const w = r * 8;
    const d = o + r * stride;
    const w0 = ws[w] as number;
    const w1 = ws[w + 1] as number;
    const w3 = ws[w + 3] as number;
    const w5 = ws[w + 5] as number;
    const w7 = ws[w + 7] as number;
    if ((w1 | w3 | w5 | w7) === 0) {
      const v = clamp(((w0 + 16) >> 5) + 128);
      out[d] = v;
      out[d + 1] = v;
      continue;
    }
    const t10 = w0 * (1 << 15);
    const t0 = -w7 * FIX_0_720959822 + w5 * FIX_0_850430095 - w3 * FIX_1_272758580 + w1 * FIX_3_624509785;
    // DESCALE by CONST_BITS + PASS1_BITS + 3 + 2 = 20
    out[d] = clamp(((t10 + t0 + (1 << 19)) >> 20) + 128);
    out[d + 1] = clamp(((t10 - t0 + (1 << 19)) >> 20) + 128);
  }
  blk.fill(0);
}
