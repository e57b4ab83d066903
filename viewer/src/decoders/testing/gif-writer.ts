/**
 * A small GIF89a writer for tests: builds files whose every pixel is known (large
 * animations, hostile shapes) instead of committing them. LZW as in the GIF89a
 * specification, appendix F (variable-length codes up to 12 bits, a clear code when the
 * table is full).
 */

export interface GifImage {
  left: number;
  top: number;
  width: number;
  height: number;
  /** width × height palette indices. */
  indices: Uint8Array;
  delayCs?: number;
  /** 0–3 (GIF89a Graphic Control Extension). */
  disposal?: number;
  transparent?: number;
}

export interface GifFile {
  width: number;
  height: number;
  /** RGB triples; padded to a power of two of at least 2 entries. */
  palette: readonly number[];
  images: readonly GifImage[];
  /** NETSCAPE2.0 repetitions (0 = forever); no extension when undefined. */
  loop?: number;
}

export function writeGif(file: GifFile): Uint8Array {
  const out = new ByteList();
  const u16 = (v: number) => out.push(v & 0xff, (v >> 8) & 0xff);
  let bits = 1;
  while (1 << bits < file.palette.length / 3) bits++;
  out.push(...[...'GIF89a'].map((c) => c.charCodeAt(0)));
  u16(file.width);
  u16(file.height);
  out.push(0x80 | (bits - 1), 0, 0);
  for (let i = 0; i < 3 << bits; i++) out.push(file.palette[i] ?? 0);
  if (file.loop !== undefined) {
    out.push(0x21, 0xff, 11, ...[...'NETSCAPE2.0'].map((c) => c.charCodeAt(0)), 3, 1);
    u16(file.loop);
    out.push(0);
  }
  const minCodeSize = Math.max(2, bits);
  // Images that share their indices array are encoded once.
  const encoded = new Map<Uint8Array, number[]>();
  for (const image of file.images) {
    const transparent = image.transparent ?? -1;
    out.push(0x21, 0xf9, 4, ((image.disposal ?? 0) << 2) | (transparent >= 0 ? 1 : 0));
    u16(image.delayCs ?? 0);
    out.push(Math.max(transparent, 0), 0);
    out.push(0x2c);
    u16(image.left);
    u16(image.top);
    u16(image.width);
    u16(image.height);
    out.push(0, minCodeSize);
    const data = encoded.get(image.indices) ?? lzwEncode(image.indices, minCodeSize);
    encoded.set(image.indices, data);
    for (let i = 0; i < data.length; i += 255) {
      const n = Math.min(255, data.length - i);
      out.push(n);
      for (let j = 0; j < n; j++) out.push(data[i + j] as number);
    }
    out.push(0);
  }
  out.push(0x3b);
  return out.bytes();
}

/** A growable byte array (a plain number[] of a large file would cost 8 bytes a byte). */
class ByteList {
  private buffer = new Uint8Array(1 << 16);
  private length = 0;
  push(...values: number[]): void {
    if (this.length + values.length > this.buffer.length) {
      const bigger = new Uint8Array(Math.max(this.buffer.length * 2, this.length + values.length));
      bigger.set(this.buffer.subarray(0, this.length));
      this.buffer = bigger;
    }
    for (const v of values) this.buffer[this.length++] = v;
  }
  bytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function lzwEncode(indices: Uint8Array, minCodeSize: number): number[] {
  const clear = 1 << minCodeSize;
  const end = clear + 1;
  const out: number[] = [];
  let acc = 0;
  let accBits = 0;
  let size = minCodeSize + 1;
  const emit = (code: number) => {
    acc |= code << accBits;
    accBits += size;
    while (accBits >= 8) {
      out.push(acc & 0xff);
      acc >>>= 8;
      accBits -= 8;
    }
  };
  let table = new Map<number, number>();
  let next = end + 1;
  emit(clear);
  let prefix = -1;
  for (const index of indices) {
    if (prefix < 0) {
      prefix = index;
      continue;
    }
    const key = prefix * 256 + index;
    const found = table.get(key);
    if (found !== undefined) {
      prefix = found;
      continue;
    }
    emit(prefix);
    if (next < 4096) {
      table.set(key, next++);
      // The decoder widens its codes once the table reaches the next power of two.
      if (next > 1 << size && size < 12) size++;
    } else {
      emit(clear);
      table = new Map();
      next = end + 1;
      size = minCodeSize + 1;
    }
    prefix = index;
  }
  if (prefix >= 0) emit(prefix);
  emit(end);
  if (accBits > 0) out.push(acc & 0xff);
  return out;
}
