import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { openedAtMemory } from './memory-table.ts';

describe('openedAtMemory (bench viewer: which files a VM of some memory opens)', () => {
  it('opens a large JPEG in 256 MiB and refuses it, with the reason, in 128', async () => {
    const jpeg = new Uint8Array(
      await sharp({ create: { width: 4000, height: 2500, channels: 3, background: '#486' } })
        .jpeg()
        .toBuffer(),
    );
    const at256 = openedAtMemory('big.jpg', jpeg, 256);
    expect(at256).toMatchObject({ opened: true, title: 'big.jpg - 4000x2500 - 39%' });
    expect(at256.scale).toBeDefined();
    const at128 = openedAtMemory('big.jpg', jpeg, 128);
    expect(at128).toMatchObject({ opened: false, title: 'big.jpg - cannot open', scale: undefined });
    expect(at128.reason).toMatch(/too large for this viewer's memory/);
  });
});
