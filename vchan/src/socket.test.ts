import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError } from './errors.ts';
import { connectVchanSocket, listenVchanSocket } from './socket.ts';
import type { VchanStream } from './stream.ts';
import { collect, collectWithPauses, readExactly, writeInChunks, writeUntilStalled } from './test-support.ts';

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vchan-'));
});
afterEach(() => {
  rmSync(directory, { recursive: true, force: true });
});

async function pair(port = 111): Promise<{ server: VchanStream; client: VchanStream }> {
  const server = await listenVchanSocket({ directory, localDomain: 0, peer: 5, port });
  const client = await connectVchanSocket({ directory, localDomain: 5, peer: 0, port, timeoutMs: 5000 });
  await server.whenConnected();
  return { server, client };
}

describe('vchan over unix sockets (qubes-core-vchan-socket compatible)', () => {
  it('names the socket vchan.<server>.<client>.<port>.sock in the directory', async () => {
    const server = await listenVchanSocket({ directory, localDomain: 0, peer: 7, port: 512 });
    expect(existsSync(join(directory, 'vchan.0.7.512.sock'))).toBe(true);
    expect(server.state).toBe('waiting');
    server.destroy();
  });

  it('carries raw bytes with no framing: a plain socket peer sees exactly what was written', async () => {
    const server = await listenVchanSocket({ directory, localDomain: 0, peer: 3, port: 6000 });
    const raw = createConnection(join(directory, 'vchan.0.3.6000.sock'));
    const received: Buffer[] = [];
    raw.on('data', (chunk: Buffer) => received.push(chunk));
    await server.whenConnected();
    server.write(Buffer.from([0x08, 0x00, 0x01, 0x00]));
    raw.write(Buffer.from('hello'));
    const [chunk] = await new Promise<Buffer[]>((resolve) =>
      server.once('data', (c: Buffer) => resolve([c])),
    );
    expect(chunk?.toString()).toBe('hello');
    server.end();
    await new Promise((resolve) => raw.on('end', resolve));
    expect(Buffer.concat(received)).toEqual(Buffer.from([0x08, 0x00, 0x01, 0x00]));
    raw.destroy();
  });

  it('connects to a server that a plain socket listener (like the C library) provides', async () => {
    const path = join(directory, 'vchan.0.9.111.sock');
    const peers: Socket[] = [];
    const server = createServer((socket) => {
      peers.push(socket);
      socket.on('error', () => {}); // the test ends the channel abruptly
      socket.pipe(socket); // echo
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const client = await connectVchanSocket({
      directory,
      localDomain: 9,
      peer: 0,
      port: 111,
      timeoutMs: 5000,
    });
    // vchan has no half-close: read the echo before ending (end() closes both directions).
    client.write(Buffer.from('ping'));
    expect((await readExactly(client, 4)).toString()).toBe('ping');
    client.end();
    for (const peer of peers) peer.destroy();
    server.close();
  });

  it('a client started before the server retries until the server listens', async () => {
    const connecting = connectVchanSocket({ directory, localDomain: 2, peer: 0, port: 111, timeoutMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    const server = await listenVchanSocket({ directory, localDomain: 0, peer: 2, port: 111 });
    const client = await connecting;
    await server.whenConnected();
    client.end('x');
    expect((await collect(server)).toString()).toBe('x');
  });

  it('a client gives up with ETIMEDOUT when no server appears', async () => {
    const error = await connectVchanSocket({
      directory,
      localDomain: 2,
      peer: 0,
      port: 1,
      timeoutMs: 50,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VchanError);
    expect((error as VchanError).code).toBe('ETIMEDOUT');
  });

  it('transfers random data intact in both directions with random chunk sizes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 0, maxLength: 300_000 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }),
        async (data, sizes) => {
          const { server, client } = await pair();
          // Each side ends only after it has everything: ending closes both directions.
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
      { numRuns: 15 },
    );
  });

  it('moves 16 MiB with a checksum', async () => {
    const { server, client } = await pair();
    const data = randomBytes(16 * 1024 * 1024);
    const received = collect(server);
    await writeInChunks(client, data, [65536]);
    expect(digest(await received)).toBe(digest(data));
  });

  it('a slow reader keeps memory bounded: the writer stalls', async () => {
    const { server, client } = await pair();
    server.pause();
    const accepted = await writeUntilStalled(client, Buffer.alloc(16 * 1024, 7), {
      stallMs: 100,
      limit: 256 * 1024 * 1024,
    });
    // Bounded by the buffers on the way: stream buffers and endpoint buffers on both
    // sides (64 KiB each, plus one socket read), and the kernel's socket buffers.
    expect(accepted).toBeLessThan(16 * 1024 * 1024);
    // A reader that starts later gets everything.
    client.end();
    const all = await collect(server);
    expect(all.length).toBe(accepted);
  });

  it('small buffers (4 KiB, below the socket high-water mark) never lose a wake-up', async () => {
    const server = await listenVchanSocket({
      directory,
      localDomain: 0,
      peer: 6,
      port: 513,
      readMin: 4096,
      writeMin: 4096,
    });
    const client = await connectVchanSocket({
      directory,
      localDomain: 6,
      peer: 0,
      port: 513,
      timeoutMs: 5000,
      readMin: 4096,
      writeMin: 4096,
    });
    await server.whenConnected();
    server.pause();
    // Fill the kernel's socket buffers and ours, then let the reader go.
    const accepted = await writeUntilStalled(client, Buffer.alloc(3000, 9), {
      stallMs: 100,
      limit: 64 * 1024 * 1024,
    });
    const data = randomBytes(2 * 1024 * 1024);
    const all = collect(server);
    await writeInChunks(client, data, [4096, 1]);
    expect((await all).length).toBe(accepted + data.length);
  });

  it('delivers everything with random buffer sizes and a reader that pauses at random', async () => {
    let port = 600;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1024, 4096, 8192, 65536),
        fc.constantFrom(1024, 4096, 8192, 65536),
        fc.uint8Array({ minLength: 1, maxLength: 400_000 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 10 }),
        async (readMin, writeMin, data, pauses) => {
          port++;
          const server = await listenVchanSocket({
            directory,
            localDomain: 0,
            peer: 2,
            port,
            readMin,
            writeMin,
          });
          const client = await connectVchanSocket({
            directory,
            localDomain: 2,
            peer: 0,
            port,
            timeoutMs: 5000,
            readMin,
            writeMin,
          });
          await server.whenConnected();
          const received = collectWithPauses(server, pauses);
          await writeInChunks(client, data, [5000, 1, 70_000]);
          expect(digest(await received)).toBe(digest(data));
        },
      ),
      { numRuns: 12 },
    );
  });

  it('closing one end is EOF at the other, both ways', async () => {
    const a = await pair(1);
    a.client.end('from client');
    expect((await collect(a.server)).toString()).toBe('from client');
    const b = await pair(2);
    b.server.end('from server');
    expect((await collect(b.client)).toString()).toBe('from server');
  });

  it('data written just before close is delivered before EOF', async () => {
    const { server, client } = await pair();
    const data = randomBytes(200_000);
    client.write(data);
    client.end();
    expect(digest(await collect(server))).toBe(digest(data));
  });

  it('writing after the peer closed fails with EPIPE instead of hanging', async () => {
    const { server, client } = await pair();
    server.destroy();
    // Not reading: the client has not consumed the EOF yet, its writable side is still open.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(client.state).toBe('closed');
    const error = await new Promise<unknown>((resolve) => {
      client.on('error', resolve);
      client.write(Buffer.alloc(10), (e) => e && resolve(e));
    });
    expect(error).toBeInstanceOf(VchanError);
  });

  it('peer death with a reset is an error at the survivor, not a hang', async () => {
    const server = await listenVchanSocket({ directory, localDomain: 0, peer: 4, port: 111 });
    const raw = createConnection(join(directory, 'vchan.0.4.111.sock'));
    raw.pause();
    await server.whenConnected();
    await new Promise((resolve) => raw.once('connect', resolve));
    // A process that dies with unread data makes the kernel reset the connection (ECONNRESET).
    server.write(Buffer.alloc(1000));
    await new Promise((resolve) => setTimeout(resolve, 20));
    raw.destroy();
    const outcome = await new Promise<string>((resolve) => {
      server.on('error', (e: VchanError) => resolve(`error ${e.code}`));
      server.on('end', () => resolve('end'));
      server.resume();
    });
    expect(['error ECONNRESET', 'end']).toContain(outcome);
  });

  it('a peer process killed with SIGKILL is EOF or an error at the survivor, never a hang', async () => {
    const server = await listenVchanSocket({ directory, localDomain: 0, peer: 8, port: 111 });
    // A plain node child as the C-like peer: connects, sends a little, then hangs until killed.
    const script = `const s = require('node:net').createConnection(process.argv[1]);
      s.on('connect', () => { s.write('alive'); }); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script, join(directory, 'vchan.0.8.111.sock')], {
      stdio: 'ignore',
    });
    await server.whenConnected();
    expect((await readExactly(server, 5)).toString()).toBe('alive');
    server.write(Buffer.alloc(100_000)); // unread by the child when it dies
    const outcome = new Promise<string>((resolve) => {
      server.once('error', (e: VchanError) => resolve(`error ${e.code}`));
      server.once('end', () => resolve('end'));
    });
    server.resume();
    child.kill('SIGKILL');
    expect(['end', 'error ECONNRESET', 'error EPIPE']).toContain(await outcome);
  });

  it('a second client is turned away at once (the server serves one peer)', async () => {
    const { server } = await pair();
    const second = createConnection(join(directory, 'vchan.0.5.111.sock'));
    const outcome = await new Promise<string>((resolve) => {
      second.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      second.on('close', () => resolve('closed'));
    });
    expect(['closed', 'ECONNREFUSED', 'ENOENT', 'ECONNRESET']).toContain(outcome);
    server.destroy();
  });
});

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
