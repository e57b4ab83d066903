import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readJpegHeader } from '../decoders/jpeg.ts';
import { fixtures } from '../decoders/oracle.ts';
import { pngChunk } from '../decoders/testing/png-chunk.ts';
import { pngExifOrientation, readTiffOrientation } from './exif.ts';

/** A TIFF block with IFD0 holding `entries` (tag, type, count, value), in either byte order. */
function tiff(little: boolean, entries: [number, number, number, number][]): Uint8Array {
  const out = new Uint8Array(8 + 2 + entries.length * 12 + 4);
  const view = new DataView(out.buffer);
  out.set(little ? [0x49, 0x49] : [0x4d, 0x4d]);
  view.setUint16(2, 42, little);
  view.setUint32(4, 8, little);
  view.setUint16(8, entries.length, little);
  entries.forEach(([tag, type, count, value], i) => {
    const at = 10 + i * 12;
    view.setUint16(at, tag, little);
    view.setUint16(at + 2, type, little);
    view.setUint32(at + 4, count, little);
    view.setUint16(at + 8, value, little); // a SHORT sits left-justified in the value field
  });
  return out;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const IHDR = pngChunk('IHDR', [0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);

function png(...chunks: Uint8Array[]): Uint8Array {
  const parts = [Uint8Array.from(PNG_SIGNATURE), IHDR, ...chunks, pngChunk('IEND', [])];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('EXIF orientation in a TIFF block', () => {
  it('reads the orientation SHORT from IFD0, little- and big-endian', () => {
    // Bytes as an "II" camera writes them: 49 49 2A 00 08 00 00 00, one entry 12 01 03 00 01 00 00 00 06 00 00 00.
    const camera = Uint8Array.from([
      0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00,
      0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]);
    expect(readTiffOrientation(camera)).toEqual({ ok: true, orientation: 6 });
    expect(
      readTiffOrientation(
        tiff(false, [
          [0x0110, 2, 4, 0],
          [0x0112, 3, 1, 8],
        ]),
      ),
    ).toEqual({ ok: true, orientation: 8 });
  });

  it('gives a reason for blocks without a usable orientation', () => {
    expect(readTiffOrientation(new Uint8Array(4))).toEqual({
      ok: false,
      reason: 'shorter than a TIFF header',
    });
    expect(readTiffOrientation(Uint8Array.from([0x41, 0x41, 0x2a, 0, 8, 0, 0, 0]))).toMatchObject({
      ok: false,
    });
    expect(readTiffOrientation(tiff(true, [[0x0112, 3, 1, 9]]))).toEqual({
      ok: false,
      reason: 'orientation 9 is not 1-8',
    });
    expect(readTiffOrientation(tiff(true, [[0x0112, 3, 1, 0]]))).toMatchObject({ ok: false });
    expect(readTiffOrientation(tiff(true, [[0x0112, 4, 1, 6]]))).toEqual({
      ok: false,
      reason: 'orientation is not a SHORT',
    });
    expect(readTiffOrientation(tiff(true, [[0x010f, 2, 4, 0]]))).toEqual({
      ok: false,
      reason: 'no orientation tag',
    });
    const cut = tiff(true, [
      [0x010f, 2, 4, 0],
      [0x0112, 3, 1, 6],
    ]).subarray(0, 20);
    expect(readTiffOrientation(cut)).toEqual({ ok: false, reason: 'IFD0 is truncated' });
    const farIfd = tiff(true, [[0x0112, 3, 1, 6]]);
    new DataView(farIfd.buffer).setUint32(4, 0xfffffff0, true);
    expect(readTiffOrientation(farIfd)).toMatchObject({ ok: false });
  });

  it('agrees with the JPEG decoder on the EXIF orientation samples', () => {
    for (const n of [1, 3, 6, 8]) {
      const bytes = new Uint8Array(readFileSync(join(fixtures, `jpeg/exif-orientation/Landscape_${n}.jpg`)));
      // APP1 "Exif\0\0" + TIFF: find it and read the TIFF part here.
      let at = 2;
      let found: number | undefined;
      while (at + 4 < bytes.length && bytes[at] === 0xff) {
        const length = ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number);
        if (bytes[at + 1] === 0xe1 && bytes[at + 4] === 0x45) {
          const result = readTiffOrientation(bytes.subarray(at + 10, at + 2 + length));
          found = result.ok ? result.orientation : undefined;
          break;
        }
        at += 2 + length;
      }
      expect(found).toBe(n);
      expect(readJpegHeader(bytes).orientation).toBe(n);
    }
  });
});

describe('PNG eXIf', () => {
  it('reads the orientation of an eXIf chunk', () => {
    expect(pngExifOrientation(png(pngChunk('eXIf', tiff(false, [[0x0112, 3, 1, 6]]))))).toBe(6);
  });

  it('is 1 without eXIf, with a broken one, or with a chunk that runs past the end', () => {
    expect(pngExifOrientation(png())).toBe(1);
    expect(pngExifOrientation(png(pngChunk('eXIf', [1, 2, 3])))).toBe(1);
    const file = png(pngChunk('tEXt', [0x41, 0, 0x42]));
    new DataView(file.buffer).setUint32(33, 0x7fffffff); // the tEXt length
    expect(pngExifOrientation(file)).toBe(1);
  });

  it('ignores an eXIf after IEND', () => {
    const file = png();
    const after = pngChunk('eXIf', tiff(true, [[0x0112, 3, 1, 3]]));
    const joined = new Uint8Array(file.length + after.length);
    joined.set(file);
    joined.set(after, file.length);
    expect(pngExifOrientation(joined)).toBe(1);
  });
});
