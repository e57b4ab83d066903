import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** sys-moat's node environment (init reads it from /app/env): NAME=value lines, # comments. */
const env = new Map(
  readFileSync(new URL('./node.env', import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
);

describe("sys-moat's node environment (node.env)", () => {
  it('holds only NAME=value lines', () => {
    for (const [name] of env) expect(name).toMatch(/^[A-Z][A-Z0-9_]*$/);
  });

  it('gives V8 flags this node knows (setFlagsFromString would ignore a misspelt one)', () => {
    const flags = env.get('MOAT_V8_FLAGS')?.split(' ') ?? [];
    expect(flags.length).toBeGreaterThan(0);
    for (const flag of flags) {
      const r = spawnSync(process.execPath, [flag, '-e', '0'], { encoding: 'utf8' });
      expect({ flag, status: r.status, stderr: r.stderr }).toEqual({ flag, status: 0, stderr: '' });
    }
    // and a misspelt one is refused, so the check above means something
    const bad = spawnSync(process.execPath, ['--interrupt-budgetx=1', '-e', '0'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });
});
