/**
 * The hostile-server suite: a scripted fake server sends what a broken or malicious xenstored
 * could, and each case checks that the client fails with a clear error (never a hang, a crash
 * or an unbounded allocation). Runs against fakes only; see hostile-server.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenstoreClient } from './client.ts';
import {
  XenstoreConnectionError,
  XenstoreError,
  XenstoreProtocolError,
  XenstoreTimeoutError,
} from './errors.ts';
import { TransportListeners, type XenstoreTransport } from './transport.ts';
import { SocketTransport } from './transports/socket.ts';
import {
  decodeMessage,
  encodeMessage,
  Field,
  HEADER_SIZE,
  joinStrings,
  type Message,
  utf8,
  XsType,
} from './wire.ts';

/** A transport whose "server" is a script: each request goes to `onRequest`, which answers with raw bytes. */
export class ScriptedServer implements XenstoreTransport {
  readonly description = 'scripted hostile server';
  maxRequestPayload = 4096;
  readonly requests: Message[] = [];
  private readonly listeners = new TransportListeners();
  closed = false;
  throwOnSend: Error | undefined;

  constructor(private readonly onRequest: (req: Message, server: ScriptedServer) => void) {}

  send(message: Uint8Array): void {
    if (this.throwOnSend) throw this.throwOnSend;
    if (this.closed) throw new Error('closed');
    const m = decodeMessage(message);
    assert.ok(m.ok, 'the client sent a malformed message');
    this.requests.push(m.value);
    queueMicrotask(() => this.onRequest(m.value, this));
  }

  /** Sends raw bytes to the client (later, like real I/O). */
  raw(bytes: Uint8Array): void {
    queueMicrotask(() => {
      if (this.closed) return;
      this.listeners.data(bytes);
    });
  }

  reply(req: Message, type: number, payload: Uint8Array, reqId = req.reqId): void {
    this.raw(encodeMessage(type, reqId, req.txId, payload, 1 << 20));
  }

  ok(req: Message): void {
    this.reply(req, req.type, joinStrings(['OK']));
  }

  /** The peer goes away (after anything already sent). */
  hangUp(error?: Error): void {
    queueMicrotask(() => {
      if (this.closed) return;
      this.closed = true;
      this.listeners.close(error);
    });
  }

  onData(listener: (chunk: Uint8Array) => void): () => void {
    return this.listeners.onData(listener);
  }

  onClose(listener: (error?: Error) => void): () => void {
    return this.listeners.onClose(listener);
  }

  close(): void {
    this.hangUp();
  }
}

function header(type: number, reqId: number, len: number): Uint8Array {
  const h = new Uint8Array(HEADER_SIZE);
  const v = new DataView(h.buffer);
  v.setUint32(Field.TYPE, type, true);
  v.setUint32(Field.REQ_ID, reqId, true);
  v.setUint32(Field.LEN, len, true);
  return h;
}

/** Runs `promise` with a bound: a hang fails the case instead of the test runner. */
async function settle<T>(
  promise: Promise<T>,
  ms = 2000,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new assert.AssertionError({ message: `hung for ${ms} ms` })), ms);
  });
  try {
    return { ok: true, value: await Promise.race([promise, hang]) };
  } catch (error) {
    if (error instanceof assert.AssertionError && /hung for/.test(error.message)) throw error;
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

async function expectConnectionError(
  promise: Promise<unknown>,
  reason: RegExp,
): Promise<XenstoreConnectionError> {
  const r = await settle(promise);
  assert.ok(!r.ok, 'expected a failure');
  assert.ok(
    r.error instanceof XenstoreConnectionError,
    `expected XenstoreConnectionError, got ${String(r.error)}`,
  );
  assert.match(
    `${r.error.message} ${r.error.cause instanceof XenstoreProtocolError ? r.error.cause.reason : ''}`,
    reason,
  );
  return r.error;
}

async function expectProtocolError(promise: Promise<unknown>, reason: string): Promise<void> {
  const r = await settle(promise);
  assert.ok(!r.ok, 'expected a failure');
  assert.ok(
    r.error instanceof XenstoreProtocolError,
    `expected XenstoreProtocolError, got ${String(r.error)}`,
  );
  assert.equal(r.error.reason, reason);
}

export interface HostileCase {
  id: string;
  run(): Promise<void>;
}

const cases: [string, () => Promise<void>][] = [
  [
    'truncated-header-then-close',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        srv.raw(header(req.type, req.reqId, 2).subarray(0, 10));
        srv.hangUp();
      });
      const x = new XenstoreClient(s);
      await expectConnectionError(x.read('/a'), /middle of a message|truncated/);
      assert.equal(x.connected, false);
    },
  ],
  [
    'dies-mid-message',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        const full = encodeMessage(XsType.READ, req.reqId, 0, utf8('a value of some length'));
        srv.raw(full.subarray(0, HEADER_SIZE + 5));
        srv.hangUp(new Error('ECONNRESET'));
      });
      const x = new XenstoreClient(s);
      await expectConnectionError(x.read('/a'), /middle of a message|truncated/);
    },
  ],
  [
    'oversized-length-field',
    async () => {
      for (const len of [4097, 1 << 20, 0xffffffff]) {
        const s = new ScriptedServer((req, srv) => srv.raw(header(XsType.READ, req.reqId, len)));
        const x = new XenstoreClient(s);
        const first = x.read('/a');
        const second = x.read('/b');
        await expectConnectionError(first, /oversized-length/);
        await expectConnectionError(second, /oversized-length/);
        await expectConnectionError(x.read('/c'), /protocol violation/);
        assert.equal(s.closed, true, 'the client closes a connection whose framing is lost');
      }
    },
  ],
  [
    'reply-with-unknown-req-id',
    async () => {
      const s = new ScriptedServer((req, srv) => srv.reply(req, XsType.READ, utf8('v'), req.reqId + 1000));
      const x = new XenstoreClient(s);
      const pending = [x.read('/a'), x.read('/b')];
      await expectConnectionError(pending[0]!, /unknown-req-id/);
      await expectConnectionError(pending[1]!, /unknown-req-id/);
    },
  ],
  [
    'reply-with-unknown-type',
    async () => {
      const s = new ScriptedServer((req, srv) => srv.reply(req, 1234, joinStrings(['OK'])));
      const x = new XenstoreClient(s);
      await expectConnectionError(x.write('/a', 'v'), /unknown-type/);
    },
  ],
  [
    'reply-of-another-type',
    async () => {
      const s = new ScriptedServer((req, srv) => srv.reply(req, XsType.DIRECTORY, joinStrings(['x'])));
      const x = new XenstoreClient(s);
      await expectConnectionError(x.read('/a'), /reply-type-mismatch/);
    },
  ],
  [
    'garbage-in-directory-reply',
    async () => {
      const replies = [
        new Uint8Array([0x61, 0x62]), // no terminating NUL
        joinStrings(['ok', 'with/slash']),
        joinStrings(['ok', '']), // an empty name
        joinStrings(['sp ace']),
        new Uint8Array([0xff, 0xfe, 0]), // not UTF-8
        joinStrings(['x'.repeat(3000)]),
      ];
      let i = 0;
      const s = new ScriptedServer((req, srv) => {
        if (req.type === XsType.DIRECTORY) srv.reply(req, XsType.DIRECTORY, replies[i++]!);
        else srv.reply(req, XsType.READ, utf8('fine'));
      });
      const x = new XenstoreClient(s);
      for (let n = 0; n < replies.length; n++)
        await expectProtocolError(x.directory('/d'), 'malformed-directory');
      const r = await settle(x.readString('/still'));
      assert.ok(r.ok && r.value === 'fine', 'a malformed payload costs its request, not the connection');
    },
  ],
  [
    'directory-parts-that-never-end',
    async () => {
      let generation = 0;
      const s = new ScriptedServer((req, srv) => {
        if (req.type === XsType.DIRECTORY) srv.reply(req, XsType.ERROR, joinStrings(['E2BIG']));
        else srv.reply(req, XsType.DIRECTORY_PART, joinStrings([String(generation++), 'a']));
      });
      const x = new XenstoreClient(s);
      await expectProtocolError(x.directory('/d'), 'unstable-directory');
      const t = new ScriptedServer((req, srv) => {
        if (req.type === XsType.DIRECTORY) srv.reply(req, XsType.ERROR, joinStrings(['E2BIG']));
        else srv.reply(req, XsType.DIRECTORY_PART, joinStrings(['7']));
      });
      await expectProtocolError(new XenstoreClient(t).directory('/d'), 'malformed-directory');
      assert.ok(s.requests.length < 100, `bounded: ${s.requests.length} requests`);
    },
  ],
  [
    'server-that-never-answers',
    async () => {
      const s = new ScriptedServer(() => undefined);
      const x = new XenstoreClient(s, { timeoutMs: 50 });
      const r = await settle(x.read('/a'));
      assert.ok(
        !r.ok && r.error instanceof XenstoreTimeoutError && !r.error.aborted,
        String(!r.ok && r.error),
      );
      const controller = new AbortController();
      const aborted = x.read('/b', { signal: controller.signal, timeoutMs: 0 });
      controller.abort();
      const a = await settle(aborted);
      assert.ok(!a.ok && a.error instanceof XenstoreTimeoutError && a.error.aborted);
      const pre = await settle(x.read('/c', { signal: AbortSignal.abort() }));
      assert.ok(!pre.ok && pre.error instanceof XenstoreTimeoutError);
      assert.equal(x.connected, true, 'a timeout alone does not close the connection');
    },
  ],
  [
    'late-reply-after-timeout-is-dropped',
    async () => {
      const held: Message[] = [];
      const s = new ScriptedServer((req, srv) => {
        if (held.length === 0) held.push(req);
        else {
          srv.reply(held[0]!, XsType.READ, utf8('late'));
          srv.reply(req, XsType.READ, utf8('on time'));
        }
      });
      const x = new XenstoreClient(s);
      const slow = await settle(x.read('/slow', { timeoutMs: 20 }));
      assert.ok(!slow.ok && slow.error instanceof XenstoreTimeoutError);
      const r = await settle(x.readString('/next'));
      assert.ok(r.ok && r.value === 'on time');
      assert.equal(x.stats.lateReplies, 1);
      assert.equal(x.connected, true);
    },
  ],
  [
    'too-many-unanswered-requests',
    async () => {
      const s = new ScriptedServer(() => undefined);
      const x = new XenstoreClient(s, { timeoutMs: 1, maxAbandoned: 5 });
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => settle(x.read(`/k${i}`))));
      assert.ok(results.every((r) => !r.ok));
      assert.equal(x.connected, false, 'a server that stopped answering is given up');
    },
  ],
  [
    'error-reply-with-unknown-name',
    async () => {
      const payloads = [
        joinStrings(['EWHATEVER']),
        utf8('ENOENT'),
        new Uint8Array([0x45, 0x01, 0xff, 0]),
        new Uint8Array(0),
      ];
      let i = 0;
      const s = new ScriptedServer((req, srv) => srv.reply(req, XsType.ERROR, payloads[i++]!));
      const x = new XenstoreClient(s);
      for (let n = 0; n < payloads.length; n++) {
        const r = await settle(x.read('/a'));
        assert.ok(!r.ok && r.error instanceof XenstoreError, String(!r.ok && r.error));
        assert.equal(r.error.code, 'EUNKNOWN');
        assert.ok(
          r.error.rawError !== undefined && [...r.error.rawError].every((ch) => ch.charCodeAt(0) >= 0x20),
          'printable',
        );
      }
      assert.equal(x.connected, true);
    },
  ],
  [
    'malformed-scalar-replies',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        if (req.type === XsType.TRANSACTION_START) srv.reply(req, req.type, joinStrings(['12abc']));
        else if (req.type === XsType.GET_PERMS) srv.reply(req, req.type, joinStrings(['x1']));
        else if (req.type === XsType.WRITE) srv.reply(req, req.type, joinStrings(['NO']));
        else if (req.type === XsType.GET_DOMAIN_PATH) srv.reply(req, req.type, utf8('relative'));
        else if (req.type === XsType.IS_DOMAIN_INTRODUCED) srv.reply(req, req.type, joinStrings(['maybe']));
        else srv.reply(req, req.type, joinStrings(['99999999999']));
      });
      const x = new XenstoreClient(s);
      await expectProtocolError(x.startTransaction(), 'malformed-transaction-id');
      await expectProtocolError(x.getPermissions('/a'), 'malformed-permissions');
      await expectProtocolError(x.write('/a', 'v'), 'expected-OK');
      await expectProtocolError(x.getDomainPath(1), 'malformed-path');
      await expectProtocolError(x.isDomainIntroduced(1), 'malformed-boolean');
      assert.equal(x.connected, true);
    },
  ],
  [
    'malformed-and-unmatched-watch-events',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        srv.ok(req);
        srv.reply(req, XsType.WATCH_EVENT, utf8('/no-token-and-no-nul'), 0);
        srv.reply(req, XsType.WATCH_EVENT, joinStrings(['/only-path']), 0);
        srv.reply(req, XsType.WATCH_EVENT, joinStrings(['/p', 'someone-elses-token']), 0);
        srv.reply(req, XsType.WATCH_EVENT, joinStrings(['/w/x', 'mine']), 0);
      });
      const x = new XenstoreClient(s);
      const w = await x.watch('/w', { token: 'mine' });
      const e = await settle(w.next());
      assert.ok(e.ok && e.value.path === '/w/x');
      assert.equal(x.stats.malformedEvents, 2);
      assert.equal(x.stats.unmatchedEvents, 1);
    },
  ],
  [
    'event-flood-is-bounded',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        srv.ok(req);
        for (let i = 0; i < 3000; i++)
          srv.reply(req, XsType.WATCH_EVENT, joinStrings([`/w/${i}`, 'flood']), 0);
      });
      const x = new XenstoreClient(s);
      const w = await x.watch('/w', { token: 'flood', maxQueued: 100 });
      await settle(new Promise((r) => setTimeout(r, 10)));
      assert.equal(w.dropped, 2900, 'events past the queue bound are counted, not kept');
    },
  ],
  [
    'dead-connection-fails-everything',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        if (req.type === XsType.WATCH) srv.ok(req);
      });
      const x = new XenstoreClient(s);
      const w = await x.watch('/w');
      const iterating = (async () => {
        for await (const _ of w) {
          // the first (and only) wait is ended by the dead connection
        }
      })();
      const pending = Array.from({ length: 5 }, (_, i) => x.read(`/k${i}`));
      let closedWith: Error | undefined;
      x.onClose((e) => {
        closedWith = e;
      });
      s.hangUp(new Error('EPIPE'));
      for (const p of pending) await expectConnectionError(p, /transport error|closed/);
      await expectConnectionError(iterating, /transport error|closed/);
      await expectConnectionError(x.read('/after'), /transport error|closed/);
      assert.ok(closedWith instanceof XenstoreConnectionError);
    },
  ],
  [
    'split-and-joined-replies',
    async () => {
      const s = new ScriptedServer((req, srv) => {
        const bytes = encodeMessage(XsType.READ, req.reqId, 0, utf8(`value of ${req.reqId}`));
        for (const b of bytes) srv.raw(new Uint8Array([b])); // one byte at a time
      });
      const x = new XenstoreClient(s);
      const values = await settle(Promise.all([x.readString('/a'), x.readString('/b')]));
      assert.ok(values.ok);
      assert.deepEqual(values.value, ['value of 1', 'value of 2']);
      const joined = new ScriptedServer((req, srv) => {
        if (req.reqId !== 2) return;
        const a = encodeMessage(XsType.READ, 2, 0, utf8('two'));
        const b = encodeMessage(XsType.READ, 1, 0, utf8('one'));
        const both = new Uint8Array(a.length + b.length);
        both.set(a);
        both.set(b, a.length);
        srv.raw(both); // out of order, in one chunk
      });
      const y = new XenstoreClient(joined);
      const r = await settle(Promise.all([y.readString('/1'), y.readString('/2')]));
      assert.ok(r.ok);
      assert.deepEqual(r.value, ['one', 'two']);
    },
  ],
  [
    'transport-refuses-a-send',
    async () => {
      const s = new ScriptedServer(() => undefined);
      s.throwOnSend = Object.assign(new Error('write: E2BIG'), { code: 'E2BIG' });
      const x = new XenstoreClient(s);
      const r = await settle(x.watch('/w'));
      assert.ok(!r.ok && r.error instanceof XenstoreError && r.error.code === 'E2BIG');
      s.throwOnSend = new Error('EIO from the device');
      const r2 = await settle(x.read('/a'));
      assert.ok(!r2.ok && r2.error instanceof XenstoreConnectionError);
    },
  ],
  [
    'oversized-request-never-leaves',
    async () => {
      const s = new ScriptedServer((req, srv) => srv.ok(req));
      s.maxRequestPayload = 4080;
      const x = new XenstoreClient(s);
      const r = await settle(x.write('/p', 'v'.repeat(4080)));
      assert.ok(!r.ok && r.error instanceof XenstoreError && r.error.code === 'E2BIG');
      assert.equal(s.requests.length, 0, 'nothing was sent');
      const ok = await settle(x.write('/p', 'v'.repeat(4080 - 3)));
      assert.ok(ok.ok);
    },
  ],
  [
    'unix-socket-server-sends-garbage',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'moat-xs-hostile-'));
      const path = join(dir, 'socket');
      const server = createServer((sock) => {
        sock.on('data', () => {
          sock.write(header(XsType.READ, 1, 0x7fffffff));
          sock.write(new Uint8Array(64).fill(0x41));
        });
      });
      try {
        await new Promise<void>((resolve) => server.listen(path, resolve));
        const x = new XenstoreClient(await SocketTransport.connect(path, { timeoutMs: 2000 }));
        await expectConnectionError(x.read('/a'), /oversized-length/);
      } finally {
        server.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  ],
];

export function hostileServerSuite(): HostileCase[] {
  return cases.map(([id, run]) => ({ id, run }));
}
