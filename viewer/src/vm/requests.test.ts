import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { openInVmStdin } from '../lab/dom0.ts';
import { parseRequestLine, readImageRgbaRequest } from './get-image-rgba.ts';
import { FILENAME_FIELD_SIZE, parseNameField, readOpenInVmRequest } from './open-in-vm.ts';
import { MAX_WINDOW_PIXELS, monitorsFor } from './session.ts';
import { deadlineFrom } from './viewer-vm.ts';

const MiB = 1024 * 1024;
const field = (text: string) => {
  const out = new Uint8Array(FILENAME_FIELD_SIZE);
  out.set(Buffer.from(text, 'latin1').subarray(0, FILENAME_FIELD_SIZE));
  return out;
};
/** A stream delivering `bytes` in chunks of `size` (qrexec delivers up to 64 KiB at a time). */
const chunked = (bytes: Uint8Array, size: number) =>
  Readable.from(
    Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) =>
      bytes.subarray(i * size, (i + 1) * size),
    ),
  );

describe('qubes.OpenInVM requests (vm-file-editor rules)', () => {
  it('strips view-only- and sanitises the name as vm-file-editor does', () => {
    expect(parseNameField(field('view-only-photo 1.jpg'))).toEqual({ name: 'photo_1.jpg', viewOnly: true });
    expect(parseNameField(field('a/b\u00e9$c+d@e.png'))).toEqual({ name: 'a_b__c+d@e.png', viewOnly: false });
    expect(parseNameField(field('..'))).toEqual({ name: 'unnamed', viewOnly: false });
    expect(parseNameField(field('view-only-'))).toEqual({ name: 'unnamed', viewOnly: true });
    expect(() => parseNameField(new Uint8Array(10))).toThrow(RangeError);
    // Byte 255 is NUL whatever the sender wrote.
    expect(parseNameField(new Uint8Array(256).fill(0x61)).name).toBe('a'.repeat(255));
  });

  it('reads the name field and the file across any chunking, as dom0 sends them', async () => {
    const file = Buffer.from('0123456789'.repeat(100));
    const stdin = openInVmStdin(`${'x'.repeat(300)}.gif`, file);
    // The over-long name kept its tail, the extension.
    for (const size of [1, 7, 256, 257, 65536]) {
      const r = await readOpenInVmRequest(chunked(stdin, size), MiB);
      expect(r.ok && Buffer.from(r.bytes).equals(file)).toBe(true);
      expect(r.file?.name.endsWith('x.gif')).toBe(true);
      expect(r.file?.name.length).toBe(255 - 'view-only-'.length);
    }
  });

  it('refuses a call that ends inside the name field, an empty file and a file beyond the limit', async () => {
    expect(await readOpenInVmRequest(chunked(new Uint8Array(100), 30), MiB)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('after 100 bytes'),
    });
    expect(
      await readOpenInVmRequest(chunked(openInVmStdin('a.png', new Uint8Array(0)), 9), MiB),
    ).toMatchObject({
      ok: false,
      reason: 'the file is empty',
    });
    const big = await readOpenInVmRequest(chunked(openInVmStdin('a.png', new Uint8Array(5000)), 999), 4096);
    expect(big).toMatchObject({
      ok: false,
      file: { name: 'a.png' },
      reason: expect.stringContaining('5000 bytes'),
    });
  });
});

describe('qubes.GetImageRGBA requests (qubesimgconverter)', () => {
  it('accepts `-` and `<type>:-`, refuses the rest', () => {
    expect(parseRequestLine('-')).toEqual({ ok: true });
    expect(parseRequestLine('png:-')).toEqual({ ok: true, format: 'png' });
    for (const bad of ['', 'xdgicon:-', 'png:/etc/passwd', '../x:-', 'a b:-'])
      expect(parseRequestLine(bad).ok).toBe(false);
  });

  it('splits the line from the file across any chunking; refuses long lines and big files', async () => {
    const stdin = Buffer.concat([Buffer.from('jpeg:-\n'), Buffer.from('FILE\nBYTES')]);
    for (const size of [1, 3, 7, 8, 100]) {
      const r = await readImageRgbaRequest(chunked(stdin, size), MiB);
      expect(r.ok && [r.format, Buffer.from(r.bytes).toString()]).toEqual(['jpeg', 'FILE\nBYTES']);
    }
    expect((await readImageRgbaRequest(chunked(Buffer.alloc(200, 0x41), 50), MiB)).ok).toBe(false);
    expect(await readImageRgbaRequest(chunked(Buffer.from('-\n'), 1), MiB)).toMatchObject({ ok: false });
    expect(
      await readImageRgbaRequest(chunked(Buffer.concat([Buffer.from('-\n'), Buffer.alloc(100)]), 7), 99),
    ).toMatchObject({
      ok: false,
      reason: expect.stringContaining('more than 99 bytes'),
    });
  });
});

describe('the decode deadline from QubesDB /vm-config/', () => {
  it('takes a whole number of ms from 1 s to 1 h, else 30 s', () => {
    expect(deadlineFrom('120000')).toBe(120_000);
    expect(deadlineFrom(undefined)).toBe(30_000);
    for (const bad of ['', '999', '3600001', '1e5', ' 5000', '-5000', '5000.5'])
      expect(deadlineFrom(bad)).toBe(30_000);
  });
});

describe('the window fits one share of 1024 pages', () => {
  it('scales a monitor whose 90% box would need more, keeps smaller ones', () => {
    const [big] = monitorsFor([], { w: 1920, h: 1080 });
    expect(Math.floor(big!.width * 0.9) * Math.floor(big!.height * 0.9)).toBeLessThanOrEqual(
      MAX_WINDOW_PIXELS,
    );
    expect(big!.width / big!.height).toBeCloseTo(1920 / 1080, 2);
    expect(monitorsFor([{ x: 5, y: 6, width: 640, height: 480 }], { w: 1, h: 1 })).toEqual([
      { x: 5, y: 6, width: 640, height: 480 },
    ]);
  });
});
