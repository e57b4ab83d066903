import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32 } from './crc32.ts';

// node:zlib's CRC (test side only: decoders may not use native code) is the oracle.
const bytewise = (bytes: Uint8Array, start: number, end: number) => zlibCrc32(bytes.subarray(start, end));

describe('CRC-32 by slicing-by-8', () => {
  it('gives the check value of the standard', () => {
    const ascii = new TextEncoder().encode('123456789');
    expect(crc32(ascii, 0, ascii.length)).toBe(0xcbf43926);
  });

  it('agrees with the CRC of node:zlib on every start and length up to 40 bytes', () => {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => (i * 151 + 7) & 0xff);
    for (let start = 0; start < 16; start++)
      for (let end = start; end <= start + 40; end++)
        expect(crc32(bytes, start, end), `${start}..${end}`).toBe(bytewise(bytes, start, end));
  });
});
