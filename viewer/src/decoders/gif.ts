/**
 * GIF decoder with compositing, written here: omggif and gifuct-js only return frame
 * rectangles (the caller must composite and bound memory) and have no limits (deanm/omggif
 * `omggif.js` 1.0.10, matt-way/gifuct-js README 2.1.2). Every image descriptor is checked
 * against the limits before its index buffer is allocated; frames are composited onto the logical screen,
 * pixels outside it are clipped.
 *
 * Frame model (as robert-ancell/pygif's test suite expects): an image ends a displayed
 * frame when its Graphic Control Extension gives a delay > 0; images without a delay are
 * drawn into the next frame. When no image has a delay but the file carries a looping
 * extension (NETSCAPE2.0/ANIMEXTS1.0), every image is a frame, as renderers commonly do.
 * Damaged LZW data (invalid code, missing end code, data cut short) ends that image: what
 * was decoded is shown, the rest of the image leaves the canvas as it was.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import type { DecodedImage, Frame } from './types.ts';

// --- wire layout -----------------------------------------------------------------------
const headerSize = 13; // "GIF89a" + logical screen descriptor
const extensionIntroducer = 0x21;
const imageSeparator = 0x2c;
const trailer = 0x3b;
const graphicControlLabel = 0xf9;
const applicationLabel = 0xff;
const imageDescriptorSize = 10;
const maxLzwBits = 12;

enum Disposal {
  none = 0,
  keep = 1,
  background = 2,
  previous = 3,
}

interface Control {
  disposal: number;
  delayCs: number;
  transparent: number;
}

interface ImageBlock {
  left: number;
  top: number;
  width: number;
  height: number;
  interlaced: boolean;
  colours: Uint8Array | undefined;
  minCodeSize: number;
  /** Sub-block payloads, concatenated lazily. */
  data: Uint8Array[];
  control: Control;
}

const u16 = (b: Uint8Array, o: number) => (b[o] as number) | ((b[o + 1] as number) << 8);

export function decodeGif(bytes: Uint8Array, budget: DecodeBudget): DecodedImage {
  if (bytes.length < headerSize) refuse('truncated', 'GIF ends inside its header');
  const width = u16(bytes, 6);
  const height = u16(bytes, 8);
  if (width === 0 || height === 0) refuse('corrupt', `GIF logical screen is ${width}×${height}`);
  budget.checkSize(width, height, 'GIF screen');
  const flags = bytes[10] as number;
  let pos = headerSize;
  let globalColours: Uint8Array | undefined;
  if (flags & 0x80) {
    const size = 3 << ((flags & 7) + 1);
    globalColours = bytes.subarray(pos, Math.min(pos + size, bytes.length));
    pos += size;
  }

  // Pass 1: parse blocks (no pixel work), so frame grouping and counts are known first.
  const images: ImageBlock[] = [];
  let loopPlays = 1;
  let sawLoopExtension = false;
  let control: Control = { disposal: 0, delayCs: 0, transparent: -1 };
  while (pos < bytes.length) {
    budget.tick();
    const introducer = bytes[pos++] as number;
    if (introducer === trailer) break;
    if (introducer === extensionIntroducer) {
      const label = bytes[pos++];
      const blocks = readSubBlocks(bytes, pos);
      pos = blocks.end;
      const first = blocks.parts[0];
      if (label === graphicControlLabel && first && first.length >= 4) {
        const packed = first[0] as number;
        control = {
          disposal: (packed >> 2) & 7,
          delayCs: u16(first, 1),
          transparent: packed & 1 ? (first[3] as number) : -1,
        };
      } else if (label === applicationLabel && first && first.length === 11) {
        const id = String.fromCharCode(...first);
        const sub = blocks.parts[1];
        if ((id === 'NETSCAPE2.0' || id === 'ANIMEXTS1.0') && sub && sub.length >= 3 && sub[0] === 1) {
          sawLoopExtension = true;
          const n = u16(sub, 1);
          // NETSCAPE's count is repetitions after the first play; 0 means forever.
          loopPlays = n === 0 ? 0 : n + 1;
        }
      }
      continue;
    }
    if (introducer !== imageSeparator) {
      if (images.length === 0)
        refuse('corrupt', `GIF has an unknown block type 0x${introducer.toString(16)}`);
      break; // garbage after the images: keep what we have, as browsers do
    }
    if (pos + imageDescriptorSize - 1 > bytes.length) break;
    const left = u16(bytes, pos);
    const top = u16(bytes, pos + 2);
    const w = u16(bytes, pos + 4);
    const h = u16(bytes, pos + 6);
    const packed = bytes[pos + 8] as number;
    pos += imageDescriptorSize - 1;
    let colours: Uint8Array | undefined;
    if (packed & 0x80) {
      const size = 3 << ((packed & 7) + 1);
      colours = bytes.subarray(pos, Math.min(pos + size, bytes.length));
      pos += size;
    }
    if (pos >= bytes.length) break;
    const minCodeSize = bytes[pos++] as number;
    const blocks = readSubBlocks(bytes, pos);
    pos = blocks.end;
    if (w > 0 && h > 0) budget.checkSize(w, h, 'GIF frame');
    images.push({
      left,
      top,
      width: w,
      height: h,
      interlaced: (packed & 0x40) !== 0,
      colours,
      minCodeSize,
      data: blocks.parts,
      control,
    });
    control = { disposal: 0, delayCs: 0, transparent: -1 };
  }

  const noDelays = !images.some((i) => i.control.delayCs > 0);
  const endsFrame = (i: number) =>
    i === images.length - 1 ||
    (images[i] as ImageBlock).control.delayCs > 0 ||
    (noDelays && sawLoopExtension);
  let frameCount = 0;
  for (let i = 0; i < images.length; i++) if (endsFrame(i)) frameCount++;
  budget.checkFrames(Math.max(1, frameCount));

  // Pass 2: decode and composite.
  const canvasBytes = width * height * 4;
  const canvas = budget.bytes(canvasBytes, 'GIF canvas');
  let saved: Uint8Array | undefined;
  let maxIndexBytes = 0;
  for (const image of images) maxIndexBytes = Math.max(maxIndexBytes, image.width * image.height);
  const indices = budget.bytes(maxIndexBytes, 'GIF frame indices');
  const lzw = new LzwTables();
  const frames: Frame[] = [];
  let pending: ImageBlock | undefined;
  for (const [i, image] of images.entries()) {
    budget.tick();
    if (pending) dispose(canvas, width, height, pending, saved);
    if (image.control.disposal === Disposal.previous) {
      saved ??= budget.bytes(canvasBytes, 'GIF saved canvas');
      saved.set(canvas);
    }
    const count = image.width * image.height;
    const decoded = count > 0 ? lzw.decode(image, indices.subarray(0, count), budget) : 0;
    draw(canvas, width, height, image, indices, decoded, image.colours ?? globalColours);
    pending = image;
    if (endsFrame(i)) {
      const rgba = budget.bytes(canvasBytes, 'GIF frame');
      rgba.set(canvas);
      frames.push({ rgba, delayMs: image.control.delayCs * 10 });
    }
  }
  if (frames.length === 0) frames.push({ rgba: canvas, delayMs: 0 });
  return {
    format: 'gif',
    width,
    height,
    orientation: 1,
    bitDepth: 8,
    frames,
    loopCount: frames.length > 1 ? loopPlays : 1,
  };
}

/** Reads data sub-blocks from `pos`; a block running past the end is cut to what exists. */
function readSubBlocks(bytes: Uint8Array, pos: number): { parts: Uint8Array[]; end: number } {
  const parts: Uint8Array[] = [];
  while (pos < bytes.length) {
    const size = bytes[pos++] as number;
    if (size === 0) return { parts, end: pos };
    const end = Math.min(pos + size, bytes.length);
    parts.push(bytes.subarray(pos, end));
    pos = end;
  }
  return { parts, end: pos };
}

function clipRect(image: ImageBlock, width: number, height: number) {
  return {
    x0: Math.min(image.left, width),
    y0: Math.min(image.top, height),
    x1: Math.min(image.left + image.width, width),
    y1: Math.min(image.top + image.height, height),
  };
}

function dispose(
  canvas: Uint8Array,
  width: number,
  height: number,
  image: ImageBlock,
  saved?: Uint8Array,
): void {
  const { x0, y0, x1, y1 } = clipRect(image, width, height);
  if (x1 <= x0 || y1 <= y0) return;
  if (image.control.disposal === Disposal.background) {
    // Background is shown as transparent, as browsers do (the background colour index is
    // ignored).
    for (let y = y0; y < y1; y++) canvas.fill(0, (y * width + x0) * 4, (y * width + x1) * 4);
  } else if (image.control.disposal === Disposal.previous && saved) {
    for (let y = y0; y < y1; y++) {
      const a = (y * width + x0) * 4;
      canvas.set(saved.subarray(a, (y * width + x1) * 4), a);
    }
  }
}

/** Row of the image that the n-th stored row lands on (interlaced files store 4 passes). */
function interlacedRow(n: number, h: number): number {
  const p1 = Math.ceil(h / 8);
  if (n < p1) return n * 8;
  n -= p1;
  const p2 = Math.ceil((h - 4) / 8);
  if (n < p2) return 4 + n * 8;
  n -= p2;
  const p3 = Math.ceil((h - 2) / 4);
  if (n < p3) return 2 + n * 4;
  n -= p3;
  return 1 + n * 2;
}

function draw(
  canvas: Uint8Array,
  width: number,
  height: number,
  image: ImageBlock,
  indices: Uint8Array,
  decoded: number,
  colours: Uint8Array | undefined,
): void {
  const w = image.width;
  const entries = colours ? Math.floor(colours.length / 3) : 0;
  const transparent = image.control.transparent;
  const rows = Math.ceil(decoded / w);
  for (let r = 0; r < rows; r++) {
    const y = image.top + (image.interlaced ? interlacedRow(r, image.height) : r);
    if (y >= height) continue;
    const rowStart = r * w;
    const n = Math.min(w, decoded - rowStart);
    for (let x = 0; x < n; x++) {
      const cx = image.left + x;
      if (cx >= width) break;
      const index = indices[rowStart + x] as number;
      if (index === transparent) continue;
      const o = (y * width + cx) * 4;
      if (colours && index < entries) {
        canvas[o] = colours[index * 3] as number;
        canvas[o + 1] = colours[index * 3 + 1] as number;
        canvas[o + 2] = colours[index * 3 + 2] as number;
      } else {
        // An index past the colour table (or no table at all) shows as opaque black.
        canvas[o] = 0;
        canvas[o + 1] = 0;
        canvas[o + 2] = 0;
      }
      canvas[o + 3] = 255;
    }
  }
}

/** LZW string table, reused across frames (fixed size: 4096 codes). */
class LzwTables {
  private readonly prefix = new Int16Array(1 << maxLzwBits);
  private readonly suffix = new Uint8Array(1 << maxLzwBits);
  private readonly first = new Uint8Array(1 << maxLzwBits);
  private readonly length = new Uint16Array(1 << maxLzwBits);

  /** Decodes into `out`; returns how many pixels were produced (≤ out.length). */
  decode(image: ImageBlock, out: Uint8Array, budget: DecodeBudget): number {
    const minSize = image.minCodeSize;
    if (minSize < 1 || minSize > 11)
      refuse('corrupt', `GIF LZW minimum code size ${minSize} is out of range`);
    const { prefix, suffix, first, length } = this;
    const clear = 1 << minSize;
    const end = clear + 1;
    for (let i = 0; i < clear; i++) {
      prefix[i] = -1;
      suffix[i] = i;
      first[i] = i;
      length[i] = 1;
    }
    let size = minSize + 1;
    let next = end + 1;
    let previous = -1;
    let produced = 0;
    const total = out.length;
    let bits = 0;
    let bitCount = 0;
    let part = 0;
    let offset = 0;
    const parts = image.data;
    let steps = 0;
    for (;;) {
      while (bitCount < size) {
        const chunk = parts[part];
        if (!chunk) return produced;
        if (offset >= chunk.length) {
          part++;
          offset = 0;
          continue;
        }
        bits |= (chunk[offset++] as number) << bitCount;
        bitCount += 8;
      }
      const code = bits & ((1 << size) - 1);
      bits >>>= size;
      bitCount -= size;
      if ((++steps & 0xfff) === 0) budget.tick();
      if (code === clear) {
        size = minSize + 1;
        next = end + 1;
        previous = -1;
        continue;
      }
      if (code === end) return produced;
      let written: number;
      if (previous < 0) {
        if (code >= clear) return produced; // must start with a literal
        out[produced] = code;
        written = 1;
      } else if (code < next) {
        written = this.emit(code, out, produced);
        if (next < 1 << maxLzwBits) this.add(next++, previous, first[code] as number);
      } else if (code === next && next < 1 << maxLzwBits) {
        // The KwKwK case: the new string is the previous one plus its own first byte.
        this.add(next++, previous, first[previous] as number);
        written = this.emit(code, out, produced);
      } else {
        return produced; // invalid code: the image ends here
      }
      produced += written;
      if (produced >= total) return total;
      previous = code;
      if (next === 1 << size && size < maxLzwBits) size++;
    }
  }

  private add(code: number, prefixCode: number, byte: number): void {
    this.prefix[code] = prefixCode;
    this.suffix[code] = byte;
    this.first[code] = this.first[prefixCode] as number;
    this.length[code] = (this.length[prefixCode] as number) + 1;
  }

  /** Writes the string for `code` at `at`, clipped to `out`; returns its full length. */
  private emit(code: number, out: Uint8Array, at: number): number {
    const len = this.length[code] as number;
    let i = at + len - 1;
    let c = code;
    while (c >= 0) {
      if (i < out.length) out[i] = this.suffix[c] as number;
      i--;
      c = this.prefix[c] as number;
    }
    return len;
  }
}
