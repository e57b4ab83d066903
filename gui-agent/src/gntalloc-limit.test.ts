import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { raiseGntallocLimit } from './gntalloc-limit.ts';

describe('raising gntalloc’s page limit', () => {
  it('raises a lower limit and leaves a higher one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gntalloc-'));
    const path = join(dir, 'limit');
    writeFileSync(path, '1024\n');
    expect(raiseGntallocLimit(4096, path)).toBe(4096);
    expect(readFileSync(path, 'latin1')).toBe('4096\n');
    expect(raiseGntallocLimit(2000, path)).toBe(4096);
    expect(() => raiseGntallocLimit(0, path)).toThrow(RangeError);
    rmSync(dir, { recursive: true });
  });
});
