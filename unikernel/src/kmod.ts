import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ImageBuildError } from './errors.ts';

/**
 * Kernel modules without depmod: a module's dependencies are in its ELF `.modinfo` section
 * (`depends=a,b`), so we read them there and order the modules ourselves. (Debian's kernel
 * packages ship no modules.dep; depmod writes it at install time, and we never install.)
 */

/** Module names treat '-' and '_' as the same character. */
export function moduleKey(name: string): string {
  return name.replaceAll('-', '_');
}

/** The NUL-separated `key=value` strings of a module's `.modinfo` section, or a reason. */
export function readModinfo(elf: Uint8Array): Map<string, string[]> | { reason: string } {
  if (elf.length < 64) return { reason: 'too short for an ELF header' };
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  if (view.getUint32(0, false) !== 0x7f454c46) return { reason: 'not ELF' };
  if (elf[4] !== 2 || elf[5] !== 1) return { reason: 'not ELF64 little-endian' };
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  const shstrndx = view.getUint16(0x3e, true);
  if (shentsize < 64 || shoff + shnum * shentsize > elf.length || shstrndx >= shnum) {
    return { reason: 'section headers out of bounds' };
  }
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: view.getUint32(at, true),
      offset: Number(view.getBigUint64(at + 0x18, true)),
      size: Number(view.getBigUint64(at + 0x20, true)),
    };
  };
  const strtab = section(shstrndx);
  if (strtab.offset + strtab.size > elf.length) return { reason: 'section name table out of bounds' };
  const decoder = new TextDecoder();
  const nameAt = (off: number) => {
    const start = strtab.offset + off;
    let end = start;
    while (end < strtab.offset + strtab.size && elf[end] !== 0) end++;
    return decoder.decode(elf.subarray(start, end));
  };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (nameAt(s.name) !== '.modinfo') continue;
    if (s.offset + s.size > elf.length) return { reason: '.modinfo out of bounds' };
    const info = new Map<string, string[]>();
    for (const entry of decoder.decode(elf.subarray(s.offset, s.offset + s.size)).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq <= 0) continue;
      const key = entry.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), entry.slice(eq + 1)]);
    }
    return info;
  }
  return { reason: 'no .modinfo section' };
}

/** Every `*.ko` under a kernel's module tree, by module key. */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ko')) index.set(moduleKey(entry.name.slice(0, -3)), path);
    }
  };
  walk(modulesDir);
  return index;
}

/**
 * The files to load, dependencies first, for the `wanted` modules (each at most once).
 * Throws naming the module that is missing or unreadable.
 */
export function resolveModules(index: Map<string, string>, wanted: readonly string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]) => {
    const key = moduleKey(name);
    if (seen.has(key)) return;
    if (chain.includes(key))
      throw new ImageBuildError('modules', `dependency cycle: ${[...chain, key].join(' -> ')}`);
    const path = index.get(key);
    if (!path)
      throw new ImageBuildError(
        'modules',
        `module ${name} not found (needed by ${chain.join(' -> ') || 'the image'})`,
      );
    const info = readModinfo(readFileSync(path));
    if ('reason' in info) throw new ImageBuildError('modules', `${path}: ${info.reason}`);
    for (const dep of (info.get('depends')?.[0] ?? '').split(',').filter(Boolean))
      visit(dep, [...chain, key]);
    seen.add(key);
    order.push(path);
  };
  for (const name of wanted) visit(name, []);
  return order;
}
