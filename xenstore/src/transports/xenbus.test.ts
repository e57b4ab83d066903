import type { XenbusDevice } from '@moat/xen';
import { describe, expect, it } from 'vitest';
import { XenstoreClient } from '../client.ts';
import { XenstoreError } from '../errors.ts';
import { decodeHeader, encodeMessage, joinStrings, XsType } from '../wire.ts';
import { XenbusTransport } from './xenbus.ts';

/** A device that records writes and lets the test answer them. */
class ScriptedDevice implements XenbusDevice {
  readonly written: Uint8Array[] = [];
  refuseNext: string | undefined;
  private readonly data = new Set<(chunk: Uint8Array) => void>();
  write(message: Uint8Array): void {
    if (this.refuseNext) {
      const error = Object.assign(new Error(`xenbus write failed: ${this.refuseNext}`), {
        code: this.refuseNext,
      });
      this.refuseNext = undefined;
      throw error;
    }
    this.written.push(message.slice());
  }
  onData(listener: (chunk: Uint8Array) => void): () => void {
    this.data.add(listener);
    return () => this.data.delete(listener);
  }
  onError(): () => void {
    return () => undefined;
  }
  close(): void {}
  /** Answers written message `i` with `text` (type of the request), delivered in `pieces` reads. */
  answer(i: number, text: string, pieces = 1): void {
    const h = decodeHeader(this.written[i]!);
    if (!h.ok) throw new Error('bad header');
    const reply = encodeMessage(h.value.type, h.value.reqId, h.value.txId, new TextEncoder().encode(text));
    const step = Math.ceil(reply.length / pieces);
    for (let at = 0; at < reply.length; at += step) for (const l of this.data) l(reply.slice(at, at + step));
  }
  event(path: string, token: string): void {
    for (const l of this.data) l(encodeMessage(XsType.WATCH_EVENT, 0, 0, joinStrings([path, token])));
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('XenbusTransport', () => {
  it('writes the next request only after the previous one was answered (the driver reuses its buffer)', async () => {
    const device = new ScriptedDevice();
    const x = new XenstoreClient(new XenbusTransport(device));
    const reads = ['a', 'b', 'c'].map((p) => x.readString(`/k/${p}`));
    expect(device.written).toHaveLength(1);
    device.event('/w', 'not-a-reply');
    expect(device.written).toHaveLength(1);
    device.answer(0, 'A', 5);
    expect(device.written).toHaveLength(2);
    device.answer(1, 'B');
    device.answer(2, 'C');
    expect(await Promise.all(reads)).toEqual(['A', 'B', 'C']);
    x.close();
  });

  it('turns a refused queued write into that request error and goes on', async () => {
    const device = new ScriptedDevice();
    const x = new XenstoreClient(new XenbusTransport(device));
    const first = x.readString('/k/a');
    const refused = x.readString('/k/b').catch((e: unknown) => e);
    const third = x.readString('/k/c');
    device.refuseNext = 'ENOSPC';
    device.answer(0, 'A');
    expect(await first).toBe('A');
    const error = await refused;
    expect(error).toBeInstanceOf(XenstoreError);
    expect((error as XenstoreError).code).toBe('ENOSPC');
    await tick();
    expect(device.written).toHaveLength(2);
    device.answer(1, 'C');
    expect(await third).toBe('C');
    x.close();
  });

  it('does not wait for the reply Linux drops (TRANSACTION_END with tx_id 0)', async () => {
    const device = new ScriptedDevice();
    const x = new XenstoreClient(new XenbusTransport(device));
    const end = x
      .rawRequest(XsType.TRANSACTION_END, joinStrings(['T']), 0, undefined, { timeoutMs: 20 })
      .catch((e: unknown) => e);
    const read = x.readString('/k/a');
    expect(device.written).toHaveLength(2);
    device.answer(1, 'A');
    expect(await read).toBe('A');
    expect(await end).toBeInstanceOf(Error);
    x.close();
  });
});
