import { describe, expect, it } from 'vitest';
import { writeCpio } from './cpio.ts';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe('writeCpio', () => {
  it('writes newc headers the kernel unpacks: magic, name with NUL, 4-byte alignment, trailer', () => {
    const out = writeCpio([
      { kind: 'dir', path: 'etc' },
      { kind: 'file', path: '/etc/x', data: new TextEncoder().encode('hello'), mode: 0o600 },
    ]);
    const s = text(out);
    expect(s.startsWith('070701')).toBe(true);
    // entry 1: ino 1, mode 040755, nlink 2, name "etc\0" (namesize 4)
    expect(s.slice(6, 6 + 8 * 13)).toBe(
      [
        '00000001',
        '000041ed',
        '00000000',
        '00000000',
        '00000002',
        '00000000',
        '00000000',
        '00000000',
        '00000000',
        '00000000',
        '00000000',
        '00000004',
        '00000000',
      ].join(''),
    );
    expect(s.slice(110, 114)).toBe('etc\0');
    // 110 + 4 = 114, padded to 116: the second header starts there
    expect(s.slice(116, 122)).toBe('070701');
    expect(s.slice(116 + 6 + 8, 116 + 6 + 16)).toBe('00008180'); // regular file 0600
    expect(s).toContain('etc/x\0');
    expect(s).toContain('hello');
    expect(s).toContain('TRAILER!!!\0');
    expect(out.length % 4).toBe(0);
  });

  it('gives the same bytes for the same entries (reproducible)', () => {
    const entries = [
      { kind: 'symlink' as const, path: 'lib64/ld', target: '/lib/ld' },
      { kind: 'chardev' as const, path: 'dev/console', major: 5, minor: 1 },
    ];
    expect(writeCpio(entries)).toEqual(writeCpio(entries));
    const s = text(writeCpio(entries));
    expect(s).toContain('/lib/ld');
    // rdevmajor 5, rdevminor 1 on the console node
    expect(s).toContain('0000000500000001');
  });
});
