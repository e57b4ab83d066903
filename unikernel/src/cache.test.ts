import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedBuild, inputsKey } from './cache.ts';

describe('content-hashed build cache', () => {
  it('keys do not depend on property order but do on every value', () => {
    expect(inputsKey({ a: 1, b: [1, 2] })).toBe(inputsKey({ b: [1, 2], a: 1 }));
    expect(inputsKey({ a: 1, b: [1, 2] })).not.toBe(inputsKey({ a: 1, b: [2, 1] }));
  });

  it('builds once; a second request with the same key reuses the product', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cache-'));
    let builds = 0;
    const build = async (dir: string) => {
      builds++;
      writeFileSync(join(dir, 'out'), 'x');
    };
    const first = await cachedBuild(root, 'k', build);
    const second = await cachedBuild(root, 'k', build);
    expect([first.built, second.built, builds]).toEqual([true, false, 1]);
    expect(readFileSync(join(second.dir, 'out'), 'utf8')).toBe('x');
  });

  it('leaves nothing that looks finished when a build fails', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cache-'));
    await expect(
      cachedBuild(root, 'k', async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(existsSync(join(root, 'k'))).toBe(false);
  });
});
