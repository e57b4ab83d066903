import { createHash, randomBytes } from 'node:crypto';
import type { DomainId, VchanEndpoint, VchanProvider } from '@moat/xen';
import { XenError } from '@moat/xen';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { VchanError } from './errors.ts';
import { type MemoryVchanPair, memoryVchanPair } from './memory.ts';
import { VchanStream } from './stream.ts';
import { collect, readExactly, writeInChunks, writeUntilStalled } from './test-support.ts';
import { connectVchan, listenVchan } from './xen.ts';

const channel = { localDomain: 0, remoteDomain: 1, port: 111, transport: 'memory' as const };

function streams(sizes?: { serverRead?: number; serverWrite?: number }) {
  const pair = memoryVchanPair(sizes);
  const server = new VchanStream(pair.server, { ...channel, role: 'server' });
  const client = new VchanStream(pair.connect(), { ...channel, role: 'client' });
  return { pair, server, client };
}

/** Reads a stream with its async iterator (as qrexec's FrameReader does) until EOF or an error. */
async function readAll(stream: VchanStream): Promise<{ text: string; end: string }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream.iterator({ destroyOnReturn: false })) chunks.push(chunk as Buffer);
    return { text: Buffer.concat(chunks).toString(), end: 'eof' };
  } catch (error) {
    return { text: Buffer.concat(chunks).toString(), end: (error as Error).message };
  }
}

/** A VchanProvider over memory pairs keyed by xenstore path, like libxenvchan over xenstore. */
class FakeProvider implements VchanProvider {
  readonly published = new Map<string, { peer: DomainId; pair: MemoryVchanPair }>();
  constructor(
    readonly domid: DomainId,
    readonly registry: Map<string, { peer: DomainId; pair: MemoryVchanPair }>,
  ) {}
  listen(options: { peer: DomainId; path: string; readMin: number; writeMin: number }): VchanEndpoint {
    const pair = memoryVchanPair({ serverRead: options.readMin, serverWrite: options.writeMin });
    this.registry.set(options.path, { peer: options.peer, pair });
    return pair.server;
  }
  connect(options: { peer: DomainId; path: string }): VchanEndpoint {
    const entry = this.registry.get(options.path);
    if (!entry) throw new XenError('libxenvchan_client_init', 2, 'ENOENT', options.path);
    this.registry.delete(options.path);
    return entry.pair.connect();
  }
}

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('VchanStream over libxenvchan-like endpoints', () => {
  it('transfers random data intact through small rings with random chunk sizes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 0, maxLength: 100_000 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 6 }),
        fc.constantFrom(1024, 2048, 4096, 65536),
        async (data, sizes, ring) => {
          const { server, client } = streams({ serverRead: ring, serverWrite: ring });
          const toServer = readExactly(server, data.length);
          const toClient = readExactly(client, data.length);
          await Promise.all([
            writeInChunks(client, data, sizes, { end: false }),
            writeInChunks(server, data, [...sizes].reverse(), { end: false }),
          ]);
          expect(digest(await toServer)).toBe(digest(data));
          expect(digest(await toClient)).toBe(digest(data));
          client.end();
          await new Promise((resolve) => server.once('end', resolve).resume());
        },
      ),
      { numRuns: 30 },
    );
  });

  it('a slow reader does not grow memory: the writer stalls once ring and buffers are full', async () => {
    const { server, client } = streams({ serverRead: 4096 });
    server.pause();
    const accepted = await writeUntilStalled(client, Buffer.alloc(1000, 1), {
      stallMs: 50,
      limit: 10_000_000,
    });
    // In flight = server readable buffer (64 KiB) + ring (4 KiB) + client writable buffer (64 KiB).
    expect(accepted).toBeLessThan(64 * 1024 + 4096 + 64 * 1024 + 2000);
    expect(server.readableLength).toBeLessThanOrEqual(64 * 1024 + 4096);
    // The reader comes back and gets every byte.
    client.end();
    expect((await collect(server)).length).toBe(accepted);
  });

  it('the server can write before the client connects; the client reads it', async () => {
    const pair = memoryVchanPair();
    const server = new VchanStream(pair.server, { ...channel, role: 'server' });
    expect(server.state).toBe('waiting');
    server.write(Buffer.from('hello'));
    const connected = server.whenConnected();
    const client = new VchanStream(pair.connect(), { ...channel, role: 'client' });
    await connected;
    expect((await readExactly(client, 5)).toString()).toBe('hello');
  });

  it('the peer closing is EOF after everything it wrote, both ways', async () => {
    const a = streams();
    const data = randomBytes(50_000);
    a.server.end(data);
    expect(digest(await collect(a.client))).toBe(digest(data));
    const b = streams();
    b.client.end('bye');
    expect((await collect(b.server)).toString()).toBe('bye');
  });

  // Found on real Xen (lab/test/qubes-agents.lab.test.ts): a qrexec service refused at once sent
  // its exit code and closed while dom0 still wrote stdin; the write's EPIPE destroyed the stream
  // before the exit code in the ring was read. libxenvchan shows the closed flag before the event.
  it('bytes the peer wrote before closing still reach a reader when our next write finds it closed', async () => {
    const pair = memoryVchanPair();
    const server = new VchanStream(pair.server, { ...channel, role: 'server' });
    const peer = pair.connect();
    server.on('error', () => {});
    const reading = readAll(server);
    await new Promise((resolve) => setImmediate(resolve)); // the reader is waiting for data
    peer.write(Buffer.from('exit code'));
    peer.close();
    const written = new Promise<Error | null | undefined>((resolve) =>
      server.write(Buffer.from('stdin'), resolve),
    );
    expect(await reading).toEqual({ text: 'exit code', end: 'eof' });
    expect((await written) as VchanError).toMatchObject({ code: 'EPIPE' });
  });

  it('bytes the peer wrote before closing still reach a reader while our write waits on a full ring', async () => {
    const pair = memoryVchanPair({ serverRead: 1024 });
    const client = new VchanStream(pair.connect(), { ...channel, role: 'client' });
    client.on('error', () => {});
    const reading = readAll(client);
    const written = new Promise<Error | null | undefined>((resolve) =>
      client.write(Buffer.alloc(200_000), resolve),
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
    pair.server.write(Buffer.from('exit code'));
    pair.server.close();
    expect(await reading).toEqual({ text: 'exit code', end: 'eof' });
    expect((await written) as VchanError).toMatchObject({ code: 'EPIPE' });
  });

  it('a killed peer process is EOF for a reader (unmap notification clears its live byte)', async () => {
    const { pair, client } = streams();
    pair.killServer();
    await new Promise((resolve) => client.once('end', resolve).resume());
  });

  it('a writer blocked on a full ring fails with EPIPE when the peer dies, no hang', async () => {
    const { pair, client } = streams({ serverRead: 1024 });
    const error = new Promise<unknown>((resolve) => client.once('error', resolve));
    client.write(Buffer.alloc(200_000));
    await new Promise((resolve) => setTimeout(resolve, 10));
    pair.killServer();
    const e = await error;
    expect(e).toBeInstanceOf(VchanError);
    expect((e as VchanError).code).toBe('EPIPE');
  });

  it('a peer domain that vanished without a word is caught by the liveness check', async () => {
    const pair = memoryVchanPair();
    let alive = true;
    const client = new VchanStream(
      pair.connect(),
      { ...channel, role: 'client' },
      { liveness: { isPeerAlive: () => alive, intervalMs: 5 } },
    );
    const error = new Promise<unknown>((resolve) => client.once('error', resolve));
    alive = false;
    expect(((await error) as VchanError).code).toBe('EPEERDEAD');
  });

  it("write() from a 'data' handler never emits the next 'data' inside that handler", async () => {
    // A protocol answering a message from its 'data' handler must finish that message first
    // (QubesDB on Xen fired watches out of order when the answer's write() read the next bytes).
    const { server, client } = streams();
    const tick = () => new Promise((resolve) => setImmediate(resolve));
    const seen: string[] = [];
    let inside = false;
    client.on('data', (chunk: Buffer) => {
      seen.push(`${inside ? 'nested ' : ''}${chunk.toString()}`);
      if (chunk.toString() !== 'a') return;
      inside = true;
      server.write('b'); // in the client's ring now, its event a turn later
      client.write('answer a');
      inside = false;
    });
    client.pause(); // so 'a' is buffered and emitted from resume(), outside the stream's pump
    server.write('a');
    await tick();
    await tick();
    client.resume();
    for (let i = 0; i < 10 && seen.length < 2; i++) await tick();
    expect(seen).toEqual(['a', 'b']);
    server.destroy();
    client.destroy();
  });

  it('whenConnected rejects when the server is closed before any client came', async () => {
    const pair = memoryVchanPair();
    const server = new VchanStream(pair.server, { ...channel, role: 'server' });
    const waiting = server.whenConnected();
    server.destroy();
    await expect(waiting).rejects.toBeInstanceOf(VchanError);
  });
});

describe('listenVchan / connectVchan (Qubes port convention)', () => {
  it('publishes under /local/domain/<server>/data/vchan/<client>/<port> and the client finds it', async () => {
    const registry = new Map();
    const dom0 = { domid: 0, vchan: new FakeProvider(0, registry) };
    const vm = { domid: 7, vchan: new FakeProvider(7, registry) };
    const server = await listenVchan({ domain: dom0, peer: 7, port: 111 });
    expect([...registry.keys()]).toEqual(['/local/domain/0/data/vchan/7/111']);
    const client = await connectVchan({ domain: vm, peer: 0, port: 111, timeoutMs: 1000 });
    await server.whenConnected();
    expect(server.channel).toMatchObject({ localDomain: 0, remoteDomain: 7, port: 111, role: 'server' });
    expect(client.channel).toMatchObject({ localDomain: 7, remoteDomain: 0, port: 111, role: 'client' });
    client.write('ping');
    expect((await readExactly(server, 4)).toString()).toBe('ping');
  });

  it('the client waits for a server that starts later', async () => {
    const registry = new Map();
    const vm = { domid: 3, vchan: new FakeProvider(3, registry) };
    const connecting = connectVchan({ domain: vm, peer: 0, port: 512, timeoutMs: 2000 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const server = await listenVchan({
      domain: { domid: 0, vchan: new FakeProvider(0, registry) },
      peer: 3,
      port: 512,
    });
    const client = await connecting;
    server.write('x');
    expect((await readExactly(client, 1)).toString()).toBe('x');
  });

  it('the client gives up with ETIMEDOUT, carrying the last libxenvchan error', async () => {
    const vm = { domid: 3, vchan: new FakeProvider(3, new Map()) };
    const error = await connectVchan({ domain: vm, peer: 0, port: 512, timeoutMs: 30 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(VchanError);
    expect((error as VchanError).code).toBe('ETIMEDOUT');
    expect((error as VchanError).cause).toBeInstanceOf(XenError);
  });

  it('reports a timeout as ETIMEDOUT even when the timer fires before Date.now() reaches the deadline', async () => {
    const vm = { domid: 3, vchan: new FakeProvider(3, new Map()) };
    const frozen = Date.now();
    const clock = vi.spyOn(Date, 'now').mockReturnValue(frozen); // timers run, the wall clock lags
    try {
      const error = await connectVchan({ domain: vm, peer: 0, port: 512, timeoutMs: 30 }).catch(
        (e: unknown) => e,
      );
      expect((error as VchanError).code).toBe('ETIMEDOUT');
    } finally {
      clock.mockRestore();
    }
  });
});
