import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VchanStream } from '@moat/vchan';
import { connectVchanSocket, listenVchanSocket, socketVchanTransport } from '@moat/vchan/socket';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QubesDbDaemon } from './dom0.ts';
import { QubesDbError, QubesDbProtocolError } from './errors.ts';
import { connectQubesDb, type QubesDb } from './vm.ts';
import { encodeHeader, encodeMessage, HEADER_SIZE, QdbMsg } from './wire.ts';

/**
 * Both sides against a hand-driven peer speaking raw bytes over unix-socket vchan: the
 * exact bytes we send, and what a malformed message from the peer does (it ends that
 * connection with a QubesDbProtocolError; the process carries on).
 */

const VM = 9;
let directory: string;
const cleanups: (() => unknown)[] = [];
const quiet = () => {};
const text = (s: string) => new TextEncoder().encode(s);

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'qubesdb-peer-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(directory, { recursive: true, force: true });
});

/** Reads whole raw messages from a stream, without our validation. */
class RawPeer {
  #buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  #ended = false;
  constructor(readonly stream: VchanStream) {
    stream.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake();
    });
    stream.on('end', () => {
      this.#ended = true;
      this.#wake();
    });
    stream.on('error', () => {
      this.#ended = true;
      this.#wake();
    });
    cleanups.push(() => stream.destroy());
  }
  send(bytes: Uint8Array): void {
    this.stream.write(bytes);
  }
  /** The next message as {type, path, data}, or 'eof'. */
  async next(): Promise<{ type: number; path: string; data: string } | 'eof'> {
    for (;;) {
      if (this.#buffer.length >= HEADER_SIZE) {
        const length = this.#buffer.readUInt32LE(68);
        if (this.#buffer.length >= HEADER_SIZE + length) {
          const header = this.#buffer.subarray(0, HEADER_SIZE);
          const nul = header.indexOf(0, 1);
          const message = {
            type: header[0]!,
            path: header.subarray(1, nul < 0 ? 64 : nul).toString('latin1'),
            data: this.#buffer.subarray(HEADER_SIZE, HEADER_SIZE + length).toString('latin1'),
          };
          this.#buffer = this.#buffer.subarray(HEADER_SIZE + length);
          return message;
        }
      }
      if (this.#ended) return 'eof';
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  async raw(length: number): Promise<Buffer> {
    while (this.#buffer.length < length && !this.#ended) await new Promise((r) => setTimeout(r, 2));
    const out = this.#buffer.subarray(0, length);
    this.#buffer = this.#buffer.subarray(length);
    return out;
  }
  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

function rawHeader(type: number, path: string, dataLen: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE);
  bytes[0] = type;
  bytes.set(Buffer.from(path, 'latin1'), 1);
  new DataView(bytes.buffer).setUint32(68, dataLen, true);
  return bytes;
}

// ---------------------------------------------------------------- the VM side against a raw dom0

async function fakeDom0(): Promise<{ dom0: () => Promise<RawPeer>; vm: Promise<QubesDb> }> {
  const server = await listenVchanSocket({ directory, localDomain: 0, peer: VM, port: 111 });
  const vm = connectQubesDb({
    transport: socketVchanTransport({ directory, localDomain: VM }),
    timeoutMs: 5000,
    reconnect: false,
    log: quiet,
  });
  vm.then((db) => cleanups.push(() => db.close())).catch(() => undefined);
  const peer = new RawPeer(server);
  return {
    dom0: async () => {
      await server.whenConnected();
      return peer;
    },
    vm,
  };
}

/** A raw dom0 that has completed the initial synchronisation with `entries`. */
async function syncedVm(entries: [string, string][] = []): Promise<{ dom0: RawPeer; db: QubesDb }> {
  const { dom0: connected, vm } = await fakeDom0();
  const dom0 = await connected();
  expect(await dom0.next()).toEqual({ type: QdbMsg.CMD_MULTIREAD, path: '', data: '' });
  for (const [path, value] of entries) dom0.send(encodeMessage(QdbMsg.RESP_MULTIREAD, path, text(value)));
  dom0.send(encodeHeader(QdbMsg.RESP_MULTIREAD, '', 0));
  return { dom0, db: await vm };
}

function ended(db: QubesDb): Promise<Error | undefined> {
  return new Promise((resolve) => db.onEnd(resolve));
}

describe('VM side: the exact exchange with dom0', () => {
  it('opens with the 72-byte empty-path MULTIREAD', async () => {
    const { dom0: connected, vm } = await fakeDom0();
    const dom0 = await connected();
    const expected = new Uint8Array(72);
    expected[0] = 0x02;
    expect(new Uint8Array(await dom0.raw(72))).toEqual(expected);
    dom0.send(encodeHeader(QdbMsg.RESP_MULTIREAD, '', 0));
    expect((await vm).list()).toEqual([]);
  });

  it('loads a reverse-ordered dump and answers nothing to it', async () => {
    const { dom0, db } = await syncedVm([
      ['/qubes-ip', '10.137.0.9'],
      ['/name', 'vm'],
    ]);
    expect(db.list()).toEqual(['/name', '/qubes-ip']);
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/x', text('1')));
    // The first thing the VM says after the dump is the answer to that write.
    expect(await dom0.next()).toEqual({ type: QdbMsg.RESP_OK, path: '/x', data: '' });
  });

  it('answers CMD_WRITE and CMD_RM with RESP_OK carrying the same path', async () => {
    const { dom0, db } = await syncedVm([['/a/b', '1']]);
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/qubes-ip', text('10.0.0.1')));
    expect(await dom0.next()).toEqual({ type: QdbMsg.RESP_OK, path: '/qubes-ip', data: '' });
    dom0.send(encodeHeader(QdbMsg.CMD_RM, '/a/', 0));
    expect(await dom0.next()).toEqual({ type: QdbMsg.RESP_OK, path: '/a/', data: '' });
    expect(db.list()).toEqual(['/qubes-ip']);
  });

  it('forwards its own write and rm to dom0 as CMD_WRITE / CMD_RM', async () => {
    const { dom0, db } = await syncedVm([['/mine', 'x']]);
    db.write('/qubes-vm-state', 'up');
    expect(await dom0.next()).toEqual({ type: QdbMsg.CMD_WRITE, path: '/qubes-vm-state', data: 'up' });
    db.rm('/mine');
    expect(await dom0.next()).toEqual({ type: QdbMsg.CMD_RM, path: '/mine', data: '' });
    // dom0's answers are consumed quietly.
    dom0.send(encodeHeader(QdbMsg.RESP_OK, '/qubes-vm-state', 0));
    dom0.send(encodeHeader(QdbMsg.RESP_OK, '/mine', 0));
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/still', text('alive')));
    expect(await dom0.next()).toMatchObject({ type: QdbMsg.RESP_OK, path: '/still' });
    expect(db.stats.protocolErrors).toBe(0);
  });

  it('a value with a NUL byte costs a RESP_ERROR, and the link carries on (as in C)', async () => {
    const { dom0, db } = await syncedVm();
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/nul', Uint8Array.of(0x41, 0, 0x42)));
    expect(await dom0.next()).toEqual({ type: QdbMsg.RESP_ERROR, path: '/nul', data: '' });
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/ok', text('1')));
    expect(await dom0.next()).toMatchObject({ type: QdbMsg.RESP_OK, path: '/ok' });
    expect(db.read('/nul')).toBeUndefined();
  });

  it('a RESP_ERROR from dom0 is counted and the link carries on', async () => {
    const { dom0, db } = await syncedVm();
    dom0.send(encodeHeader(QdbMsg.RESP_ERROR, '/x', 0));
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/ok', text('1')));
    expect(await dom0.next()).toMatchObject({ type: QdbMsg.RESP_OK, path: '/ok' });
    expect(db.stats.errorResponses).toBe(1);
  });
});

describe('VM side: bad input from dom0 ends the connection with a clear error', () => {
  const duringSync: [string, Uint8Array[], string][] = [
    [
      'a truncated header, then EOF',
      [rawHeader(QdbMsg.RESP_MULTIREAD, '/a', 1).subarray(0, 40)],
      'early-eof',
    ],
    [
      'a shorter value than data_len says, then EOF',
      [rawHeader(QdbMsg.RESP_MULTIREAD, '/a', 10), text('12345')],
      'early-eof',
    ],
    ['an unknown message type', [rawHeader(14, '/a', 0)], 'unknown-type'],
    ['QDB_INVALID_CMD (0xff)', [rawHeader(0xff, '/a', 0)], 'unknown-type'],
    ['oversized data (data_len 3072)', [rawHeader(QdbMsg.RESP_MULTIREAD, '/a', 3072)], 'data-too-long'],
    ['a huge data_len', [rawHeader(QdbMsg.RESP_MULTIREAD, '/a', 0xfffffff0)], 'data-too-long'],
    [
      'a local-only command (CMD_READ) on vchan',
      [rawHeader(QdbMsg.CMD_READ, '/a', 0)],
      'type-not-allowed-on-link',
    ],
    [
      'RESP_ERROR_NOENT, which vchan never carries',
      [rawHeader(QdbMsg.RESP_ERROR_NOENT, '/a', 0)],
      'type-not-allowed-on-link',
    ],
    ['RESP_WATCH on vchan', [rawHeader(QdbMsg.RESP_WATCH, '/a', 0)], 'type-not-allowed-on-link'],
    ['a path with a space', [rawHeader(QdbMsg.RESP_MULTIREAD, '/a b', 0)], 'invalid-path'],
    ['a path with a leading dash', [rawHeader(QdbMsg.RESP_MULTIREAD, '-a', 0)], 'invalid-path'],
    [
      'a dump entry whose value holds a NUL',
      [encodeMessage(QdbMsg.RESP_MULTIREAD, '/a', Uint8Array.of(1, 0))],
      'invalid-value',
    ],
    [
      'a dump entry with a path that cannot be stored',
      [encodeMessage(QdbMsg.RESP_MULTIREAD, '/a/', text('x'))],
      'write-failed',
    ],
    ['a MULTIREAD sent to the VM', [rawHeader(QdbMsg.CMD_MULTIREAD, '', 0)], 'spurious-multiread'],
  ];
  for (const [what, bytes, reason] of duringSync) {
    it(`during synchronisation: ${what} → ${reason}`, async () => {
      const { dom0: connected, vm } = await fakeDom0();
      const dom0 = await connected();
      await dom0.next();
      for (const piece of bytes) dom0.send(piece);
      if (reason === 'early-eof') dom0.stream.end();
      const error = await vm.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QubesDbProtocolError);
      expect(error).toMatchObject({ reason, peerDomain: 0 });
      expect(await dom0.next()).toSatisfy(
        (m) => m === 'eof' || (typeof m === 'object' && m.type === QdbMsg.RESP_ERROR),
      );
    });
  }

  it('EOF before the dump ends rejects the connection', async () => {
    const { dom0: connected, vm } = await fakeDom0();
    const dom0 = await connected();
    await dom0.next();
    dom0.send(encodeMessage(QdbMsg.RESP_MULTIREAD, '/a', text('1')));
    dom0.stream.end();
    await expect(vm).rejects.toBeInstanceOf(QubesDbError);
  });

  it('after synchronisation: a RESP_MULTIREAD nobody asked for', async () => {
    const { dom0, db } = await syncedVm();
    const end = ended(db);
    dom0.send(encodeMessage(QdbMsg.RESP_MULTIREAD, '/late', text('x')));
    expect(await end).toMatchObject({ reason: 'spurious-multiread-response' });
    expect(db.read('/late')).toBeUndefined();
  });

  it('after synchronisation: an RM of a key the VM lacks gets NOENT, then the link ends (de-synchronised)', async () => {
    const { dom0, db } = await syncedVm();
    const end = ended(db);
    dom0.send(encodeHeader(QdbMsg.CMD_RM, '/missing', 0));
    expect(await dom0.next()).toEqual({ type: QdbMsg.RESP_ERROR_NOENT, path: '/missing', data: '' });
    expect(await end).toMatchObject({ reason: 'rm-noent' });
    expect(await dom0.next()).toBe('eof');
  });

  it('after synchronisation: a write to a path ending in / gets RESP_ERROR, then the link ends', async () => {
    const { dom0, db } = await syncedVm();
    const end = ended(db);
    dom0.send(encodeMessage(QdbMsg.CMD_WRITE, '/dir/', text('x')));
    expect(await dom0.next()).toEqual({ type: QdbMsg.RESP_ERROR, path: '/dir/', data: '' });
    expect(await end).toMatchObject({ reason: 'write-failed' });
  });

  it('after synchronisation: a RESP_ERROR carrying data ends the link', async () => {
    const { dom0, db } = await syncedVm();
    const end = ended(db);
    dom0.send(encodeMessage(QdbMsg.RESP_ERROR, '/x', text('junk')));
    expect(await end).toMatchObject({ reason: 'error-with-data' });
  });

  it('after synchronisation: a message cut short by EOF', async () => {
    const { dom0, db } = await syncedVm();
    const end = ended(db);
    dom0.send(rawHeader(QdbMsg.CMD_WRITE, '/x', 100));
    dom0.send(text('only a few'));
    dom0.stream.end();
    expect(await end).toMatchObject({ reason: 'early-eof' });
  });

  it('the replica stays readable after its link ended', async () => {
    const { dom0, db } = await syncedVm([['/name', 'vm']]);
    const end = ended(db);
    dom0.send(rawHeader(99, '/x', 0));
    await end;
    expect(db.read('/name')).toBe('vm');
    expect(() => db.write('/x', '1')).toThrow(QubesDbError);
  });
});

// ---------------------------------------------------------------- the dom0 daemon against a raw VM

async function daemonAndVm(
  initial: [string, string][] = [],
): Promise<{ daemon: QubesDbDaemon; vm: RawPeer; events: string[] }> {
  const daemon = new QubesDbDaemon({
    vmDomain: VM,
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    initial,
    log: quiet,
  });
  const events: string[] = [];
  daemon.onEvent((event) => {
    events.push(
      event.kind === 'disconnected'
        ? `disconnected:${(event.error as QubesDbProtocolError)?.reason ?? 'clean'}`
        : event.kind,
    );
  });
  await daemon.start();
  cleanups.push(() => daemon.stop());
  const stream = await connectVchanSocket({
    directory,
    localDomain: VM,
    peer: 0,
    port: 111,
    timeoutMs: 5000,
  });
  return { daemon, vm: new RawPeer(stream), events };
}

describe('dom0 daemon: the exact exchange with the VM', () => {
  it('answers the empty MULTIREAD with every entry in reverse order and the terminator', async () => {
    const { vm } = await daemonAndVm([
      ['/name', 'vm'],
      ['/qubes-ip', '10.137.0.9'],
      ['/default-user', 'user'],
    ]);
    vm.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0));
    const got = [await vm.next(), await vm.next(), await vm.next(), await vm.next()];
    expect(got).toEqual([
      { type: QdbMsg.RESP_MULTIREAD, path: '/qubes-ip', data: '10.137.0.9' },
      { type: QdbMsg.RESP_MULTIREAD, path: '/name', data: 'vm' },
      { type: QdbMsg.RESP_MULTIREAD, path: '/default-user', data: 'user' },
      { type: QdbMsg.RESP_MULTIREAD, path: '', data: '' },
    ]);
  });

  it('answers a prefix MULTIREAD in ascending order (raw prefix match)', async () => {
    const { vm } = await daemonAndVm([
      ['/qubes-ip', '1'],
      ['/qubes-iface', '2'],
      ['/name', 'x'],
    ]);
    vm.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '/qubes-i', 0));
    expect([await vm.next(), await vm.next(), await vm.next()]).toEqual([
      { type: QdbMsg.RESP_MULTIREAD, path: '/qubes-iface', data: '2' },
      { type: QdbMsg.RESP_MULTIREAD, path: '/qubes-ip', data: '1' },
      { type: QdbMsg.RESP_MULTIREAD, path: '', data: '' },
    ]);
  });

  it('forwards qubesd writes and removals only after the VM synchronised', async () => {
    const { daemon, vm } = await daemonAndVm([['/a', '1']]);
    daemon.write('/before-sync', 'x'); // in the dump, not pushed
    vm.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0));
    expect(await vm.next()).toMatchObject({ path: '/before-sync' });
    expect(await vm.next()).toMatchObject({ path: '/a' });
    expect(await vm.next()).toMatchObject({ path: '' });
    daemon.write('/qubes-ip', '10.0.0.2');
    daemon.rm('/a');
    expect(daemon.rm('/never')).toBe(false); // nothing removed, nothing sent
    daemon.write('/z', '');
    expect([await vm.next(), await vm.next(), await vm.next()]).toEqual([
      { type: QdbMsg.CMD_WRITE, path: '/qubes-ip', data: '10.0.0.2' },
      { type: QdbMsg.CMD_RM, path: '/a', data: '' },
      { type: QdbMsg.CMD_WRITE, path: '/z', data: '' },
    ]);
  });

  it('stores VM writes and answers RESP_OK; a NUL value gets RESP_ERROR and the link carries on', async () => {
    const { daemon, vm } = await daemonAndVm();
    vm.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0));
    await vm.next();
    vm.send(encodeMessage(QdbMsg.CMD_WRITE, '/qubes-vm-state', text('up')));
    expect(await vm.next()).toEqual({ type: QdbMsg.RESP_OK, path: '/qubes-vm-state', data: '' });
    vm.send(encodeMessage(QdbMsg.CMD_WRITE, '/nul', Uint8Array.of(0x41, 0)));
    expect(await vm.next()).toEqual({ type: QdbMsg.RESP_ERROR, path: '/nul', data: '' });
    vm.send(encodeHeader(QdbMsg.CMD_RM, '/qubes-vm-state', 0));
    expect(await vm.next()).toEqual({ type: QdbMsg.RESP_OK, path: '/qubes-vm-state', data: '' });
    expect(daemon.list()).toEqual([]);
  });
});

describe('dom0 daemon: bad input from the VM ends that connection, and the daemon serves the next one', () => {
  const cases: [string, Uint8Array[], string, boolean][] = [
    // what, bytes after the MULTIREAD, reason, whether the C daemon answers before closing
    ['a second MULTIREAD', [encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0)], 'spurious-multiread', true],
    [
      'a RESP_MULTIREAD',
      [encodeMessage(QdbMsg.RESP_MULTIREAD, '/a', text('x'))],
      'spurious-multiread-response',
      false,
    ],
    ['an RM of a missing key', [encodeHeader(QdbMsg.CMD_RM, '/missing', 0)], 'rm-noent', true],
    [
      'a write to a relative path',
      [encodeMessage(QdbMsg.CMD_WRITE, 'relative', text('x'))],
      'write-failed',
      true,
    ],
    ['an unknown type', [rawHeader(42, '/a', 0)], 'unknown-type', false],
    [
      'a local-only command (CMD_WATCH)',
      [rawHeader(QdbMsg.CMD_WATCH, '/a', 0)],
      'type-not-allowed-on-link',
      false,
    ],
    ['oversized data', [rawHeader(QdbMsg.CMD_WRITE, '/a', 4096)], 'data-too-long', false],
    ['a bad path character', [rawHeader(QdbMsg.CMD_WRITE, '/a*b', 0)], 'invalid-path', false],
    [
      'a truncated header then EOF',
      [rawHeader(QdbMsg.CMD_WRITE, '/a', 0).subarray(0, 10)],
      'early-eof',
      false,
    ],
    ['a short value then EOF', [rawHeader(QdbMsg.CMD_WRITE, '/a', 20), text('abc')], 'early-eof', false],
  ];
  for (const [what, bytes, reason, answers] of cases) {
    it(`${what} → ${reason}`, async () => {
      const { daemon, vm, events } = await daemonAndVm([['/name', 'vm']]);
      vm.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0));
      await vm.next();
      await vm.next();
      for (const piece of bytes) vm.send(piece);
      if (reason === 'early-eof') vm.stream.end();
      const disconnected = await daemon.nextEvent('disconnected', 5000);
      expect(disconnected.error).toBeInstanceOf(QubesDbProtocolError);
      expect(disconnected.error).toMatchObject({ reason, peerDomain: VM });
      if (answers) expect(await vm.next()).toMatchObject({ type: expect.any(Number) });
      expect(events).toContain(`disconnected:${reason}`);
      // The daemon is still there: a well-behaved VM connects and syncs.
      const db = await connectQubesDb({
        transport: socketVchanTransport({ directory, localDomain: VM }),
        timeoutMs: 5000,
        log: quiet,
      });
      cleanups.push(() => db.close());
      expect(db.read('/name')).toBe('vm');
    });
  }
});

describe('random bytes from the peer never take the process down', () => {
  // Random junk, or valid-looking headers with random fields, after a good start.
  const junk = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 3000 }),
    fc
      .record({
        type: fc.integer({ min: 0, max: 20 }),
        path: fc.constantFrom('/a', '/a/', '', '/x y', '-a', '/qubes-ip', `/${'p'.repeat(70)}`),
        dataLen: fc.constantFrom(0, 1, 5, 3071, 3072, 70000),
        data: fc.uint8Array({ maxLength: 80 }),
      })
      .map(({ type, path, dataLen, data }) =>
        Buffer.concat([rawHeader(type, path.slice(0, 63), dataLen), data]),
      ),
  );

  it('the VM side either carries on or ends that connection with a QubesDbProtocolError', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(junk, { minLength: 1, maxLength: 4 }), async (pieces) => {
        const { dom0, db } = await syncedVm([['/a', '1']]);
        const end = ended(db);
        for (const piece of pieces) dom0.send(piece);
        dom0.stream.end();
        const error = await end;
        // dom0 closed at the end, so the link always ends; any error must be a protocol error.
        if (error) expect(error).toBeInstanceOf(QubesDbProtocolError);
        expect(db.read('/a') === undefined || typeof db.read('/a') === 'string').toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('the dom0 daemon ends only that connection, and serves the next VM', async () => {
    const { daemon, vm } = await daemonAndVm([['/name', 'vm']]);
    // The daemon serves one VM connection at a time: let the first one go.
    const first = daemon.nextEvent('disconnected', 5000);
    vm.stream.destroy();
    await first;
    await fc.assert(
      fc.asyncProperty(fc.array(junk, { minLength: 1, maxLength: 4 }), async (pieces) => {
        const stream = await connectVchanSocket({
          directory,
          localDomain: VM,
          peer: 0,
          port: 111,
          timeoutMs: 5000,
        });
        const peer = new RawPeer(stream);
        peer.send(encodeHeader(QdbMsg.CMD_MULTIREAD, '', 0));
        const disconnected = daemon.nextEvent('disconnected', 5000);
        for (const piece of pieces) peer.send(piece);
        peer.stream.end();
        const event = await disconnected;
        if (event.error) expect(event.error).toBeInstanceOf(QubesDbProtocolError);
      }),
      { numRuns: 25 },
    );
    const db = await connectQubesDb({
      transport: socketVchanTransport({ directory, localDomain: VM }),
      timeoutMs: 5000,
      log: quiet,
    });
    cleanups.push(() => db.close());
    expect(db.read('/name')).toBe('vm');
  });
});
