/**
 * JPEG: a marker walk that reads what the viewer needs before any decoding (frame size
 * checked against the limits and the whole memory need reserved, EXIF orientation, Adobe
 * APP14 transform, DNL height when SOF says 0) and refuses, with a clear reason, what we
 * do not decode: 12/16-bit samples, lossless (SOF3), hierarchical and arithmetic-coded
 * frames, 2-component images. Decoding itself is jpeg-core.ts and jpeg-color.ts.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import { stillFrames } from './compose.ts';
import { type JpegColour, rgbaRowWriter } from './jpeg-color.ts';
import { componentBlockSize, decodeJpegPlanes } from './jpeg-core.ts';
import { chooseScale, type DecodedImage, type DecodeOptions } from './types.ts';

// --- wire layout -----------------------------------------------------------------------
const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const DNL = 0xdc;
const APP1 = 0xe1;
const APP14 = 0xee;
const adobeHeader = [0x41, 0x64, 0x6f, 0x62, 0x65]; // "Adobe"
const adobeTransformOffset = 11;
const TEM = 0x01;
const RST0 = 0xd0;
const RST7 = 0xd7;
const supportedFrames: Record<number, string> = { 192: 'baseline', 193: 'extended', 194: 'progressive' };
const unsupportedFrames: Record<number, string> = {
  195: 'lossless JPEG',
  197: 'hierarchical JPEG',
  198: 'hierarchical progressive JPEG',
  199: 'hierarchical lossless JPEG',
  201: 'arithmetic-coded JPEG',
  202: 'arithmetic-coded progressive JPEG',
  203: 'arithmetic-coded lossless JPEG',
  205: 'hierarchical arithmetic-coded JPEG',
  206: 'hierarchical arithmetic-coded progressive JPEG',
  207: 'hierarchical arithmetic-coded lossless JPEG',
};
const exifHeader = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"
const orientationTag = 0x0112;

interface FrameHeader {
  kind: string;
  precision: number;
  height: number;
  width: number;
  components: number;
  maxH: number;
  maxV: number;
  /** Horizontal and vertical sampling factors per component. */
  sampling: [number, number][];
  /** Component identifiers as bytes ("R", "G", "B" marks an RGB image). */
  ids: number[];
  /** Offset of the height field inside the file (for the DNL rewrite). */
  heightOffset: number;
}

const u16 = (b: Uint8Array, o: number) => ((b[o] as number) << 8) | (b[o + 1] as number);

export interface JpegHeader {
  frame: FrameHeader;
  orientation: number;
  /** Adobe APP14 colour transform (0: none, 1: YCbCr, 2: YCCK), when present. */
  adobeTransform?: number;
  /** Height from a DNL marker when SOF says 0. */
  dnlHeight?: number;
  /** Components in the first scan (all of them: a sequential image is decoded in bands). */
  firstScanComponents: number;
}

/** Walks the markers up to the first scan (and on to DNL when needed). Never allocates pixels. */
export function readJpegHeader(bytes: Uint8Array): JpegHeader {
  if (bytes[0] !== 0xff || bytes[1] !== SOI) refuse('corrupt', 'JPEG does not start with SOI');
  let pos = 2;
  let frame: FrameHeader | undefined;
  let orientation = 1;
  let adobeTransform: number | undefined;
  while (pos < bytes.length) {
    if (bytes[pos] !== 0xff) {
      pos++; // garbage between segments: decoders skip it, so do we
      continue;
    }
    const marker = bytes[pos + 1];
    if (marker === undefined) break;
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    pos += 2;
    if (marker === SOI || marker === TEM || (marker >= RST0 && marker <= RST7)) continue;
    if (marker === EOI) break;
    if (pos + 2 > bytes.length) refuse('truncated', 'JPEG ends inside a segment header');
    const length = u16(bytes, pos);
    if (length < 2) refuse('corrupt', `JPEG segment 0xFF${marker.toString(16)} has length ${length}`);
    const body = pos + 2;
    const end = pos + length;
    if (end > bytes.length)
      refuse('truncated', `JPEG segment 0xFF${marker.toString(16)} runs past the end of the file`);
    const unsupported = unsupportedFrames[marker];
    if (unsupported) refuse('unsupported', `${unsupported} is not supported`);
    const kind = supportedFrames[marker];
    if (kind) {
      if (frame) refuse('unsupported', 'JPEG with several frames is not supported');
      if (length < 8) refuse('corrupt', 'JPEG frame header is too short');
      const components = bytes[body + 5] as number;
      if (length < 8 + components * 3) refuse('corrupt', 'JPEG frame header is too short for its components');
      let maxH = 0;
      let maxV = 0;
      const ids: number[] = [];
      const factors: [number, number][] = [];
      for (let c = 0; c < components; c++) {
        ids.push(bytes[body + 6 + c * 3] as number);
        const sampling = bytes[body + 6 + c * 3 + 1] as number;
        const h = sampling >> 4;
        const v = sampling & 15;
        if (h < 1 || h > 4 || v < 1 || v > 4) refuse('corrupt', `JPEG sampling factor ${h}×${v} is invalid`);
        factors.push([h, v]);
        maxH = Math.max(maxH, h);
        maxV = Math.max(maxV, v);
      }
      frame = {
        kind,
        precision: bytes[body] as number,
        height: u16(bytes, body + 1),
        width: u16(bytes, body + 3),
        components,
        maxH,
        maxV,
        ids,
        sampling: factors,
        heightOffset: body + 1,
      };
    } else if (marker === APP1 && orientation === 1) {
      orientation = readOrientation(bytes.subarray(body, end)) ?? 1;
    } else if (marker === APP14 && length >= 2 + adobeTransformOffset + 1) {
      if (adobeHeader.every((b, i) => bytes[body + i] === b))
        adobeTransform = bytes[body + adobeTransformOffset];
    } else if (marker === SOS) {
      if (!frame) refuse('corrupt', 'JPEG scan comes before the frame header');
      const found = {
        frame,
        orientation,
        firstScanComponents: length > 2 ? (bytes[body] as number) : 0,
        ...(adobeTransform === undefined ? {} : { adobeTransform }),
      };
      return frame.height === 0 ? { ...found, dnlHeight: findDnl(bytes, end) } : found;
    }
    pos = end;
  }
  if (!frame) refuse('corrupt', 'JPEG has no frame header (SOF)');
  refuse('truncated', 'JPEG has no image data (SOS)');
}

/**
 * What decoding allocates (jpeg-core.ts), known from the header before anything is decoded:
 * the RGBA output; progressive frames keep 16-bit coefficients and a last-coefficient byte
 * per block of every component (whole MCUs) and convert through planes of two MCU rows;
 * sequential frames whose first scan holds every component convert through such planes
 * too, others keep whole 8-bit planes; plus a row buffer per subsampled component.
 */
export function jpegMemoryNeed(header: JpegHeader, height: number, scale = 1): number {
  const { frame } = header;
  const smallest = 8 / scale;
  const mcusPerLine = Math.ceil(frame.width / (8 * frame.maxH));
  const mcusPerColumn = Math.ceil(height / (8 * frame.maxV));
  const progressive = frame.kind === 'progressive';
  const banded = progressive || header.firstScanComponents === frame.components;
  const outWidth = Math.ceil(frame.width / scale);
  let need = outWidth * Math.ceil(height / scale) * 4;
  for (const [h, v] of frame.sampling) {
    const blocksPerLine = mcusPerLine * h;
    const blocksPerColumn = mcusPerColumn * v;
    const block = componentBlockSize(frame.maxH, frame.maxV, h, v, smallest);
    if (progressive) need += blocksPerLine * blocksPerColumn * (64 * 2 + 1);
    need += blocksPerLine * block * block * (banded ? Math.min(2 * v, blocksPerColumn) : blocksPerColumn);
    if (h * block !== frame.maxH * smallest || v * block !== frame.maxV * smallest) need += outWidth;
  }
  return need;
}

/** DNL follows the first scan's entropy-coded data, where 0xFF is always escaped. */
function findDnl(bytes: Uint8Array, from: number): number | undefined {
  for (let i = from; i + 5 < bytes.length; i++) {
    if (bytes[i] === 0xff && bytes[i + 1] === DNL && u16(bytes, i + 2) === 4) return u16(bytes, i + 4);
  }
  return undefined;
}

/** EXIF orientation (tag 0x0112 in IFD0), or undefined when absent or malformed. */
export function readOrientation(app1: Uint8Array): number | undefined {
  if (app1.length < 14) return undefined;
  for (let i = 0; i < 6; i++) if (app1[i] !== exifHeader[i]) return undefined;
  const tiff = app1.subarray(6);
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return undefined;
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return undefined;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) return undefined;
    if (view.getUint16(entry, little) !== orientationTag) continue;
    const value = view.getUint16(entry + 8, little);
    return value >= 1 && value <= 8 ? value : undefined;
  }
  return undefined;
}

export function decodeJpeg(
  bytes: Uint8Array,
  budget: DecodeBudget,
  options: DecodeOptions = {},
): DecodedImage {
  const header = readJpegHeader(bytes);
  const { frame } = header;
  if (frame.precision !== 8)
    refuse('unsupported', `${frame.precision}-bit JPEG is not supported (only 8-bit samples)`);
  if (frame.components !== 1 && frame.components !== 3 && frame.components !== 4)
    refuse('unsupported', `JPEG with ${frame.components} colour components is not supported`);
  const height = frame.height === 0 ? (header.dnlHeight ?? 0) : frame.height;
  if (frame.width === 0 || height === 0)
    refuse(
      'corrupt',
      `JPEG has invalid dimensions ${frame.width}×${height}${frame.height === 0 ? ' (no DNL marker)' : ''}`,
    );
  budget.checkSize(frame.width, height, 'JPEG image');
  const scale = chooseScale(frame.width, height, options);
  budget.ensure(jpegMemoryNeed(header, height, scale), 'JPEG decode');
  const colour: JpegColour =
    frame.components === 1
      ? 'grey'
      : frame.components === 3
        ? // RGB when Adobe APP14 says "no transform" or the components are named R, G, B
          // (libjpeg's rules); YCbCr otherwise.
          header.adobeTransform === 0 || frame.ids.join() === '82,71,66'
          ? 'rgb'
          : 'ycbcr'
        : header.adobeTransform === 2
          ? 'ycck'
          : 'cmyk';
  const adobe = header.adobeTransform !== undefined;
  // The output is allocated when the planes are (at the first scan; progressive: after the
  // last), so that a file refused before then never gets one.
  let output = undefined as Uint8Array | undefined; // (assigned in the sink: no narrowing)
  const outWidth = Math.ceil(frame.width / scale);
  const outHeight = Math.ceil(height / scale);
  decodeJpegPlanes(
    bytes,
    height,
    budget,
    (planes) => {
      output = budget.bytes(outWidth * outHeight * 4, 'JPEG RGBA output');
      return rgbaRowWriter(planes, colour, adobe, budget, output);
    },
    scale,
  );
  const rgba = output ?? refuse('corrupt', 'JPEG has no image data');
  return {
    format: 'jpeg',
    width: outWidth,
    height: outHeight,
    orientation: header.orientation,
    bitDepth: 8,
    frames: stillFrames(outWidth, outHeight, rgba),
    loopCount: 1,
    ...(scale > 1 ? { scaled: { denominator: scale, storedWidth: frame.width, storedHeight: height } } : {}),
  };
}
