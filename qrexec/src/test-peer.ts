/**
 * For tests: the far end of a qrexec connection played by hand, in raw bytes, so a test can send
 * what no well-behaved peer would and see exactly what our side wrote.
 */
import type { Duplex } from 'node:stream';
import { encodeMessage, HEADER_SIZE, type Message } from './wire.ts';

export class RawPeer {
  private buffered = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(readonly stream: Duplex) {
    stream.on('data', (c: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, c]);
      this.wake?.();
    });
    const end = () => {
      this.ended = true;
      this.wake?.();
    };
    stream.on('end', end);
    stream.on('close', end);
    // The tests look at how the connection ends, through eof() and the bytes, not at its errors.
    stream.on('error', () => undefined);
  }

  private more(): Promise<void> {
    return new Promise<void>((r) => {
      this.wake = r;
    });
  }

  /** The next `n` bytes; throws when the stream ends first. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered.length < n) {
      if (this.ended) throw new Error(`EOF after ${this.buffered.length} of ${n} bytes`);
      await this.more();
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  /** The next message, split into its type and payload. */
  async message(): Promise<{ type: number; payload: Buffer }> {
    const h = await this.read(HEADER_SIZE);
    const payload = await this.read(h.readUInt32LE(4));
    return { type: h.readUInt32LE(0), payload };
  }

  /** The next message's bytes as they came, header included. */
  async frame(): Promise<Buffer> {
    const h = await this.read(HEADER_SIZE);
    return Buffer.concat([h, await this.read(h.readUInt32LE(4))]);
  }

  /** Resolves when the other side has closed the stream. */
  async eof(): Promise<void> {
    while (!this.ended) await this.more();
  }

  /** Everything not read yet, once the other side has closed the stream. */
  async all(): Promise<Buffer> {
    await this.eof();
    return this.buffered;
  }

  send(m: Message | Uint8Array): void {
    this.stream.write(m instanceof Uint8Array ? m : encodeMessage(m));
  }
}
