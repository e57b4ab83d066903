import { describe, expect, it } from 'vitest';
import { cpusFromEnv, qemuArgs, tcgThreadFromEnv } from './qemu.ts';

const options = {
  dom0: {
    key: 'k',
    xen: '/c/xen',
    kernel: '/c/vmlinuz',
    initramfs: '/c/dom0.cpio.gz',
    nodeDisk: '/c/node.sq',
    built: false,
  },
  shareDir: '/r/share',
  controlSocket: '/r/control.sock',
  memoryMb: 2048,
  dom0MemoryMb: 1024,
  cpus: 2,
};

describe('QEMU command line', () => {
  it('has no network device and no default devices, and uses TCG with nested paging for PVH', () => {
    const args = qemuArgs(options);
    expect(args.join(' ')).toContain('-nic none');
    expect(args).toContain('-nodefaults');
    expect(args.join(' ')).toContain('-accel tcg,thread=multi -cpu qemu64,+svm,+npt');
    expect(args.some((a) => /netdev|virtio-net|e1000/.test(a))).toBe(false);
  });

  it('runs TCG single-threaded when asked (the A/B switch for emulation races)', () => {
    expect(qemuArgs({ ...options, tcgThread: 'single' }).join(' ')).toContain('-accel tcg,thread=single ');
    expect(tcgThreadFromEnv(undefined)).toBeUndefined();
    expect(tcgThreadFromEnv('single')).toBe('single');
    expect(() => tcgThreadFromEnv('one')).toThrow(/MOAT_LAB_TCG_THREAD must be multi or single/);
  });

  it('reads the CPU count switch and refuses a bad one with the reason', () => {
    expect(cpusFromEnv(undefined)).toBeUndefined();
    expect(cpusFromEnv('1')).toBe(1);
    expect(qemuArgs({ ...options, cpus: 1 }).join(' ')).toContain('-smp 1');
    expect(() => cpusFromEnv('two')).toThrow(/MOAT_LAB_CPUS must be a whole number from 1 to 8/);
    expect(() => cpusFromEnv('0')).toThrow(/MOAT_LAB_CPUS/);
  });

  it('refuses paths with commas (they would split -initrd)', () => {
    expect(() => qemuArgs({ ...options, dom0: { ...options.dom0, kernel: '/a,b' } })).toThrow(/comma/);
  });
});
