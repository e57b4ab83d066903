import { createHash, randomBytes } from 'node:crypto';
import { SimHypervisor } from '@moat/xen/sim';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VchanError } from './errors.ts';
import { collect, collectWithPauses, readExactly, writeInChunks, writeUntilStalled } from './test-support.ts';
import { connectVchan, listenVchan } from './xen.ts';

/** The stream API over @moat/xen's sim: the real libxenvchan ring protocol over simulated grants and event channels. */

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function channel(options: { readMin?: number; writeMin?: number; port?: number } = {}) {
  const hv = new SimHypervisor();
  const vm = hv.createDomain({ name: 'vm' });
  const port = options.port ?? 512;
  const server = await listenVchan({ domain: hv.dom0, peer: vm.domid, port, ...options });
  const client = await connectVchan({ domain: vm, peer: 0, port, timeoutMs: 2000 });
  await server.whenConnected();
  return { hv, vm, server, client };
}

describe('VchanStream over the sim hypervisor (libxenvchan rings)', () => {
  it('moves 4 MiB each way through 64 KiB rings with a checksum', async () => {
    const { server, client } = await channel({ readMin: 65536, writeMin: 65536 });
    const up = randomBytes(4 * 1024 * 1024);
    const down = randomBytes(4 * 1024 * 1024);
    const atServer = readExactly(server, up.length);
    const atClient = readExactly(client, down.length);
    await Promise.all([
      writeInChunks(client, up, [65536, 1000, 7], { end: false }),
      writeInChunks(server, down, [4096, 100_000], { end: false }),
    ]);
    expect(digest(await atServer)).toBe(digest(up));
    expect(digest(await atClient)).toBe(digest(down));
  });

  it('keeps random data intact with random chunk sizes through 4 KiB rings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 60_000 }),
        fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 5 }),
        async (data, sizes) => {
          const { server, client } = await channel();
          const received = collect(server);
          await writeInChunks(client, data, sizes);
          expect(digest(await received)).toBe(digest(data));
        },
      ),
      { numRuns: 20 },
    );
  });

  it('delivers everything when the reader pauses at random (no lost wake-ups)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1024, 2048, 4096, 65536),
        fc.uint8Array({ minLength: 1, maxLength: 200_000 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 8 }),
        async (ring, data, pauses) => {
          const { server, client } = await channel({ readMin: ring, writeMin: 4096 });
          const received = collectWithPauses(server, pauses);
          await writeInChunks(client, data, [3000, 1, 70_000]);
          expect(digest(await received)).toBe(digest(data));
        },
      ),
      { numRuns: 12 },
    );
  });

  it('a slow reader holds the writer back (bounded by the ring and the stream buffers)', async () => {
    const { server, client } = await channel();
    server.pause();
    const accepted = await writeUntilStalled(client, Buffer.alloc(1500, 3), {
      stallMs: 50,
      limit: 10_000_000,
    });
    expect(accepted).toBeLessThan(64 * 1024 + 4096 + 64 * 1024 + 3000);
    client.end();
    expect((await collect(server)).length).toBe(accepted);
  });

  it('closing is EOF at the other end, both ways', async () => {
    const a = await channel();
    a.client.end('client done');
    expect((await collect(a.server)).toString()).toBe('client done');
    const b = await channel();
    b.server.end('server done');
    expect((await collect(b.client)).toString()).toBe('server done');
  });

  it('a writer blocked on a full ring fails with EPIPE when the peer closes', async () => {
    const { server, client } = await channel();
    server.pause();
    const error = new Promise<unknown>((resolve) => client.once('error', resolve));
    client.write(Buffer.alloc(300_000));
    await new Promise((resolve) => setTimeout(resolve, 10));
    server.destroy();
    const e = await error;
    expect(e).toBeInstanceOf(VchanError);
    expect((e as VchanError).code).toBe('EPIPE');
  });

  it('a destroyed peer domain (no unmap notification) is caught by the liveness check, no hang', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const server = await listenVchan({
      domain: hv.dom0,
      peer: vm.domid,
      port: 111,
      liveness: { isPeerAlive: () => vm.alive, intervalMs: 5 },
    });
    await connectVchan({ domain: vm, peer: 0, port: 111, timeoutMs: 2000 });
    await server.whenConnected();
    const error = new Promise<unknown>((resolve) => server.once('error', resolve));
    server.resume();
    hv.destroyDomain(vm.domid);
    expect(((await error) as VchanError).code).toBe('EPEERDEAD');
  });

  it('the client waits for the server to publish, then connects', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const connecting = connectVchan({ domain: vm, peer: 0, port: 6000, timeoutMs: 2000 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const server = await listenVchan({ domain: hv.dom0, peer: vm.domid, port: 6000 });
    const client = await connecting;
    client.write('hi');
    expect((await readExactly(server, 2)).toString()).toBe('hi');
  });
});
