import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { indexModules, readModinfo, resolveModules } from './kmod.ts';

/** A minimal ELF64 with a section name table and one `.modinfo` section. */
function fakeModule(modinfo: string): Uint8Array {
  const enc = new TextEncoder();
  const names = enc.encode('\0.shstrtab\0.modinfo\0');
  const info = enc.encode(modinfo);
  const dataAt = 64;
  const namesAt = dataAt;
  const infoAt = namesAt + names.length;
  const shoff = (infoAt + info.length + 7) & ~7;
  const buf = new Uint8Array(shoff + 3 * 64);
  const v = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setBigUint64(0x28, BigInt(shoff), true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, 3, true);
  v.setUint16(0x3e, 1, true);
  buf.set(names, namesAt);
  buf.set(info, infoAt);
  const section = (i: number, name: number, offset: number, size: number) => {
    v.setUint32(shoff + i * 64, name, true);
    v.setBigUint64(shoff + i * 64 + 0x18, BigInt(offset), true);
    v.setBigUint64(shoff + i * 64 + 0x20, BigInt(size), true);
  };
  section(1, 1, namesAt, names.length);
  section(2, 11, infoAt, info.length);
  return buf;
}

describe('kernel modules', () => {
  it('reads depends= from the .modinfo section', () => {
    const info = readModinfo(fakeModule('license=GPL\0depends=xen-privcmd,foo\0name=xenfs\0'));
    expect(info).toBeInstanceOf(Map);
    if (info instanceof Map) expect(info.get('depends')).toEqual(['xen-privcmd,foo']);
  });

  it('returns a reason for bytes that are not an ELF module', () => {
    expect(readModinfo(new Uint8Array(100))).toEqual({ reason: 'not ELF' });
    expect(readModinfo(new Uint8Array(10))).toEqual({ reason: 'too short for an ELF header' });
  });

  it('orders modules dependencies first, once each, treating - and _ alike', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmod-'));
    mkdirSync(join(dir, 'kernel', 'xen'), { recursive: true });
    writeFileSync(join(dir, 'kernel', 'xen', 'xenfs.ko'), fakeModule('depends=xen-privcmd\0'));
    writeFileSync(join(dir, 'kernel', 'xen', 'xen-privcmd.ko'), fakeModule('depends=\0'));
    writeFileSync(join(dir, 'kernel', 'xen', 'xen-evtchn.ko'), fakeModule('depends=\0'));
    const order = resolveModules(indexModules(dir), ['xenfs', 'xen_privcmd', 'xen-evtchn']);
    expect(order.map((p) => p.slice(p.lastIndexOf('/') + 1))).toEqual([
      'xen-privcmd.ko',
      'xenfs.ko',
      'xen-evtchn.ko',
    ]);
    expect(() => resolveModules(indexModules(dir), ['nope'])).toThrow(/module nope not found/);
  });
});
