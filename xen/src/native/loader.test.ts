import { afterEach, describe, expect, it, vi } from 'vitest';

describe('native addon loader', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('says clearly how to build the addon when it is not built', async () => {
    vi.stubEnv('MOAT_XEN_ADDON', '/nonexistent/moat_xen.node');
    vi.resetModules();
    const { openNativeDomain } = await import('./domain.ts');
    const { XenError } = await import('../types.ts');
    let error: unknown;
    try {
      openNativeDomain();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(XenError);
    expect((error as InstanceType<typeof XenError>).operation).toBe('load native addon');
    expect((error as InstanceType<typeof XenError>).code).toBe('ENOENT');
    expect((error as Error).message).toContain('node-gyp rebuild');
  });

  it('does not load the addon when the package is imported', async () => {
    vi.stubEnv('MOAT_XEN_ADDON', '/nonexistent/moat_xen.node');
    vi.resetModules();
    const xen = await import('../index.ts');
    expect(typeof xen.openNativeDomain).toBe('function');
  });
});
