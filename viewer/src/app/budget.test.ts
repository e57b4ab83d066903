import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../decoders/decode.ts';
import { fixtures } from '../decoders/oracle.ts';
import { defaultDecodeLimits } from '../decoders/types.ts';
import { decodeBudget, RUNTIME_RESERVE_BYTES } from './budget.ts';
import { ImageViewer } from './viewer.ts';

const MiB = 1024 * 1024;
/** jpeg-js's 6000×6000 black JPEG: 400 KB of file, 144 MB of RGBA (a decompression bomb). */
const bomb = new Uint8Array(readFileSync(join(fixtures, 'jpeg/jpeg-js-fixtures/black-6000x6000.jpg')));

describe('decodeBudget', () => {
  it('gives 40% of what is left after the runtime and the window buffers to one decode', () => {
    const limits = decodeBudget(512 * MiB);
    const left = 512 * MiB - RUNTIME_RESERVE_BYTES - 1920 * 1080 * 4 * 6;
    expect(limits.maxTotalBytes).toBe(Math.floor(left * 0.4));
    expect(limits.maxPixels).toBe(defaultDecodeLimits.maxPixels);
    expect(limits.deadlineMs).toBe(defaultDecodeLimits.deadlineMs);
  });

  it('grows with memory up to the decoders’ default, and is 0 when nothing is left', () => {
    expect(decodeBudget(256 * MiB).maxTotalBytes).toBeLessThan(decodeBudget(512 * MiB).maxTotalBytes);
    expect(decodeBudget(8192 * MiB).maxTotalBytes).toBe(defaultDecodeLimits.maxTotalBytes);
    expect(decodeBudget(64 * MiB).maxTotalBytes).toBe(0);
  });

  it('counts a larger window and the file against the budget', () => {
    const small = decodeBudget(512 * MiB);
    expect(decodeBudget(512 * MiB, { windowPixels: 3840 * 2160 }).maxTotalBytes).toBeLessThan(
      small.maxTotalBytes,
    );
    const withFile = decodeBudget(512 * MiB, { fileBytes: 50 * MiB }).maxTotalBytes;
    expect(Math.abs(small.maxTotalBytes - withFile - 50 * MiB * 0.4)).toBeLessThanOrEqual(1);
  });

  it('rejects a memory size that is not a byte count', () => {
    expect(() => decodeBudget(Number.NaN)).toThrow(RangeError);
    expect(() => decodeBudget(-1)).toThrow(RangeError);
  });

  it('refuses the decompression bomb at full size in a 256 MiB VM, from its header', () => {
    const result = decodeImage(bomb, decodeBudget(256 * MiB));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.kind).toBe('limit');
    expect(result.reason).toMatch(/bytes/);
  });

  it('shows the bomb reduced in a VM where the reduced decode fits', () => {
    const viewer = new ImageViewer({ name: 'bomb.jpg', monitors: [], limits: decodeBudget(400 * MiB) });
    const request = viewer.open(bomb);
    expect(request.options.scale).toBe(4); // 972 of 6000 rows on a 1080-pixel monitor: 1/4, as sharp's shrink-on-load
    const update = viewer.decoded(decodeImage(bomb, request.limits, request.options), 0);
    expect(viewer.state).toBe('showing');
    expect(update.title).toBe('bomb.jpg - 6000x6000 - 16%');
  });

  it('says in the window that the bomb is too large when even the reduced decode does not fit', () => {
    const viewer = new ImageViewer({ name: 'bomb.jpg', monitors: [], limits: decodeBudget(160 * MiB) });
    let request = viewer.open(bomb);
    let update = viewer.decoded(decodeImage(bomb, request.limits, request.options), 0);
    for (let i = 0; update.decode && i < 3; i++) {
      request = update.decode;
      update = viewer.decoded(decodeImage(bomb, request.limits, request.options), 0);
    }
    expect(viewer.state).toBe('error');
    expect(update.title).toBe('bomb.jpg - cannot open');
    expect(update.redraw).toBe(true);
    expect(viewer.errorText).toMatch(/too large for this viewer's memory/);
  });
});
