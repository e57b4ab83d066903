import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SimHypervisor } from '../sim/hypervisor.ts';
import { thrownXenError } from '../test-support.ts';
import { type DomainId, type VchanEndpoint, XenError } from '../types.ts';
import { RingVchanProvider, type VchanRegistry } from './ring-vchan.ts';
import * as W from './wire.ts';

const tick = () => new Promise<void>((r) => setImmediate(r));
const PATH = 'data/vchan/0/512';
/** The server's relative PATH as the client must name it: absolute, under the server's home. */
const at = (server: DomainId) => `/local/domain/${server}/${PATH}`;

/** A VM serving a vchan to dom0, and dom0 connected to it. */
function pair(readMin = 4096, writeMin = 4096) {
  const hv = new SimHypervisor();
  const vm = hv.createDomain();
  const server = vm.vchan.listen({ peer: 0, path: PATH, readMin, writeMin });
  const client = hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) });
  return { hv, vm, server, client };
}

function fill(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** How many bytes `from` can write before its ring is full. */
function capacity(from: VchanEndpoint): number {
  let total = 0;
  for (;;) {
    const n = from.write(new Uint8Array(1 << 16));
    if (n === 0) return total;
    total += n;
  }
}

describe('sim vchan (libxenvchan ring protocol)', () => {
  it('refuses a client until the server has published the path', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const e = thrownXenError(() => hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) }));
    expect(e.operation).toBe('libxenvchan_client_init');
    expect(e.code).toBe('ENOENT');
    vm.vchan.listen({ peer: 0, path: PATH, readMin: 1024, writeMin: 1024 });
    expect(hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) }).state()).toBe('open');
  });

  it("resolves a relative path against the caller's own home, as xenstore does", () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    vm.vchan.listen({ peer: 0, path: PATH, readMin: 1024, writeMin: 1024 });
    // dom0 naming the relative path looks under /local/domain/0, where nothing was published
    expect(thrownXenError(() => hv.dom0.vchan.connect({ peer: vm.domid, path: PATH })).code).toBe('ENOENT');
    // the absolute path under the server's home, as Qubes' wrappers build it, works
    expect(hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) }).state()).toBe('open');
  });

  it('sizes the rings from the minimums as libxenvchan does', () => {
    for (const [readMin, writeMin, left, right] of [
      [1024, 2048, 1024, 2048],
      [2048, 1024, 2048, 1024],
      [4096, 4096, 4096, 4096],
      [65536, 3000, 65536, 4096],
      [100, 9000, 2048, 16384], // readMin <= 2048: left 11, right min_order(9000)
    ] as const) {
      const { server, client } = pair(readMin, writeMin);
      expect(capacity(client)).toBe(left); // LEFT: client -> server
      expect(capacity(server)).toBe(right); // RIGHT: server -> client
    }
  });

  it('rejects a ring minimum above 1 MiB', () => {
    const hv = new SimHypervisor();
    const e = thrownXenError(() =>
      hv.dom0.vchan.listen({ peer: 1, path: PATH, readMin: 2 << 20, writeMin: 1 }),
    );
    expect(e.code).toBe('EINVAL');
  });

  it('reports waiting until the client connects, then open on both ends', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const server = vm.vchan.listen({ peer: 0, path: PATH, readMin: 4096, writeMin: 4096 });
    expect(server.state()).toBe('waiting');
    expect(server.role).toBe('server');
    // a waiting server may already write (libxenvchan's is_open is 2, i.e. true)
    expect(server.write(fill(10))).toBe(10);
    const client = hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) });
    expect(client.role).toBe('client');
    expect(server.state()).toBe('open');
    expect(client.state()).toBe('open');
    const got = new Uint8Array(10);
    expect(client.read(got)).toBe(10);
    expect(got).toEqual(fill(10));
  });

  it('writes partially when the ring is nearly full and returns 0 when it is full', () => {
    const { server, client } = pair(4096, 4096);
    expect(client.bufferSpace()).toBe(4096);
    expect(client.write(fill(3000))).toBe(3000);
    expect(client.bufferSpace()).toBe(1096);
    expect(client.write(fill(3000, 1))).toBe(1096);
    expect(client.write(fill(1))).toBe(0);
    expect(server.dataReady()).toBe(4096);
    const part = new Uint8Array(100);
    expect(server.read(part)).toBe(100);
    expect(client.bufferSpace()).toBe(100);
    expect(server.dataReady()).toBe(3996);
  });

  it('reads what is there, up to the buffer, and 0 when nothing is', () => {
    const { server, client } = pair();
    const buf = new Uint8Array(64);
    expect(server.read(buf)).toBe(0);
    client.write(fill(10));
    expect(server.read(buf)).toBe(10);
    expect(buf.subarray(0, 10)).toEqual(fill(10));
    client.write(fill(200));
    expect(server.read(buf)).toBe(64);
    expect(server.dataReady()).toBe(136);
  });

  it('wakes the reader after data and the writer after space, with onEvent', async () => {
    const { server, client } = pair(1024, 2048);
    let serverEvents = 0;
    let clientEvents = 0;
    server.onEvent(() => serverEvents++);
    client.onEvent(() => clientEvents++);
    await tick();
    serverEvents = 0; // the connect kick
    expect(server.dataReady()).toBe(0); // asks to be told about writes
    client.write(fill(10));
    await tick();
    expect(serverEvents).toBe(1);
    expect(capacity(client)).toBe(1014); // full, and asked to be told about space
    server.read(new Uint8Array(1024));
    await tick();
    expect(clientEvents).toBeGreaterThanOrEqual(1);
  });

  it('signals a peer only when it asked (notify bits)', async () => {
    const { server, client } = pair();
    let clientEvents = 0;
    client.onEvent(() => clientEvents++);
    await tick();
    server.write(fill(5)); // the client asked for WRITE at connect (srv_notify = WRITE)
    await tick();
    expect(clientEvents).toBe(1);
    server.write(fill(5)); // that request was used up: no event
    await tick();
    expect(clientEvents).toBe(1);
    expect(client.dataReady()).toBe(10); // asks again
    server.write(fill(5));
    await tick();
    expect(clientEvents).toBe(2);
  });

  it('moves a byte stream in both directions driven only by events', async () => {
    const { server, client } = pair(1024, 2048);
    const up = fill(50_000, 3);
    const down = fill(30_000, 7);
    const pump = (ep: VchanEndpoint, out: Uint8Array, got: number[]) => {
      let sent = 0;
      const step = () => {
        const buf = new Uint8Array(700);
        for (let n = ep.read(buf); n > 0; n = ep.read(buf)) got.push(...buf.subarray(0, n));
        if (sent < out.length) sent += ep.write(out.subarray(sent, Math.min(out.length, sent + 1500)));
        // request notifications before sleeping, as a libxenvchan user polling the fd would
        ep.dataReady();
        ep.bufferSpace();
      };
      ep.onEvent(step);
      return step;
    };
    const atServer: number[] = [];
    const atClient: number[] = [];
    const s = pump(server, down, atServer);
    const c = pump(client, up, atClient);
    s();
    c();
    for (let i = 0; i < 2000 && (atServer.length < up.length || atClient.length < down.length); i++)
      await tick();
    expect(Uint8Array.from(atServer)).toEqual(up);
    expect(Uint8Array.from(atClient)).toEqual(down);
  });

  it('lets the server see the client close, drain what is left, and refuses writes after', async () => {
    const { server, client } = pair();
    let closedSeen = false;
    server.onEvent(() => {
      if (server.state() === 'closed') closedSeen = true;
    });
    client.write(fill(20));
    client.close();
    expect(client.state()).toBe('closed');
    await tick();
    expect(closedSeen).toBe(true);
    const buf = new Uint8Array(64);
    expect(server.read(buf)).toBe(20); // data written before close is still there
    expect(server.read(buf)).toBe(0);
    const e = thrownXenError(() => server.write(fill(1)));
    expect(e.operation).toBe('libxenvchan_write');
    expect(e.code).toBe('EPIPE');
    server.close();
  });

  it('lets the client see the server close', async () => {
    const { server, client } = pair();
    let events = 0;
    client.onEvent(() => events++);
    server.close();
    await tick();
    expect(events).toBe(1);
    expect(client.state()).toBe('closed');
    expect(thrownXenError(() => client.write(fill(1))).code).toBe('EPIPE');
    client.close();
  });

  it('throws EBADF on use after close, and close is idempotent', () => {
    const { server, client } = pair();
    client.close();
    client.close();
    expect(thrownXenError(() => client.read(new Uint8Array(1))).code).toBe('EBADF');
    expect(thrownXenError(() => client.write(new Uint8Array(1))).code).toBe('EBADF');
    expect(thrownXenError(() => client.dataReady()).code).toBe('EBADF');
    expect(client.state()).toBe('closed');
    server.close();
  });

  it('removes the published path on server close, so a new client cannot connect', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const server = vm.vchan.listen({ peer: 0, path: PATH, readMin: 4096, writeMin: 4096 });
    server.close();
    expect(thrownXenError(() => hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) })).code).toBe(
      'ENOENT',
    );
  });

  it('maps the client read ring read-only and only for the named peer', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const stranger = hv.createDomain();
    vm.vchan.listen({ peer: 0, path: PATH, readMin: 4096, writeMin: 4096 });
    // the registry entry is readable by anyone here, but the grants are for dom0 only
    const e = thrownXenError(() => stranger.vchan.connect({ peer: vm.domid, path: at(vm.domid) }));
    expect(e.code).toBe('EINVAL');
  });

  it('treats indexes that claim more than the ring holds as no data (a hostile peer)', () => {
    const { hv, vm, server, client } = pair();
    // dom0 maps the server's interface page a second time and corrupts the LEFT producer
    const iface = hv.dom0.grantMapper.mapWritable(vm.domid, [8]);
    iface.storeRelease32(W.LEFT_PROD, 0x7fffffff);
    expect(server.dataReady()).toBe(0);
    expect(server.read(new Uint8Array(16))).toBe(0);
    iface.storeRelease32(W.LEFT_PROD, 0);
    iface.storeRelease32(W.RIGHT_CONS, 0x10000); // consumer ahead of producer
    expect(server.bufferSpace()).toBe(0);
    iface.unmap();
    client.close();
  });

  it('works across the 2^32 wrap of the free-running indexes', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const server = vm.vchan.listen({ peer: 0, path: PATH, readMin: 1024, writeMin: 2048 });
    const iface = hv.dom0.grantMapper.mapWritable(vm.domid, [8]);
    for (const at of [W.LEFT_CONS, W.LEFT_PROD, W.RIGHT_CONS, W.RIGHT_PROD])
      iface.storeRelease32(at, 0xffffff00);
    iface.unmap();
    const client = hv.dom0.vchan.connect({ peer: vm.domid, path: at(vm.domid) });
    const data = fill(5000, 9);
    const got: number[] = [];
    let sent = 0;
    const buf = new Uint8Array(333);
    while (got.length < data.length) {
      sent += client.write(data.subarray(sent, sent + 700));
      for (let n = server.read(buf); n > 0; n = server.read(buf)) got.push(...buf.subarray(0, n));
    }
    expect(Uint8Array.from(got)).toEqual(data);
  });

  it('refuses a page whose rings overlap (both order 10)', () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const entries = new Map<string, { ringRef: number; port: number }>();
    const registry: VchanRegistry = {
      publish: (d: DomainId, p: string, e) => entries.set(`${d}${p}`, e),
      lookup: (d: DomainId, p: string) => entries.get(`${d}${p}`),
      remove: (d: DomainId, p: string) => entries.delete(`${d}${p}`),
    };
    const page = vm.grantSharer.share(0, 1);
    const dv = new DataView(page.buffer);
    dv.setUint16(W.LEFT_ORDER, 10, true);
    dv.setUint16(W.RIGHT_ORDER, 10, true);
    registry.publish(vm.domid, at(vm.domid), {
      ringRef: page.refs[0]!,
      port: vm.eventChannels.allocUnbound(0),
    });
    const client = new RingVchanProvider(hv.dom0, registry);
    const e = thrownXenError(() => client.connect({ peer: vm.domid, path: at(vm.domid) }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('in-page order 10');
  });

  it('stays within its ring whatever a hostile client writes into the interface page (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 0xffffffff })), {
          maxLength: 8,
        }),
        (pokes) => {
          const { hv, vm, server, client } = pair(1024, 2048);
          const iface = hv.dom0.grantMapper.mapWritable(vm.domid, [8]);
          const dv = new DataView(iface.buffer);
          for (const [field, value] of pokes) {
            // the four indexes, then the orders and the live/notify bytes
            if (field < 4) iface.storeRelease32(field * 4, value);
            else if (field === 4) dv.setUint32(W.LEFT_ORDER, value, true);
            else dv.setUint32(W.CLI_LIVE, value, true);
          }
          const buf = new Uint8Array(3000);
          for (let i = 0; i < 3; i++) {
            const ready = server.dataReady();
            const space = server.bufferSpace();
            if (ready < 0 || ready > 1024 || space < 0 || space > 2048) throw new Error(`${ready} ${space}`);
            const n = server.read(buf);
            if (n < 0 || n > 1024) throw new Error(`read ${n}`);
            try {
              const m = server.write(buf);
              if (m < 0 || m > 2048) throw new Error(`wrote ${m}`);
            } catch (error) {
              if (!(error instanceof XenError && error.code === 'EPIPE')) throw error;
            }
          }
          iface.unmap();
          client.close();
          server.close();
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps the byte stream intact for any sizes of writes, reads and rings (property)', () => {
    const sizes = fc.constantFrom(1024, 2048, 4096, 8192, 65536);
    fc.assert(
      fc.property(
        sizes,
        sizes,
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 255 }),
        (readMin, writeMin, writes, reads, seed) => {
          const { server, client } = pair(readMin, writeMin);
          const total = writes.reduce((a, b) => a + b, 0);
          const data = fill(total, seed);
          const got = new Uint8Array(total);
          let sent = 0;
          let received = 0;
          let w = 0;
          let r = 0;
          for (let rounds = 0; received < total; rounds++) {
            if (rounds > 100_000) throw new Error('no progress');
            if (sent < total) {
              const want = Math.min(writes[w++ % writes.length]!, total - sent);
              const n = server.write(data.subarray(sent, sent + want));
              if (n > want) throw new Error(`wrote ${n} of ${want}`);
              sent += n;
            }
            const into = new Uint8Array(reads[r++ % reads.length]!);
            const n = client.read(into);
            got.set(into.subarray(0, n), received);
            received += n;
          }
          if (Buffer.compare(got, data) !== 0) throw new Error('byte stream differs');
          server.close();
          client.close();
        },
      ),
      { numRuns: 60 },
    );
  });
});
