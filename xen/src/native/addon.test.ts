import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Errno } from '../errno.ts';
import { thrownXenError } from '../test-support.ts';
import { loadNativeAddon, nativeAddonPath } from './addon.ts';
import { NativeReadOnly, NativeWritable, openNativeDomain, openXenbusDevice, ownDomainId } from './domain.ts';
import { SharedIndex } from './shared-index.ts';

// Runs wherever the addon is built; the `addon` phase of ./moat test builds it and sets
// MOAT_REQUIRE_ADDON so that a missing build fails here instead of skipping.
const built = existsSync(nativeAddonPath());
const required = process.env.MOAT_REQUIRE_ADDON === '1';
const onXen = existsSync('/dev/xen/evtchn');

describe.runIf(built || required)('native addon', () => {
  it('loads and passes its XenError class to the addon', () => {
    const a = loadNativeAddon();
    expect(typeof a.grantCopy).toBe('function');
    const e = thrownXenError(() => a.newTestBuffer(0));
    expect(e.operation).toBe('test buffer');
    expect(e.code).toBe('EINVAL');
  });

  describe.runIf(!onXen)('on a host without Xen', () => {
    it('openNativeDomain throws XenError naming /dev/xen/evtchn and ENOENT', () => {
      const e = thrownXenError(() => openNativeDomain({ domid: 0 }));
      expect(e.operation).toBe('open /dev/xen/evtchn');
      expect(e.errno).toBe(Errno.ENOENT);
      expect(e.code).toBe('ENOENT');
      expect(e.message).toContain('open /dev/xen/evtchn failed: ENOENT');
    });

    it('every device entry point throws a XenError with the operation and errno', () => {
      const a = loadNativeAddon();
      const cases: [() => unknown, string][] = [
        [() => new a.Evtchn(), 'open /dev/xen/evtchn'],
        [() => a.mapGrants(0, [8], true), 'open /dev/xen/gntdev'],
        [() => a.mapGrants(0, [8], false), 'open /dev/xen/gntdev'],
        [() => a.shareGrants(0, 1, true), 'open /dev/xen/gntalloc'],
        [
          () =>
            a.grantCopy([
              {
                toGrant: true,
                domain: 0,
                ref: 8,
                offset: 0,
                length: 4,
                buffer: new Uint8Array(4),
                bufferOffset: 0,
              },
            ]),
          'open /dev/xen/gntdev',
        ],
        [() => a.serverInit(0, 'data/vchan/0/1', 4096, 4096), 'libxenvchan_server_init'],
        [() => a.clientInit(0, 'data/vchan/0/1'), 'libxenvchan_client_init'],
        [() => openXenbusDevice(), 'open /dev/xen/xenbus'],
        [() => ownDomainId(), 'xs_open'],
      ];
      for (const [f, operation] of cases) {
        const e = thrownXenError(f);
        expect(e.operation).toBe(operation);
        expect(e.errno).toBeGreaterThan(0);
        expect(e.code).toMatch(/^E[A-Z0-9]+$/);
      }
    });
  });

  it('rejects bad arguments with a TypeError, not a crash', () => {
    const a = loadNativeAddon();
    expect(() => a.mapGrants(0, ['x' as unknown as number], true)).toThrow(RangeError);
    expect(() => a.grantCopy([{} as never])).toThrow();
    const m = a.newTestBuffer(4096);
    expect(() => m.copyTo(new Int8Array(4) as unknown as Uint8Array, 0, 0, 4)).toThrow(TypeError);
    m.unmap();
  });

  it('detaches the external ArrayBuffer on unmap and throws on use after unmap', () => {
    const m = loadNativeAddon().newTestBuffer(8192);
    const w = new NativeWritable(m, [], 'test buffer');
    const bytes = new Uint8Array(w.buffer);
    bytes[100] = 7;
    w.storeRelease32(8, 0xffffffff);
    expect(w.loadAcquire32(8)).toBe(0xffffffff);
    expect(m.readU8(100)).toBe(7);
    w.unmap();
    expect(w.mapped).toBe(false);
    expect(w.buffer.byteLength).toBe(0);
    expect(bytes.length).toBe(0); // views over it are detached too: no dangling pointer
    expect(thrownXenError(() => w.loadAcquire32(8)).code).toBe('EBADF');
    expect(thrownXenError(() => m.readU8(0)).code).toBe('EBADF');
    w.unmap(); // idempotent
  });

  it('gives a read-only mapping no ArrayBuffer, only the read-only view', () => {
    const a = loadNativeAddon();
    const rw = a.newTestBuffer(4096);
    const ro = a.newTestBuffer(4096, false);
    expect(thrownXenError(() => ro.buffer).code).toBe('EACCES');
    expect(thrownXenError(() => ro.store32(0, 1)).code).toBe('EACCES');
    const mapping = new NativeReadOnly(ro);
    const view = mapping.pages as unknown as Record<string, unknown>;
    expect(view.buffer).toBeUndefined();
    expect(view.setUint8).toBeUndefined();
    expect(mapping.pages.getUint32(0)).toBe(0);
    expect(thrownXenError(() => mapping.pages.getUint8(4096)).code).toBe('ERANGE');
    mapping.unmap();
    expect(thrownXenError(() => mapping.pages.getUint8(0)).code).toBe('EBADF');
    rw.unmap();
  });

  it('sees Atomics stores through addon loads and addon stores through Atomics loads', () => {
    const m = loadNativeAddon().newTestBuffer(4096);
    const index = new SharedIndex(m.buffer, 'test');
    for (const v of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) {
      index.store(40, v);
      expect(m.load32(40)).toBe(v);
      m.store32(44, v);
      expect(index.load(44)).toBe(v);
    }
    expect(thrownXenError(() => index.load(2)).code).toBe('EINVAL');
    expect(thrownXenError(() => index.load(4096)).code).toBe('ERANGE');
    m.unmap();
  });

  it('drives a device fd with uv_poll without blocking: the xenbus device over a FIFO', async () => {
    // A FIFO opened read-write stands in for /dev/xen/xenbus: what we write comes back
    // readable, so the poll, the non-blocking reads and close are exercised on any host.
    const dir = mkdtempSync(join(tmpdir(), 'moat-xenbus-'));
    const fifo = join(dir, 'xenbus');
    execFileSync('mkfifo', [fifo]);
    try {
      const dev = openXenbusDevice(fifo);
      const chunks: Uint8Array[] = [];
      const errors: Error[] = [];
      const got = new Promise<void>((resolve) => {
        dev.onData((chunk) => {
          chunks.push(chunk);
          if (chunks.reduce((n, c) => n + c.length, 0) >= 20) resolve();
        });
      });
      dev.onError((e) => errors.push(e));
      dev.write(Uint8Array.from({ length: 16 }, (_, i) => i));
      dev.write(Uint8Array.of(16, 17, 18, 19));
      await got;
      expect(Buffer.concat(chunks)).toEqual(Buffer.from(Array.from({ length: 20 }, (_, i) => i)));
      expect(errors).toEqual([]);
      dev.close();
      expect(thrownXenError(() => dev.write(Uint8Array.of(1))).code).toBe('EBADF');
      dev.close(); // idempotent
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
