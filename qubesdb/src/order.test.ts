import { VchanStream, type VchanTransport } from '@moat/vchan';
import type { VchanEndpoint } from '@moat/xen';
import { describe, expect, it } from 'vitest';
import { SCENARIO_EXPECTED_EVENTS } from './scenario.ts';
import { connectQubesDb } from './vm.ts';
import { decodeHeader, encodeHeader, encodeMessage, msgName, QdbMsg } from './wire.ts';

/**
 * Watch events follow dom0's order even when the stream hands us data re-entrantly.
 *
 * On real Xen (lab run of qubes-agents, 3 ms round trips) the VM saw /lab/seq/2's event after
 * the removal of /lab/seq/. The path: a chunk the Readable had buffered is emitted outside the
 * stream's pump; our RESP_OK for a message is a `write()`, whose pump finds the next bytes
 * dom0 sent meanwhile (the native thread had copied them) and pushes them, and Node emits
 * that 'data' synchronously, inside the first handler, before it fired its watch.
 *
 * `LateBytesEndpoint` makes that happen on the host: bytes the test `deliver`s without an
 * event stay invisible until `release()`, which makes them readable at once and runs the
 * event a turn later, as bytes a native thread copied before its notification ran.
 */
class LateBytesEndpoint implements VchanEndpoint {
  readonly role = 'client' as const;
  readonly sent: Uint8Array[] = [];
  #visible = Buffer.alloc(0);
  #late = Buffer.alloc(0);
  readonly #listeners = new Set<() => void>();
  onWrite: (bytes: Uint8Array) => void = () => {};
  /** Run the event listeners inside write() once bytes were released there (a stricter peer). */
  signalInsideWrite = false;

  read(into: Uint8Array): number {
    const n = Math.min(into.length, this.#visible.length);
    into.set(this.#visible.subarray(0, n));
    this.#visible = this.#visible.subarray(n);
    return n;
  }
  write(data: Uint8Array): number {
    this.sent.push(data.slice());
    const before = this.#visible.length;
    this.onWrite(data);
    if (this.signalInsideWrite && this.#visible.length > before) this.#signal();
    return data.length;
  }
  dataReady(): number {
    return this.#visible.length;
  }
  bufferSpace(): number {
    return 65536;
  }
  state(): 'open' {
    return 'open';
  }
  onEvent(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  close(): void {
    this.#listeners.clear();
  }
  /** Bytes from dom0 with their event. */
  deliver(...messages: Uint8Array[]): void {
    this.#visible = Buffer.concat([this.#visible, ...messages]);
    setImmediate(() => this.#signal());
  }
  #signal(): void {
    for (const listener of this.#listeners) listener();
  }
  /** Bytes from dom0 whose event has not run yet. */
  deliverLate(...messages: Uint8Array[]): void {
    this.#late = Buffer.concat([this.#late, ...messages]);
  }
  release(): void {
    this.#visible = Buffer.concat([this.#visible, this.#late]);
    this.#late = Buffer.alloc(0);
    setImmediate(() => this.#signal()); // the notification, late
  }
}

const text = (s: string) => new TextEncoder().encode(s);
const write = (path: string, value: string) => encodeMessage(QdbMsg.CMD_WRITE, path, text(value));
const rm = (path: string) => encodeHeader(QdbMsg.CMD_RM, path, 0);
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('watch order against a re-entrant stream', () => {
  it.each([
    ['the bytes wait for their event (as on Xen)', false],
    ['the event runs inside our write()', true],
  ])(
    "fires the watches in dom0's order when our RESP_OK meets dom0's next messages: %s",
    async (_, inside) => {
      const endpoint = new LateBytesEndpoint();
      endpoint.signalInsideWrite = inside;
      let stream: VchanStream | undefined;
      const transport: VchanTransport = {
        localDomain: 3,
        listen: () => Promise.reject(new Error('not used')),
        connect: async ({ peer, port }) => {
          stream = new VchanStream(endpoint, {
            localDomain: 3,
            remoteDomain: peer,
            port,
            role: 'client',
            transport: 'memory',
          });
          return stream;
        },
      };
      const connecting = connectQubesDb({ transport, timeoutMs: 5000, log: () => {} });
      await tick();
      endpoint.deliver(encodeHeader(QdbMsg.RESP_MULTIREAD, '', 0)); // an empty dump
      const db = await connecting;
      const events: string[] = [];
      db.watch('/lab/seq/', (path) => events.push(path));

      // dom0's first two writes sit in the Readable's buffer (read while paused) ...
      stream!.pause();
      endpoint.deliver(write('/lab/seq/1', '1'), write('/lab/seq/2', '2'));
      await tick();
      await tick();
      // ... and the rest lands while we answer the second one.
      endpoint.deliverLate(
        write('/lab/seq/3', '3'),
        write('/lab/seq/4', '4'),
        write('/lab/seq/5', '5'),
        rm('/lab/seq/3'),
        rm('/lab/seq/'),
      );
      let answers = 0;
      endpoint.onWrite = () => {
        if (++answers === 2) endpoint.release();
      };
      stream!.resume();
      for (let i = 0; i < 10 && events.length < 7; i++) await tick();

      expect(events).toEqual(SCENARIO_EXPECTED_EVENTS);
      expect(db.list('/lab/seq/')).toEqual([]);
      // The MULTIREAD, then one RESP_OK per message, in dom0's order.
      const answered = endpoint.sent.slice(1).map((bytes) => {
        const decoded = decodeHeader(bytes, 'vchan');
        return decoded.ok ? `${msgName(decoded.header.type)} ${decoded.header.path}` : 'invalid';
      });
      expect(answered).toEqual(SCENARIO_EXPECTED_EVENTS.map((path) => `QDB_RESP_OK ${path}`));
      db.close();
    },
  );
});
