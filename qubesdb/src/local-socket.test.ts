import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QubesDbDaemon } from './dom0.ts';
import { QubesDbError } from './errors.ts';
import { QubesDbLocalClient } from './local-client.ts';
import { type LocalSocketServer, serveLocalSocket } from './local-socket.ts';
import { connectQubesDb } from './vm.ts';
import { encodeHeader, encodeMessage, HEADER_SIZE, QdbMsg } from './wire.ts';

let directory: string;
let daemon: QubesDbDaemon;
let local: LocalSocketServer;
const cleanups: (() => unknown)[] = [];
const quiet = () => {};

beforeEach(async () => {
  directory = mkdtempSync(join(tmpdir(), 'qubesdb-local-'));
  daemon = new QubesDbDaemon({
    vmDomain: 7,
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    initial: [
      ['/name', 'work'],
      ['/qubes-ip', '10.137.0.7'],
      ['/a/b', '1'],
      ['/a/c', '2'],
    ],
    log: quiet,
  });
  local = await serveLocalSocket(daemon, {
    path: join(directory, 'qubesdb.work.sock'),
    readOnlyPath: join(directory, 'qubesdb.work.ro.sock'),
    log: quiet,
  });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await local.close();
  await daemon.stop();
  rmSync(directory, { recursive: true, force: true });
});

async function client(readOnly = false): Promise<QubesDbLocalClient> {
  const c = await QubesDbLocalClient.connect(
    join(directory, readOnly ? 'qubesdb.work.ro.sock' : 'qubesdb.work.sock'),
  );
  cleanups.push(() => c.close());
  return c;
}

/** A raw connection to the rw socket, reading whole messages. */
async function raw(): Promise<{ socket: Socket; next: () => Promise<string | 'closed'> }> {
  const socket = createConnection(join(directory, 'qubesdb.work.sock'));
  await new Promise((resolve) => socket.once('connect', resolve));
  cleanups.push(() => socket.destroy());
  let buffer = Buffer.alloc(0);
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
  });
  socket.on('close', () => {
    closed = true;
  });
  socket.on('error', () => {});
  const next = async (): Promise<string | 'closed'> => {
    for (let i = 0; i < 2000; i++) {
      if (buffer.length >= HEADER_SIZE) {
        const length = buffer.readUInt32LE(68);
        if (buffer.length >= HEADER_SIZE + length) {
          const nul = buffer.indexOf(0, 1);
          const path = buffer.subarray(1, Math.min(nul, 65)).toString('latin1');
          const out =
            `${buffer[0]} ${path} ${buffer.subarray(HEADER_SIZE, HEADER_SIZE + length).toString()}`.trim();
          buffer = buffer.subarray(HEADER_SIZE + length);
          return out;
        }
      }
      if (closed) return 'closed';
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    throw new Error('no reply');
  };
  return { socket, next };
}

describe('the dom0 daemon local socket (what qubesd and qubesdb-read/-write use)', () => {
  it('read, write, rm, list and multiread', async () => {
    const c = await client();
    expect(await c.read('/name')).toBe('work');
    expect(await c.read('/missing')).toBeUndefined();
    await c.write('/qubes-vm-updateable', 'False');
    expect(daemon.read('/qubes-vm-updateable')).toBe('False');
    expect(await c.list('/a/')).toEqual(['/a/b', '/a/c']);
    expect([...(await c.multiread('/qubes-'))]).toEqual([
      ['/qubes-ip', '10.137.0.7'],
      ['/qubes-vm-updateable', 'False'],
    ]);
    // The empty prefix dumps everything in reverse order, as for the VM.
    expect([...(await c.multiread(''))].map(([p]) => p)).toEqual([
      '/qubes-vm-updateable',
      '/qubes-ip',
      '/name',
      '/a/c',
      '/a/b',
    ]);
    expect(await c.rm('/a/')).toBe(true);
    expect(await c.rm('/a/')).toBe(false);
    expect(await c.list('')).toEqual(['/name', '/qubes-ip', '/qubes-vm-updateable']);
  });

  it('answers READ with RESP_READ carrying the value (exact bytes)', async () => {
    const { socket, next } = await raw();
    socket.write(encodeHeader(QdbMsg.CMD_READ, '/name', 0));
    expect(await next()).toBe(`${QdbMsg.RESP_READ} /name work`);
    socket.write(encodeHeader(QdbMsg.CMD_READ, '/nope', 0));
    expect(await next()).toBe(`${QdbMsg.RESP_ERROR_NOENT} /nope`);
  });

  it('watches fire RESP_WATCH, interleaved with replies, one per registration; unwatch stops them', async () => {
    const c = await client();
    const events: string[] = [];
    c.onWatch((path) => events.push(path));
    await c.watch('/qubes-ip');
    await c.watch('/a/');
    await c.watch('/a/');
    daemon.write('/qubes-ip', '10.0.0.1');
    daemon.write('/a/d', 'x');
    daemon.write('/unwatched', 'x');
    // The events travel with (before) the reply to the next request.
    expect(await c.list('/a/')).toEqual(['/a/b', '/a/c', '/a/d']);
    expect(events).toEqual(['/qubes-ip', '/a/d', '/a/d']);
    expect(await c.unwatch('/a/')).toBe(true);
    expect(await c.unwatch('/never')).toBe(false);
    daemon.rm('/a/');
    await c.read('/name');
    expect(events).toEqual(['/qubes-ip', '/a/d', '/a/d', '/a/']);
  });

  it('the read-only socket refuses WRITE and RM, and still reads', async () => {
    const ro = await client(true);
    await expect(ro.write('/x', '1')).rejects.toBeInstanceOf(QubesDbError);
    await expect(ro.rm('/name')).rejects.toBeInstanceOf(QubesDbError);
    expect(await ro.read('/name')).toBe('work');
    expect(daemon.read('/x')).toBeUndefined();
  });

  it('writes through the socket reach the VM, as qubesd writes do', async () => {
    await daemon.start();
    const db = await connectQubesDb({
      transport: socketVchanTransport({ directory, localDomain: 7 }),
      timeoutMs: 5000,
      log: quiet,
    });
    cleanups.push(() => db.close());
    const seen = new Promise<string>((resolve) => db.watch('/qubes-service/', resolve));
    const c = await client();
    await c.write('/qubes-service/qubes-firewall', '1');
    expect(await seen).toBe('/qubes-service/qubes-firewall');
    expect(db.read('/qubes-service/qubes-firewall')).toBe('1');
  });

  it('an invalid header costs a RESP_ERROR after its data is discarded; the client stays', async () => {
    const { socket, next } = await raw();
    const bad = encodeHeader(QdbMsg.CMD_READ, '/x', 0);
    bad[0] = QdbMsg.RESP_OK; // responses are not accepted from clients
    new DataView(bad.buffer).setUint32(68, 5000, true);
    socket.write(bad);
    socket.write(Buffer.alloc(5000, 0x41)); // more than QDB_MAX_DATA: still discarded, never buffered
    expect(await next()).toBe(`${QdbMsg.RESP_ERROR} /x`);
    socket.write(encodeHeader(QdbMsg.CMD_READ, '/a b', 0)); // bad path character
    expect(await next()).toBe(`${QdbMsg.RESP_ERROR} /a b`);
    const unknown = encodeHeader(QdbMsg.CMD_READ, '/x', 0);
    unknown[0] = 99;
    socket.write(unknown);
    expect(await next()).toBe(`${QdbMsg.RESP_ERROR} /x`);
    socket.write(encodeMessage(QdbMsg.CMD_WRITE, '/nul', Uint8Array.of(0x41, 0)));
    expect(await next()).toBe(`${QdbMsg.RESP_ERROR} /nul`);
    socket.write(encodeHeader(QdbMsg.CMD_READ, '/name', 0));
    expect(await next()).toBe(`${QdbMsg.RESP_READ} /name work`);
  });

  it('a write to a directory path gets RESP_ERROR and the client is dropped (as in C)', async () => {
    const { socket, next } = await raw();
    socket.write(encodeMessage(QdbMsg.CMD_WRITE, '/dir/', new TextEncoder().encode('x')));
    expect(await next()).toBe(`${QdbMsg.RESP_ERROR} /dir/`);
    expect(await next()).toBe('closed');
  });

  it('CMD_READ with data drops the client without a reply (as in C)', async () => {
    const { socket, next } = await raw();
    socket.write(encodeMessage(QdbMsg.CMD_READ, '/name', new TextEncoder().encode('junk')));
    expect(await next()).toBe('closed');
    // Others are unaffected.
    expect(await (await client()).read('/name')).toBe('work');
  });
});
