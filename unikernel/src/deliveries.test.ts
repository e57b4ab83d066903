import { describe, expect, it } from 'vitest';
import { assertEpoch, derivedUuid, templateGrubConfig } from './deliveries.ts';

describe('template root image settings', () => {
  it('derives the same version-4 UUID from the same seed, another from another', () => {
    const uuid = derivedUuid('moat-firewall abc fs');
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(derivedUuid('moat-firewall abc fs')).toBe(uuid);
    expect(derivedUuid('moat-firewall abd fs')).not.toBe(uuid);
  });

  it('boots the kernel with the app disk on xvda from grub.cfg', () => {
    expect(templateGrubConfig('moat-viewer')).toBe(
      "set timeout=0\nmenuentry 'moat-viewer' {\n" +
        "  echo 'moat: loading /boot/vmlinuz'\n" +
        '  linux /boot/vmlinuz console=hvc0 moat.disk=/dev/xvda moat.fs=ext4\n' +
        "  echo 'moat: loading /boot/initramfs'\n" +
        '  initrd /boot/initramfs\n' +
        "  echo 'moat: starting the kernel'\n}\n",
    );
  });

  it('takes SOURCE_DATE_EPOCH as whole seconds and refuses anything else', () => {
    expect(assertEpoch(undefined, 7)).toBe(7);
    expect(assertEpoch('1767225600', 7)).toBe(1_767_225_600);
    expect(() => assertEpoch('yesterday', 7)).toThrow(
      /SOURCE_DATE_EPOCH: not a number of seconds: yesterday/,
    );
  });
});
