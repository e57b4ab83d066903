import { execFileSync } from 'node:child_process';
import sharp from 'sharp';
import { describe, expect, it, vi } from 'vitest';
import { DecodeBudget } from './budget.ts';
import { decodeImage } from './decode.ts';
import { corpusFiles, firstFrame, readCorpus } from './oracle.ts';
import { decodePng } from './png.ts';
import { resolveLimits, type ScaleDenominator } from './types.ts';

vi.setConfig({ testTimeout: 120_000 });

/** libjpeg-turbo's own scaled decode (Debian libjpeg-turbo-progs): PPM/PGM samples. */
function djpeg(
  bytes: Uint8Array,
  scale: ScaleDenominator,
): { width: number; height: number; channels: number; data: Uint8Array } {
  const out = execFileSync('djpeg', ['-scale', `1/${scale}`], {
    input: bytes,
    stdio: ['pipe', 'pipe', 'ignore'],
    maxBuffer: 1 << 28,
  });
  const header = /^(P[56])\s+(\d+)\s+(\d+)\s+255\s/.exec(out.toString('latin1', 0, 64));
  if (!header) throw new Error('djpeg wrote no PNM');
  return {
    channels: header[1] === 'P6' ? 3 : 1,
    width: Number(header[2]),
    height: Number(header[3]),
    data: new Uint8Array(out.buffer, out.byteOffset + header[0].length),
  };
}

async function generated(): Promise<[string, Uint8Array][]> {
  const photo = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg');
  const make = async (name: string, image: sharp.Sharp): Promise<[string, Uint8Array]> => [
    name,
    new Uint8Array(await image.toBuffer()),
  ];
  return [
    ['Landscape_1.jpg (4:2:0)', photo],
    await make('333×251 4:4:4', sharp(photo).resize(333, 251).jpeg({ chromaSubsampling: '4:4:4' })),
    await make('333×251 4:2:0', sharp(photo).resize(333, 251).jpeg({ chromaSubsampling: '4:2:0' })),
    await make('301×199 progressive', sharp(photo).resize(301, 199).jpeg({ progressive: true })),
    await make('97×55 grey', sharp(photo).resize(97, 55).greyscale().jpeg()),
  ];
}

describe('JPEG DCT scaling, as libjpeg-turbo (djpeg -scale 1/n)', () => {
  it('decodes at 1/1, 1/2, 1/4 and 1/8 to exactly the samples djpeg gives', async () => {
    const files = await generated();
    // djpeg refuses DNL files (height 0 in SOF); 12-bit files are not ours to decode.
    for (const folder of ['jpeg/jpegsuite/baseline', 'jpeg/jpegsuite/progressive_huffman'])
      for (const name of corpusFiles(folder, '.jpg'))
        if (!/_dnl|x12_/.test(name)) files.push([name, readCorpus(folder, name)]);
    expect(files.length).toBeGreaterThan(50);
    const failures: string[] = [];
    for (const [name, bytes] of files) {
      for (const scale of [1, 2, 4, 8] as const) {
        const want = djpeg(bytes, scale);
        const result = decodeImage(bytes, {}, { scale });
        if (!result.ok) {
          failures.push(`${name} 1/${scale}: refused: ${result.reason}`);
          continue;
        }
        const { image } = result;
        if (image.width !== want.width || image.height !== want.height) {
          failures.push(
            `${name} 1/${scale}: ${image.width}×${image.height}, djpeg ${want.width}×${want.height}`,
          );
          continue;
        }
        const got = firstFrame(image);
        let differ = 0;
        for (let i = 0; i < want.width * want.height; i++)
          for (let c = 0; c < want.channels; c++)
            if (got[i * 4 + c] !== want.data[i * want.channels + c]) differ++;
        if (differ > 0) failures.push(`${name} 1/${scale}: ${differ} samples differ`);
        if (scale > 1) expect(image.scaled).toMatchObject({ denominator: scale });
      }
    }
    expect(failures).toEqual([]);
  });

  it('picks the least reduction that fits a box', () => {
    const bytes = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg'); // 1800×1200
    const sizes = [
      [2000, 2000],
      [1000, 800],
      [450, 300],
      [100, 100],
    ].map(([width, height]) => {
      const result = decodeImage(bytes, {}, { fit: { width: width as number, height: height as number } });
      return result.ok ? [result.image.width, result.image.height] : result.reason;
    });
    expect(sizes).toEqual([
      [1800, 1200],
      [900, 600],
      [450, 300],
      [225, 150],
    ]);
  });
});

/** The mean of each scale×scale box (colours weighted by alpha), written out plainly. */
function boxReference(rgba: Uint8Array, width: number, height: number, scale: number): Uint8Array {
  const ow = Math.ceil(width / scale);
  const oh = Math.ceil(height / scale);
  const out = new Uint8Array(ow * oh * 4);
  for (let oy = 0; oy < oh; oy++)
    for (let ox = 0; ox < ow; ox++) {
      const sums = [0, 0, 0, 0];
      let count = 0;
      for (let y = oy * scale; y < Math.min(height, (oy + 1) * scale); y++)
        for (let x = ox * scale; x < Math.min(width, (ox + 1) * scale); x++) {
          const i = (y * width + x) * 4;
          const a = rgba[i + 3] as number;
          for (let c = 0; c < 3; c++) sums[c] = (sums[c] as number) + (rgba[i + c] as number) * a;
          sums[3] = (sums[3] as number) + a;
          count++;
        }
      const o = (oy * ow + ox) * 4;
      const alpha = sums[3] as number;
      if (alpha === 0) continue;
      for (let c = 0; c < 3; c++) out[o + c] = Math.round((sums[c] as number) / alpha);
      out[o + 3] = Math.round(alpha / count);
    }
  return out;
}

describe('PNG, GIF and BMP at a reduced size: rows into a box filter', () => {
  it('gives the box mean of the full decode, for every PNG colour type, depth and interlace', async () => {
    const photo = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg');
    const files: [string, Uint8Array][] = [
      ['RGB 301×203', new Uint8Array(await sharp(photo).resize(301, 203).png().toBuffer())],
      ['RGBA 157×99', new Uint8Array(await sharp(photo).resize(157, 99).ensureAlpha(0.6).png().toBuffer())],
      ['palette 99×77', new Uint8Array(await sharp(photo).resize(99, 77).png({ palette: true }).toBuffer())],
      [
        'Adam7 131×67',
        new Uint8Array(await sharp(photo).resize(131, 67).png({ progressive: true }).toBuffer()),
      ],
      [
        '16-bit 65×33',
        new Uint8Array(await sharp(photo).resize(65, 33).toColourspace('rgb16').png().toBuffer()),
      ],
      ['GIF 141×93', new Uint8Array(await sharp(photo).resize(141, 93).gif().toBuffer())],
    ];
    for (const name of corpusFiles('png/pngsuite', '.png').filter((n) => /^(basn|basi|tbr|tp)/.test(n)))
      files.push([name, readCorpus('png/pngsuite', name)]);
    for (const name of ['V5_24_Bit.bmp', 'Core_8_Bit.bmp'])
      files.push([name, readCorpus('bmp/image-rs', name)]);
    const failures: string[] = [];
    for (const [name, bytes] of files) {
      const full = decodeImage(bytes);
      if (!full.ok) throw new Error(`${name}: ${full.reason}`);
      const { width, height } = full.image;
      for (const scale of [2, 4, 8] as const) {
        const result = decodeImage(bytes, {}, { scale });
        if (!result.ok) {
          failures.push(`${name} 1/${scale}: ${result.reason}`);
          continue;
        }
        const want = boxReference(firstFrame(full.image), width, height, scale);
        if (!Buffer.from(firstFrame(result.image)).equals(Buffer.from(want)))
          failures.push(`${name} 1/${scale}: differs from the box mean`);
        expect([result.image.width, result.image.height]).toEqual([
          Math.ceil(width / scale),
          Math.ceil(height / scale),
        ]);
      }
    }
    expect(files.length).toBeGreaterThan(40);
    expect(failures).toEqual([]);
  });

  it('decodes a PNG row by row: memory is the reduced image and a few rows, not the image', async () => {
    const photo = readCorpus('jpeg/exif-orientation', 'Landscape_1.jpg');
    const bytes = new Uint8Array(
      await sharp(photo).resize(3000, 2000).png({ compressionLevel: 1 }).toBuffer(),
    );
    const full = new DecodeBudget(resolveLimits());
    decodePng(bytes, full);
    const reduced = new DecodeBudget(resolveLimits());
    const image = decodePng(bytes, reduced, { scale: 8 });
    expect([image.width, image.height]).toEqual([375, 250]);
    // Full: 18 MB of inflated rows and 24 MB of RGBA. Reduced: the compressed data joined
    // into one buffer (the file's size), 128 KiB of window, rows and 375×250 RGBA.
    expect(full.bytesAllocated).toBeGreaterThan(40_000_000);
    expect(reduced.bytesAllocated - bytes.length).toBeLessThan(1_000_000);
  });
});
