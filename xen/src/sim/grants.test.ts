import { describe, expect, it } from 'vitest';
import { GNTST } from '../grant-status.ts';
import { ReadOnlyView } from '../readonly-view.ts';
import { thrownXenError } from '../test-support.ts';
import { PAGE_SIZE } from '../types.ts';
import { SimHypervisor } from './hypervisor.ts';

function setup() {
  const hv = new SimHypervisor();
  const front = hv.createDomain({ name: 'front' });
  const back = hv.createDomain({ name: 'back' });
  const other = hv.createDomain({ name: 'other' });
  return { hv, front, back, other };
}

describe('sim grant tables', () => {
  it('shares pages that the grantee maps writable, both seeing the same bytes', () => {
    const { front, back } = setup();
    const shared = front.grantSharer.share(back.domid, 2);
    expect(shared.refs).toHaveLength(2);
    expect(shared.refs.every((r) => r >= 8)).toBe(true);
    new Uint8Array(shared.buffer)[PAGE_SIZE + 5] = 42;
    const m = back.grantMapper.mapWritable(front.domid, shared.refs);
    expect(m.buffer.byteLength).toBe(2 * PAGE_SIZE);
    expect(new Uint8Array(m.buffer)[PAGE_SIZE + 5]).toBe(42);
    m.storeRelease32(16, 0xcafef00d);
    expect(shared.loadAcquire32(16)).toBe(0xcafef00d);
    expect(new DataView(shared.buffer).getUint32(16, true)).toBe(0xcafef00d);
  });

  it('refuses a mapping by a domain the grant is not for (EINVAL; Xen says GNTST_general_error)', () => {
    const { front, back, other } = setup();
    const shared = front.grantSharer.share(back.domid, 1);
    const e = thrownXenError(() => other.grantMapper.mapWritable(front.domid, shared.refs));
    expect(e.operation).toBe('xengnttab_map_grant_refs (writable)');
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('GNTST_general_error');
    expect(thrownXenError(() => other.grantMapper.mapReadOnly(front.domid, shared.refs)).code).toBe('EINVAL');
  });

  it('refuses to map a read-only grant writable, but maps it read-only', () => {
    const { front, back } = setup();
    const shared = front.grantSharer.share(back.domid, 1, { writable: false });
    const e = thrownXenError(() => back.grantMapper.mapWritable(front.domid, shared.refs));
    expect(e.message).toContain('GNTST_general_error');
    const ro = back.grantMapper.mapReadOnly(front.domid, shared.refs);
    expect(ro.pages).toBeInstanceOf(ReadOnlyView);
  });

  it('refuses refs that do not exist and domains that do not exist', () => {
    const { front, back } = setup();
    // in the table but never granted: Xen's "Bad flags" check
    expect(thrownXenError(() => back.grantMapper.mapWritable(front.domid, [4000])).message).toContain(
      'GNTST_general_error',
    );
    // beyond the table
    expect(thrownXenError(() => back.grantMapper.mapWritable(front.domid, [1 << 20])).message).toContain(
      'GNTST_bad_gntref',
    );
    expect(thrownXenError(() => back.grantMapper.mapWritable(99, [8])).message).toContain('GNTST_bad_domain');
  });

  it('reads a read-only mapping only through the view class, which has no way to write', () => {
    const { front, back } = setup();
    const shared = front.grantSharer.share(back.domid, 1, { writable: false });
    const dv = new DataView(shared.buffer);
    dv.setUint32(0, 0x04030201, true);
    dv.setUint32(8, 0x80000001, true);
    const ro = back.grantMapper.mapReadOnly(front.domid, shared.refs);
    const pages = ro.pages;
    expect(pages.byteLength).toBe(PAGE_SIZE);
    expect(pages.getUint8(1)).toBe(2);
    expect(pages.getUint16(1)).toBe(0x0302);
    expect(pages.getUint32(0)).toBe(0x04030201);
    expect(pages.loadAcquire32(8)).toBe(0x80000001);
    const out = new Uint8Array(6);
    pages.copyTo(out, 1, 0, 4);
    expect([...out]).toEqual([0, 1, 2, 3, 4, 0]);
    // writes by the owner are seen at once
    dv.setUint8(3, 9);
    expect(pages.getUint8(3)).toBe(9);
    // the view exposes nothing to write with
    const anyView = pages as unknown as Record<string, unknown>;
    for (const k of ['buffer', 'setUint8', 'setUint32', 'storeRelease32', 'set', 'bytes']) {
      expect(anyView[k]).toBeUndefined();
    }
    expect(Object.keys(pages)).not.toContain('buffer');
    expect(() => {
      (pages as unknown as { byteLength: number }).byteLength = 1;
    }).toThrow(TypeError);
    expect(thrownXenError(() => pages.getUint32(PAGE_SIZE - 2)).code).toBe('ERANGE');
    expect(thrownXenError(() => pages.loadAcquire32(2)).code).toBe('EINVAL');
    expect(thrownXenError(() => pages.copyTo(out, 4, 0, 4)).code).toBe('ERANGE');
    ro.unmap();
    expect(pages.mapped).toBe(false);
    expect(thrownXenError(() => pages.getUint8(0)).code).toBe('EBADF');
  });

  it('detaches a writable mapping on unmap while the owner keeps its pages', () => {
    const { front, back } = setup();
    const shared = front.grantSharer.share(back.domid, 1);
    const m = back.grantMapper.mapWritable(front.domid, shared.refs);
    const view = new Uint8Array(m.buffer);
    view[7] = 77;
    m.unmap();
    expect(m.mapped).toBe(false);
    expect(view.length).toBe(0); // the ArrayBuffer the mapper held is detached
    expect(m.buffer.byteLength).toBe(0); // what it held, detached, as native returns it
    expect(thrownXenError(() => m.loadAcquire32(0)).code).toBe('EBADF');
    // the owner still has the bytes (through .buffer: sim re-issues the object, see SimRegion)
    expect(new Uint8Array(shared.buffer)[7]).toBe(77);
    m.unmap(); // idempotent
  });

  it('keeps pages mapped by the peer after the owner unshares, and ends the grant for new maps', () => {
    const { front, back } = setup();
    const shared = front.grantSharer.share(back.domid, 1);
    const m = back.grantMapper.mapWritable(front.domid, shared.refs);
    new Uint8Array(m.buffer)[0] = 5;
    const ownerView = new Uint8Array(shared.buffer);
    shared.unshare();
    expect(ownerView.length).toBe(0);
    expect(shared.buffer.byteLength).toBe(0);
    expect(thrownXenError(() => shared.loadAcquire32(0)).code).toBe('EBADF');
    expect(new Uint8Array(m.buffer)[0]).toBe(5);
    expect(thrownXenError(() => back.grantMapper.mapWritable(front.domid, shared.refs)).message).toContain(
      'GNTST_general_error',
    );
    m.unmap();
  });

  it('enforces the gntalloc page limit with ENOSPC and frees refs on unshare', () => {
    const hv = new SimHypervisor({ gntallocLimit: 4 });
    const vm = hv.createDomain();
    const a = vm.grantSharer.share(0, 3);
    expect(thrownXenError(() => vm.grantSharer.share(0, 2)).code).toBe('ENOSPC');
    a.unshare();
    const b = vm.grantSharer.share(0, 4);
    expect(new Set(b.refs)).toEqual(new Set([...a.refs, b.refs[3]]));
    expect(thrownXenError(() => vm.grantSharer.share(0, 0)).code).toBe('EINVAL');
  });

  it('maps only whole shared regions in order (a documented sim limit)', () => {
    const { front, back } = setup();
    const shared = front.grantSharer.share(back.domid, 2);
    expect(thrownXenError(() => back.grantMapper.mapWritable(front.domid, [shared.refs[0]!])).code).toBe(
      'EINVAL',
    );
    expect(
      thrownXenError(() => back.grantMapper.mapWritable(front.domid, [...shared.refs].reverse())).code,
    ).toBe('EINVAL');
  });
});

describe('sim grant copy', () => {
  it('copies to and from grants with a status per segment', () => {
    const { front, back, other } = setup();
    const rw = front.grantSharer.share(back.domid, 1);
    const ro = front.grantSharer.share(back.domid, 1, { writable: false });
    new Uint8Array(ro.buffer).set([1, 2, 3, 4], 100);
    new Uint8Array(ro.buffer)[0] = 0xaa;
    const got = new Uint8Array(8);
    const status = back.grantCopier.copy([
      {
        direction: 'to-grant',
        domain: front.domid,
        ref: rw.refs[0]!,
        offset: 4090,
        length: 6,
        source: Uint8Array.of(9, 8, 7, 6, 5, 4),
        sourceOffset: 0,
      },
      {
        direction: 'from-grant',
        domain: front.domid,
        ref: ro.refs[0]!,
        offset: 100,
        length: 4,
        target: got,
        targetOffset: 2,
      },
      {
        direction: 'to-grant',
        domain: front.domid,
        ref: ro.refs[0]!,
        offset: 0,
        length: 1,
        source: got,
        sourceOffset: 0,
      },
      {
        direction: 'from-grant',
        domain: front.domid,
        ref: 1 << 20,
        offset: 0,
        length: 1,
        target: got,
        targetOffset: 0,
      },
      { direction: 'from-grant', domain: 55, ref: 8, offset: 0, length: 1, target: got, targetOffset: 0 },
    ]);
    expect([...status]).toEqual([
      GNTST.okay,
      GNTST.okay,
      GNTST.general_error, // writing a read-only grant
      GNTST.bad_gntref,
      GNTST.bad_domain,
    ]);
    expect([...new Uint8Array(rw.buffer, 4090, 6)]).toEqual([9, 8, 7, 6, 5, 4]);
    expect([...got]).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    expect(new Uint8Array(ro.buffer)[0]).toBe(0xaa); // the denied segment wrote nothing
    // a domain the grant is not for gets general_error, as from Xen's "Bad flags or dom"
    const s = other.grantCopier.copy([
      {
        direction: 'from-grant',
        domain: front.domid,
        ref: rw.refs[0]!,
        offset: 0,
        length: 1,
        target: got,
        targetOffset: 0,
      },
    ]);
    expect([...s]).toEqual([GNTST.general_error]);
  });

  it('throws before copying anything when a segment crosses the page or its local buffer', () => {
    const { front, back } = setup();
    const rw = front.grantSharer.share(back.domid, 1);
    const seg = {
      direction: 'to-grant' as const,
      domain: front.domid,
      ref: rw.refs[0]!,
      offset: 4095,
      length: 2,
      source: new Uint8Array(2),
      sourceOffset: 0,
    };
    expect(thrownXenError(() => back.grantCopier.copy([seg])).code).toBe('EINVAL');
    expect(thrownXenError(() => back.grantCopier.copy([{ ...seg, offset: 0, sourceOffset: 1 }])).code).toBe(
      'ERANGE',
    );
  });
});
