import type { ImageFormat } from './types.ts';

/**
 * Identifies the format from the first bytes (magic numbers), never from a file name or
 * MIME type that the sender chose.
 */
export function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  const b = (i: number) => bytes[i] ?? -1;
  if (b(0) === 0x89 && b(1) === 0x50 && b(2) === 0x4e && b(3) === 0x47) return 'png';
  if (b(0) === 0xff && b(1) === 0xd8 && b(2) === 0xff) return 'jpeg';
  // "GIF87a" / "GIF89a"
  if (
    b(0) === 0x47 &&
    b(1) === 0x49 &&
    b(2) === 0x46 &&
    b(3) === 0x38 &&
    (b(4) === 0x37 || b(4) === 0x39) &&
    b(5) === 0x61
  )
    return 'gif';
  // "BM" (Windows) and the OS/2 single-image signatures that share the file header.
  if (b(0) === 0x42 && b(1) === 0x4d) return 'bmp';
  // "RIFF" size "WEBP"
  if (
    b(0) === 0x52 &&
    b(1) === 0x49 &&
    b(2) === 0x46 &&
    b(3) === 0x46 &&
    b(8) === 0x57 &&
    b(9) === 0x45 &&
    b(10) === 0x42 &&
    b(11) === 0x50
  )
    return 'webp';
  return undefined;
}

/** A short description of what the bytes look like, for refusals of unknown formats. */
export function describeUnknown(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'the file is empty';
  const b = (i: number) => bytes[i] ?? -1;
  const ascii = (s: string, at = 0) => [...s].every((c, i) => b(at + i) === c.charCodeAt(0));
  if ((b(0) === 0x49 && b(1) === 0x49) || (b(0) === 0x4d && b(1) === 0x4d))
    return 'TIFF images are not supported';
  if (ascii('ftyp', 4)) return 'HEIF/AVIF images are not supported';
  if (b(0) === 0 && b(1) === 0 && b(2) === 1 && b(3) === 0) return 'ICO images are not supported';
  const head = [...bytes.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  return `not a PNG, JPEG, GIF, BMP or WebP image (starts with ${head})`;
}
