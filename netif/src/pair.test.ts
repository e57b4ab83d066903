import { describe, expect, it } from 'vitest';
import type { FrameMeta } from './device.ts';
import { simNetifPair } from './sim/index.ts';

function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 31 + seed) & 0xff;
  return f;
}

type Got = { data: Uint8Array; meta: FrameMeta };
function collect(device: {
  onFrame(l: (b: Uint8Array, o: number, n: number, m: FrameMeta) => void): () => void;
}) {
  const got: Got[] = [];
  device.onFrame((b, o, n, m) => got.push({ data: b.slice(o, o + n), meta: { ...m } }));
  return got;
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('netfront <-> netback on sim', () => {
  it('connects and carries frames both ways', async () => {
    const pair = await simNetifPair();
    expect(pair.front.state).toBe('connected');
    expect(pair.back.state).toBe('connected');
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    expect(pair.front.send(frame(60, 1))).toBe(true);
    expect(pair.back.send(frame(1514, 2))).toBe(true);
    await until(() => atBack.length === 1 && atFront.length === 1, 'both frames');
    expect(atBack[0]!.data).toEqual(frame(60, 1));
    expect(atFront[0]!.data).toEqual(frame(1514, 2));
    await pair.close();
  });
});
