import { crc32 } from '../crc32.ts';

/** One PNG chunk (length, type, data, CRC), for tests that build files byte by byte. */
export function pngChunk(type: string, data: Uint8Array | readonly number[]): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}
