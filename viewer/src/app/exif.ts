/**
 * EXIF orientation, wire side: the TIFF structure an EXIF block is (TIFF 6.0 §2: byte order
 * "II"/"MM", 42, offset of IFD0; IFD entries of 12 bytes: tag, type, count, value) and the PNG
 * eXIf chunk that carries one (PNG 3rd edition §11.3.3.8, "eXIf": the TIFF header and IFDs with
 * no "Exif\0\0" prefix). JPEG (APP1) and WebP (EXIF chunk) orientations are read by their
 * decoders; PNG's decoder leaves orientation at 1, so the viewer reads eXIf here, as libvips
 * (sharp's `autoOrient`) does.
 */

export const TIFF_LITTLE_ENDIAN = 0x4949; // "II"
export const TIFF_BIG_ENDIAN = 0x4d4d; // "MM"
export const TIFF_MAGIC = 42;
export const TIFF_HEADER_SIZE = 8;
export const IFD_ENTRY_SIZE = 12;
export const TAG_ORIENTATION = 0x0112;
export const TYPE_SHORT = 3;

/** Offsets in a TIFF header and an IFD entry. */
const field = {
  byteOrder: 0,
  magic: 2,
  ifd0Offset: 4,
  entryTag: 0,
  entryType: 2,
  entryCount: 4,
  entryValue: 8,
} as const;

/** The orientation (1-8) in a TIFF/EXIF block's IFD0, or a reason it has none. */
export type OrientationResult = { ok: true; orientation: number } | { ok: false; reason: string };

export function readTiffOrientation(tiff: Uint8Array): OrientationResult {
  if (tiff.length < TIFF_HEADER_SIZE) return { ok: false, reason: 'shorter than a TIFF header' };
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const order = view.getUint16(field.byteOrder, false);
  if (order !== TIFF_LITTLE_ENDIAN && order !== TIFF_BIG_ENDIAN)
    return { ok: false, reason: 'no byte order mark' };
  const little = order === TIFF_LITTLE_ENDIAN;
  if (view.getUint16(field.magic, little) !== TIFF_MAGIC)
    return { ok: false, reason: 'not TIFF (magic is not 42)' };
  const ifd = view.getUint32(field.ifd0Offset, little);
  if (ifd < TIFF_HEADER_SIZE || ifd + 2 > tiff.length)
    return { ok: false, reason: `IFD0 at ${ifd} is outside` };
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * IFD_ENTRY_SIZE;
    if (entry + IFD_ENTRY_SIZE > tiff.length) return { ok: false, reason: 'IFD0 is truncated' };
    if (view.getUint16(entry + field.entryTag, little) !== TAG_ORIENTATION) continue;
    if (view.getUint16(entry + field.entryType, little) !== TYPE_SHORT)
      return { ok: false, reason: 'orientation is not a SHORT' };
    const value = view.getUint16(entry + field.entryValue, little);
    if (value < 1 || value > 8) return { ok: false, reason: `orientation ${value} is not 1-8` };
    return { ok: true, orientation: value };
  }
  return { ok: false, reason: 'no orientation tag' };
}

const PNG_SIGNATURE_SIZE = 8;
const CHUNK_OVERHEAD = 12; // length, type, CRC
const EXIF_CHUNK = 0x65584966; // "eXIf"
const IEND_CHUNK = 0x49454e44; // "IEND"

/**
 * The orientation of a PNG's eXIf chunk, 1 when there is none or it is unusable. Walks chunk
 * headers only (no CRC check: a bad eXIf means orientation 1, as for a missing one); stops at
 * IEND or at the first chunk that runs past the end.
 */
export function pngExifOrientation(png: Uint8Array): number {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let pos = PNG_SIGNATURE_SIZE;
  while (pos + CHUNK_OVERHEAD <= png.length) {
    const length = view.getUint32(pos, false);
    const type = view.getUint32(pos + 4, false);
    if (length > png.length - pos - CHUNK_OVERHEAD) return 1;
    if (type === EXIF_CHUNK) {
      const result = readTiffOrientation(png.subarray(pos + 8, pos + 8 + length));
      return result.ok ? result.orientation : 1;
    }
    if (type === IEND_CHUNK) return 1;
    pos += CHUNK_OVERHEAD + length;
  }
  return 1;
}
