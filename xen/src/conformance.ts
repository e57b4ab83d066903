/**
 * The primitives' conformance suite: named cases that check a XenDomain against Xen's
 * behaviour using only loopback (the domain shares with itself, binds its own ports,
 * serves a vchan to itself), so one domain is enough. The same ids run here against sim
 * (vitest) and in the lab against openNativeDomain() inside a domU. Cases use node:assert,
 * not a test framework, so a plain node runner can execute them.
 */
import assert from 'node:assert/strict';
import { within } from './cases.ts';
import { GNTST } from './grant-status.ts';
import { type DomainId, PAGE_SIZE, type Port, type XenDomain, XenError } from './types.ts';

export interface XenConformanceTarget {
  domain: XenDomain;
  /** Where the vchan case publishes its channel (a path the domain may write). */
  vchanPath?: string;
  /** Timeout for each awaited event (default 20 s: the lab is emulated). */
  timeoutMs?: number;
}

export interface XenConformanceCase {
  id: string;
  run(): Promise<void>;
}

interface Ctx {
  d: XenDomain;
  self: DomainId;
  /** A domain id that is not ours (for "granted to someone else"). */
  other: DomainId;
  vchanPath: string;
  timeoutMs: number;
}

function expectXenError(f: () => unknown, code: string, what: string): XenError {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof XenError, `${what}: expected XenError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, `${what}: expected ${code}, got ${error.code} (${error.message})`);
    return error;
  }
  assert.fail(`${what}: expected XenError ${code}, but it succeeded`);
}

/** Resolves with the first event on `port`. */
function nextEvent(d: XenDomain, port: Port): Promise<void> {
  return new Promise((resolve) => {
    const off = d.eventChannels.onEvent((p) => {
      if (p !== port) return;
      off();
      resolve();
    });
  });
}

const cases: [string, (c: Ctx) => Promise<void>][] = [
  [
    'evtchn: a loopback channel delivers notifications both ways, asynchronously',
    async ({ d, self, timeoutMs }) => {
      const ec = d.eventChannels;
      const a = ec.allocUnbound(self);
      const b = ec.bindInterdomain(self, a);
      try {
        assert.notEqual(a, b);
        let delivered = false;
        const atA = nextEvent(d, a).then(() => {
          delivered = true;
        });
        ec.notify(b);
        assert.equal(delivered, false, 'delivery must not happen inside notify()');
        await within(timeoutMs, 'event on the unbound end', atA);
        const atB = nextEvent(d, b);
        ec.notify(a);
        await within(timeoutMs, 'event on the bound end', atB);
      } finally {
        ec.unbind(b);
        ec.unbind(a);
      }
    },
  ],
  [
    'evtchn: binding a port offered to another domain fails with EINVAL',
    async ({ d, self, other }) => {
      const ec = d.eventChannels;
      const p = ec.allocUnbound(other);
      try {
        const e = expectXenError(
          () => ec.bindInterdomain(self, p),
          'EINVAL',
          'bind to a port for another domain',
        );
        assert.equal(e.operation, 'xenevtchn_bind_interdomain');
      } finally {
        ec.unbind(p);
      }
    },
  ],
  [
    'evtchn: notify and unbind of a port we do not hold fail with ENOTCONN',
    async ({ d, self }) => {
      const ec = d.eventChannels;
      const p = ec.allocUnbound(self);
      ec.unbind(p);
      expectXenError(() => ec.notify(p), 'ENOTCONN', 'notify after unbind');
      expectXenError(() => ec.unbind(p), 'ENOTCONN', 'unbind twice');
    },
  ],
  [
    'grants: shared pages mapped writable show the same bytes and indexes',
    async ({ d, self }) => {
      const shared = d.grantSharer.share(self, 2);
      try {
        assert.equal(shared.refs.length, 2);
        assert.equal(shared.buffer.byteLength, 2 * PAGE_SIZE);
        new Uint8Array(shared.buffer)[PAGE_SIZE + 1] = 0x5a;
        const m = d.grantMapper.mapWritable(self, shared.refs);
        try {
          assert.equal(m.buffer.byteLength, 2 * PAGE_SIZE);
          assert.equal(new Uint8Array(m.buffer)[PAGE_SIZE + 1], 0x5a);
          m.storeRelease32(PAGE_SIZE + 4, 0xfffffffe);
          assert.equal(shared.loadAcquire32(PAGE_SIZE + 4), 0xfffffffe);
          shared.storeRelease32(8, 12345);
          assert.equal(m.loadAcquire32(8), 12345);
        } finally {
          m.unmap();
        }
      } finally {
        shared.unshare();
      }
    },
  ],
  [
    'grants: unmap detaches the mapping ArrayBuffer and later use throws EBADF',
    async ({ d, self }) => {
      const shared = d.grantSharer.share(self, 1);
      try {
        const m = d.grantMapper.mapWritable(self, shared.refs);
        const view = new Uint8Array(m.buffer);
        view[3] = 3;
        m.unmap();
        assert.equal(m.mapped, false);
        assert.equal(view.length, 0, 'views over an unmapped buffer must be detached');
        assert.equal(m.buffer.byteLength, 0, '.buffer is the detached ArrayBuffer');
        expectXenError(() => m.loadAcquire32(0), 'EBADF', 'index load after unmap');
        assert.equal(new Uint8Array(shared.buffer)[3], 3, 'the owner keeps its pages');
      } finally {
        shared.unshare();
      }
    },
  ],
  [
    'grants: a read-only grant maps read-only through the view and not writable (EINVAL)',
    async ({ d, self }) => {
      const shared = d.grantSharer.share(self, 1, { writable: false });
      try {
        new DataView(shared.buffer).setUint32(16, 0xa1b2c3d4, true);
        const e = expectXenError(
          () => d.grantMapper.mapWritable(self, shared.refs),
          'EINVAL',
          'writable map of a read-only grant',
        );
        assert.match(e.operation, /map/);
        const ro = d.grantMapper.mapReadOnly(self, shared.refs);
        try {
          assert.equal(ro.pages.byteLength, PAGE_SIZE);
          assert.equal(ro.pages.getUint32(16), 0xa1b2c3d4);
          assert.equal(ro.pages.loadAcquire32(16), 0xa1b2c3d4);
          assert.equal(ro.pages.getUint16(18), 0xa1b2);
          const out = new Uint8Array(4);
          ro.pages.copyTo(out, 0, 16, 4);
          assert.deepEqual([...out], [0xd4, 0xc3, 0xb2, 0xa1]);
          assert.equal((ro.pages as unknown as { buffer?: unknown }).buffer, undefined);
          expectXenError(() => ro.pages.getUint8(PAGE_SIZE), 'ERANGE', 'read past the mapping');
        } finally {
          ro.unmap();
        }
        assert.equal(ro.pages.mapped, false);
        expectXenError(() => ro.pages.getUint8(0), 'EBADF', 'read after unmap');
      } finally {
        shared.unshare();
      }
    },
  ],
  [
    'grants: a grant for another domain and a ref beyond the table do not map (EINVAL)',
    async ({ d, self, other }) => {
      const shared = d.grantSharer.share(other, 1);
      try {
        expectXenError(
          () => d.grantMapper.mapWritable(self, shared.refs),
          'EINVAL',
          'map of a grant for another domain',
        );
        expectXenError(() => d.grantMapper.mapReadOnly(self, shared.refs), 'EINVAL', 'read-only map of it');
      } finally {
        shared.unshare();
      }
      expectXenError(
        () => d.grantMapper.mapReadOnly(self, [(1 << 24) + 5]),
        'EINVAL',
        'ref beyond the table',
      );
    },
  ],
  [
    'grant copy: segments to and from a grant, with a status per segment',
    async ({ d, self, other }) => {
      const rw = d.grantSharer.share(self, 1);
      const ro = d.grantSharer.share(self, 1, { writable: false });
      const foreign = d.grantSharer.share(other, 1);
      try {
        new Uint8Array(ro.buffer).set([7, 8, 9], 40);
        const got = new Uint8Array(5);
        const status = d.grantCopier.copy([
          {
            direction: 'to-grant',
            domain: self,
            ref: rw.refs[0]!,
            offset: 4000,
            length: 3,
            source: Uint8Array.of(1, 2, 3),
            sourceOffset: 0,
          },
          {
            direction: 'from-grant',
            domain: self,
            ref: ro.refs[0]!,
            offset: 40,
            length: 3,
            target: got,
            targetOffset: 1,
          },
          {
            direction: 'to-grant',
            domain: self,
            ref: ro.refs[0]!,
            offset: 0,
            length: 1,
            source: got,
            sourceOffset: 0,
          },
          {
            direction: 'from-grant',
            domain: self,
            ref: foreign.refs[0]!,
            offset: 0,
            length: 1,
            target: got,
            targetOffset: 0,
          },
          {
            direction: 'from-grant',
            domain: self,
            ref: (1 << 24) + 5,
            offset: 0,
            length: 1,
            target: got,
            targetOffset: 0,
          },
        ]);
        assert.deepEqual(
          [...status],
          [GNTST.okay, GNTST.okay, GNTST.general_error, GNTST.general_error, GNTST.bad_gntref],
        );
        assert.deepEqual([...new Uint8Array(rw.buffer, 4000, 3)], [1, 2, 3]);
        assert.deepEqual([...got], [0, 7, 8, 9, 0]);
        const crossing = {
          direction: 'from-grant' as const,
          domain: self,
          ref: rw.refs[0]!,
          offset: 4095,
          length: 2,
          target: got,
          targetOffset: 0,
        };
        expectXenError(() => d.grantCopier.copy([crossing]), 'EINVAL', 'a segment crossing the page');
      } finally {
        foreign.unshare();
        ro.unshare();
        rw.unshare();
      }
    },
  ],
  [
    'vchan: a loopback channel goes waiting -> open, carries bytes both ways, and closes',
    async ({ d, self, vchanPath, timeoutMs }) => {
      const server = d.vchan.listen({ peer: self, path: vchanPath, readMin: 1024, writeMin: 2048 });
      let client: ReturnType<XenDomain['vchan']['connect']> | undefined;
      try {
        assert.equal(server.state(), 'waiting');
        client = d.vchan.connect({ peer: self, path: vchanPath });
        assert.equal(client.state(), 'open');
        assert.equal(server.state(), 'open');
        const up = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
        // LEFT (client -> server) holds 1024 bytes: a partial write
        assert.equal(client.write(up), 1024);
        assert.equal(client.write(up), 0, 'a full ring takes nothing');
        assert.equal(server.dataReady(), 1024);
        const got = new Uint8Array(600);
        assert.equal(server.read(got), 600);
        assert.deepEqual(got, up.subarray(0, 600));
        assert.equal(client.bufferSpace(), 600);
        assert.equal(server.write(Uint8Array.of(1, 2, 3)), 3);
        const back = new Uint8Array(8);
        assert.equal(client.read(back), 3);
        const c = client;
        const closed = new Promise<void>((resolve) => {
          const off = server.onEvent(() => {
            if (server.state() === 'closed') {
              off();
              resolve();
            }
          });
        });
        c.close();
        await within(timeoutMs, 'the server sees the client close', closed);
        assert.equal(server.read(new Uint8Array(1024)), 424, 'data written before close is still readable');
        expectXenError(() => server.write(Uint8Array.of(1)), 'EPIPE', 'write after the peer closed');
      } finally {
        client?.close();
        server.close();
      }
      expectXenError(
        () => d.vchan.connect({ peer: self, path: vchanPath }),
        'ENOENT',
        'connect after the server closed',
      );
    },
  ],
  [
    'vchan: with local buffers, bytes cross small rings both ways and what was written before close arrives',
    async ({ d, self, vchanPath, timeoutMs }) => {
      const buffer = 4096;
      const server = d.vchan.listen({ peer: self, path: vchanPath, readMin: 1024, writeMin: 2048, buffer });
      let client: ReturnType<XenDomain['vchan']['connect']> | undefined;
      try {
        const c = d.vchan.connect({ peer: self, path: vchanPath, buffer });
        client = c;
        // 20,000 bytes through a 1 KiB ring and 4 KiB buffers: many fills, moved by events only.
        const up = Uint8Array.from({ length: 20_000 }, (_, i) => (i * 7) & 0xff);
        const got = new Uint8Array(up.length);
        let sent = 0;
        let received = 0;
        await within(
          timeoutMs,
          'the server receiving 20000 bytes',
          new Promise<void>((resolve) => {
            const step = () => {
              while (sent < up.length) {
                const n = c.write(up.subarray(sent));
                if (n === 0) break;
                sent += n;
              }
              while (received < got.length) {
                const n = server.read(got.subarray(received));
                if (n <= 0) break;
                received += n;
              }
              if (received === got.length) {
                offClient();
                offServer();
                resolve();
              }
            };
            const offClient = c.onEvent(step);
            const offServer = server.onEvent(step);
            step();
          }),
        );
        assert.deepEqual(got, up);
        // The client's last 500 bytes and its close: the close must not overtake the bytes.
        assert.equal(c.write(up.subarray(0, 500)), 500);
        const closed = new Promise<void>((resolve) => {
          const off = server.onEvent(() => {
            if (server.state() === 'closed') {
              off();
              resolve();
            }
          });
          if (server.state() === 'closed') resolve();
        });
        c.close();
        client = undefined;
        await within(timeoutMs, 'the server sees the client close', closed);
        const tail = new Uint8Array(1024);
        let tailBytes = 0;
        for (let n = server.read(tail); n > 0; n = server.read(tail.subarray(tailBytes))) tailBytes += n;
        assert.equal(tailBytes, 500, 'bytes written before close are all readable after it');
        assert.deepEqual(tail.subarray(0, 500), up.subarray(0, 500));
        expectXenError(() => server.write(Uint8Array.of(1)), 'EPIPE', 'write after the peer closed');
      } finally {
        client?.close();
        server.close();
      }
    },
  ],
];

/** The cases, in a stable order, ready to run against `target`. */
export function xenConformanceSuite(target: XenConformanceTarget): XenConformanceCase[] {
  const self = target.domain.domid;
  const ctx: Ctx = {
    d: target.domain,
    self,
    other: self === 0 ? 1 : 0,
    vchanPath: target.vchanPath ?? `data/vchan/${self}/4097`,
    timeoutMs: target.timeoutMs ?? 20_000,
  };
  return cases.map(([id, body]) => ({ id, run: () => body(ctx) }));
}
