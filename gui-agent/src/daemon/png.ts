/**
 * A PNG writer for the lab daemon's window images (8-bit RGB, no filter, zlib from node:zlib).
 * Host/dom0 side only; the VM never writes PNG.
 */
import { crc32, deflateSync } from 'node:zlib';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  const typeBytes = new TextEncoder().encode(type);
  out.set(typeBytes, 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** PNG of a BGRX image (the daemon's pixel layout), `stride` bytes per row. */
export function encodePngFromBgrx(
  bgrx: Uint8Array,
  width: number,
  height: number,
  stride = width * 4,
): Uint8Array {
  const raw = new Uint8Array((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    let o = y * (width * 3 + 1) + 1; // filter byte 0
    let s = y * stride;
    for (let x = 0; x < width; x++, s += 4) {
      raw[o++] = bgrx[s + 2]!;
      raw[o++] = bgrx[s + 1]!;
      raw[o++] = bgrx[s]!;
    }
  }
  const header = new Uint8Array(13);
  const v = new DataView(header.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, no filter method, no interlace
  const parts = [
    Uint8Array.from(SIGNATURE),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
