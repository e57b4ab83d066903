/**
 * GIF decoder, written here: omggif and gifuct-js have no limits and leave the caller to
 * composite and bound memory (deanm/omggif `omggif.js` 1.0.10, matt-way/gifuct-js README
 * 2.1.2). Every image descriptor is checked against the limits before its index buffer is
 * allocated; each image becomes a layer of palette indices clipped to the logical screen,
 * which `FrameCompositor` draws with its disposal (so memory is the images' own size, one
 * byte per pixel, not frames × screen × 4).
 *
 * Frame model (as robert-ancell/pygif's test suite expects): an image ends a displayed
 * frame when its Graphic Control Extension gives a delay > 0; images without a delay are
 * drawn into the next frame. When no image has a delay but the file carries a looping
 * extension (NETSCAPE2.0/ANIMEXTS1.0), every image is a frame, as renderers commonly do.
 * Damaged LZW data (invalid code, missing end code, data cut short) ends that image: what
 * was decoded is shown, the rest of the image leaves the canvas as it was.
 */
import { type DecodeBudget, refuse } from './budget.ts';
import type { DecodedImage, Frame, Layer } from './types.ts';

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
  minCodeSize: number;
  /**
   * The image's data sub-blocks, size bytes included, read in place by the LZW decoder
   * (no object per sub-block: a file can hold millions of one-byte sub-blocks).
   */
  data: Uint8Array;
}

const u16 = (b: Uint8Array, o: number) => (b[o] as number) | ((b[o + 1] as number) << 8);

export function decodeGif(bytes: Uint8Array, budget: DecodeBudget): DecodedImage {
  if (bytes.length < headerSize) refuse('truncated', 'GIF ends inside its header');
  let width = u16(bytes, 6);
  let height = u16(bytes, 8);
  // A 0×0 (or 0×n) logical screen is accepted: giflib does not check the screen size
  // (DGifGetScreenDesc, dgif_lib.c), and browsers grow the screen to the first image
  // (Chromium GIFImageReader::parse, "ones where the image size is erroneously set to
  // zero"), which is what we do below.
  const emptyScreen = width === 0 || height === 0;
  if (!emptyScreen) budget.checkSize(width, height, 'GIF screen');
  const flags = bytes[10] as number;
  let pos = headerSize;
  let globalColours: Uint8Array | undefined;
  if (flags & 0x80) {
    const size = 3 << ((flags & 7) + 1);
    globalColours = bytes.subarray(pos, Math.min(pos + size, bytes.length));
    pos += size;
  }

  // One pass: each image is decoded into its own layer (palette indices, clipped to the
  // screen) as soon as its descriptor is read, and counted against the frame limit then,
  // so a file of a million tiny images is refused after the first `maxFrames`, with the
  // same answer in a worker as in the calling thread.
  const layers: Layer[] = [];
  const delays: number[] = [];
  const palettes = new PaletteCache(budget);
  const lzw = new LzwTables();
  let indices = new Uint8Array(0);
  let loopPlays = 1;
  let sawLoopExtension = false;
  const sawBlock = pos < bytes.length;
  let control: Control = { disposal: 0, delayCs: 0, transparent: -1 };
  while (pos < bytes.length) {
    budget.tick();
    const introducer = bytes[pos++] as number;
    if (introducer === trailer) break;
    if (introducer === extensionIntroducer) {
      const label = bytes[pos++];
      const first = subBlockAt(bytes, pos);
      const second = first ? subBlockAt(bytes, pos + 1 + first.length) : undefined;
      pos = subBlocksEnd(bytes, pos);
      if (label === graphicControlLabel && first && first.length >= 4) {
        const packed = first[0] as number;
        control = {
          disposal: (packed >> 2) & 7,
          delayCs: u16(first, 1),
          transparent: packed & 1 ? (first[3] as number) : -1,
        };
      } else if (label === applicationLabel && first && first.length === 11) {
        const id = String.fromCharCode(...first);
        const sub = second;
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
      if (layers.length === 0)
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
    const dataStart = pos;
    pos = subBlocksEnd(bytes, pos);
    budget.checkFrames(layers.length + 1);
    if (w > 0 && h > 0) budget.checkSize(w, h, 'GIF frame');
    if (layers.length === 0 && emptyScreen) {
      width = Math.max(width, left + w);
      height = Math.max(height, top + h);
      if (width === 0 || height === 0) refuse('corrupt', `GIF screen and first image are ${width}×${height}`);
      budget.checkSize(width, height, 'GIF screen');
    }
    const image: ImageBlock = {
      left,
      top,
      width: w,
      height: h,
      interlaced: (packed & 0x40) !== 0,
      minCodeSize,
      data: bytes.subarray(dataStart, pos),
    };
    const count = w * h;
    if (indices.length < count) {
      budget.allocate(count - indices.length, 'GIF image indices');
      indices = new Uint8Array(count);
    }
    const decoded = count > 0 ? lzw.decode(image, indices.subarray(0, count), budget) : 0;
    const palette = palettes.get(colours ?? globalColours, control.transparent);
    layers.push(layerOf(image, control, indices, decoded, palette, width, height, budget));
    delays.push(control.delayCs * 10);
    control = { disposal: 0, delayCs: 0, transparent: -1 };
  }
  if (layers.length === 0) {
    // A file that ends with its header (and colour table) has no image at all: an error,
    // not a blank picture. One whose blocks hold no drawable image (a trailer alone, an
    // image cut inside its descriptor) shows the transparent screen, as pygif's suite
    // expects (no-data, image-zero-size).
    if (!sawBlock) refuse('truncated', 'GIF ends after its header, before any image');
    if (width === 0 || height === 0) refuse('corrupt', `GIF screen is ${width}×${height} and holds no image`);
    layers.push(emptyLayer());
    delays.push(0);
  }

  // Frame model: an image with a delay ends a displayed frame; with no delay anywhere but a
  // looping extension, every image does.
  const noDelays = !delays.some((d) => d > 0);
  const frames: Frame[] = [];
  let current: Layer[] = [];
  for (const [i, layer] of layers.entries()) {
    current.push(layer);
    const delayMs = delays[i] as number;
    if (i === layers.length - 1 || delayMs > 0 || (noDelays && sawLoopExtension)) {
      frames.push({ layers: current, delayMs });
      current = [];
    }
  }
  // The canvas the compositor draws the layers on.
  budget.allocate(width * height * 4, 'GIF canvas');
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

/** A fresh one each time: a worker transfers layer buffers, which detaches them. */
const emptyLayer = (): Layer => ({
  x: 0,
  y: 0,
  width: 0,
  height: 0,
  pixels: new Uint8Array(0),
  blend: 'over',
  dispose: 'none',
});

/**
 * RGBA palettes (256 entries: the colour table, then opaque black for indices past it, as
 * browsers show them; the transparent index with alpha 0), one per distinct table and
 * transparent index.
 */
class PaletteCache {
  private readonly cache = new Map<Uint8Array | undefined, Map<number, Uint8Array>>();
  constructor(private readonly budget: DecodeBudget) {}

  get(colours: Uint8Array | undefined, transparent: number): Uint8Array {
    let byIndex = this.cache.get(colours);
    if (!byIndex) {
      byIndex = new Map();
      this.cache.set(colours, byIndex);
    }
    const found = byIndex.get(transparent);
    if (found) return found;
    const palette = this.budget.bytes(256 * 4, 'GIF palette');
    const entries = colours ? Math.min(256, Math.floor(colours.length / 3)) : 0;
    for (let i = 0; i < 256; i++) {
      if (i < entries && colours) {
        palette[i * 4] = colours[i * 3] as number;
        palette[i * 4 + 1] = colours[i * 3 + 1] as number;
        palette[i * 4 + 2] = colours[i * 3 + 2] as number;
      }
      palette[i * 4 + 3] = i === transparent ? 0 : 255;
    }
    byIndex.set(transparent, palette);
    return palette;
  }
}

/**
 * The layer of one image: its rows de-interlaced and clipped to the screen. Damaged LZW data
 * that ended the image early gives an RGBA layer whose undecoded pixels are transparent
 * (the canvas shows through, as before the image), since every index may be a colour.
 */
function layerOf(
  image: ImageBlock,
  control: Control,
  indices: Uint8Array,
  decoded: number,
  palette: Uint8Array,
  screenWidth: number,
  screenHeight: number,
  budget: DecodeBudget,
): Layer {
  const x = Math.min(image.left, screenWidth);
  const y = Math.min(image.top, screenHeight);
  const w = Math.max(0, Math.min(image.left + image.width, screenWidth) - x);
  const h = Math.max(0, Math.min(image.top + image.height, screenHeight) - y);
  const complete = decoded >= image.width * image.height;
  const pixels = budget.bytes(w * h * (complete ? 1 : 4), 'GIF layer');
  const rows = image.width > 0 ? Math.ceil(decoded / image.width) : 0;
  for (let r = 0; r < rows; r++) {
    const row = (image.interlaced ? interlacedRow(r, image.height) : r) + image.top - y;
    if (row >= h) continue;
    const from = r * image.width;
    const n = Math.min(w, decoded - from);
    if (complete) {
      pixels.set(indices.subarray(from, from + n), row * w);
      continue;
    }
    for (let i = 0; i < n; i++)
      pixels.set(
        palette.subarray((indices[from + i] as number) * 4, (indices[from + i] as number) * 4 + 4),
        (row * w + i) * 4,
      );
  }
  const dispose =
    control.disposal === Disposal.background
      ? 'background'
      : control.disposal === Disposal.previous
        ? 'previous'
        : 'none';
  // Background is shown as transparent, as browsers do (the background colour index is
  // ignored).
  return {
    x,
    y,
    width: w,
    height: h,
    pixels,
    ...(complete ? { palette } : {}),
    blend: 'over',
    dispose,
  };
}

/** Where the data sub-blocks starting at `pos` end (after their terminator, or the file's end). */
function subBlocksEnd(bytes: Uint8Array, pos: number): number {
  while (pos < bytes.length) {
    const size = bytes[pos++] as number;
    if (size === 0) return pos;
    pos += size;
  }
  return bytes.length;
}

/** The payload of the sub-block at `pos` (cut at the file's end); none for a terminator. */
function subBlockAt(bytes: Uint8Array, pos: number): Uint8Array | undefined {
  const size = bytes[pos] ?? 0;
  return size === 0 ? undefined : bytes.subarray(pos + 1, Math.min(pos + 1 + size, bytes.length));
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
    const data = image.data;
    let at = 0; // next byte of `data`
    let left = 0; // bytes left in the current sub-block
    let steps = 0;
    for (;;) {
      while (bitCount < size) {
        if (left === 0) {
          // The next sub-block's size byte; 0 (the terminator) or the end of the data ends it.
          const blockSize = data[at++] ?? 0;
          if (blockSize === 0) return produced;
          left = Math.min(blockSize, data.length - at);
          if (left === 0) return produced;
          continue;
        }
        bits |= (data[at++] as number) << bitCount;
        left--;
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
