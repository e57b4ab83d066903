import { execFileSync } from 'node:child_process';
import sharp from 'sharp';
import { describe, expect, it, vi } from 'vitest';
import { decodeImage } from './decode.ts';
import { corpusFiles, firstFrame, readCorpus } from './oracle.ts';
import type { ScaleDenominator } from './types.ts';

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
    for (const folder of ['jpeg/jpegsuite/baseline', 'jpeg/jpegsuite/progressive_huffman'])
      // djpeg refuses DNL files (height 0 in SOF); 12-bit files are not ours to decode.
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
