/** For this package's tests: frames, collectors and waits. */
import type { FrameMeta, NetDevice } from './device.ts';

export function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return f;
}

export interface Received {
  data: Uint8Array;
  meta: FrameMeta;
}

/** Every frame `device` receives, copied. */
export function collect(device: Pick<NetDevice, 'onFrame'>): Received[] {
  const got: Received[] = [];
  device.onFrame((b, o, n, m) => got.push({ data: b.slice(o, o + n), meta: { ...m } }));
  return got;
}

export async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Lets every pending event, microtask and xenstore reply run. */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

export function lines(): { log: (line: string) => void; lines: string[] } {
  const out: string[] = [];
  return { log: (l) => out.push(l), lines: out };
}
