import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatPermission, parsePermission, parsePermissions, perms } from './perms.ts';

describe('xenstore permission strings', () => {
  it('parses the four letters as xs_strings_to_perms does', () => {
    expect(perms('n0', 'r5', 'w3', 'b2')).toEqual([
      { domid: 0, access: 'none' },
      { domid: 5, access: 'read' },
      { domid: 3, access: 'write' },
      { domid: 2, access: 'both' },
    ]);
  });

  it('formats back to the same strings', () => {
    for (const s of ['n0', 'r5', 'w3', 'b2', 'b65535']) {
      const p = parsePermission(s);
      expect(p.ok && formatPermission(p.value)).toBe(s);
    }
  });

  it('rejects malformed entries from an untrusted reply with a reason', () => {
    for (const bad of ['', 'x1', 'r', 'r-1', 'r 1', 'r1a', 'r65536', 'r0x10', 'R1']) {
      const p = parsePermission(bad);
      expect(p.ok, bad).toBe(false);
    }
    expect(parsePermissions([])).toMatchObject({ ok: false });
    expect(() => formatPermission({ domid: 70000, access: 'read' })).toThrow(RangeError);
    expect(() => formatPermission({ domid: 1.5, access: 'read' })).toThrow(RangeError);
  });

  it('round-trips every domain id and access', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.constantFrom('none', 'read', 'write', 'both' as const),
        (domid, access) => {
          const p = parsePermission(formatPermission({ domid, access }));
          expect(p).toEqual({ ok: true, value: { domid, access } });
        },
      ),
    );
  });
});
