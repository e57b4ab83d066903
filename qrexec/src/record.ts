/**
 * Records every byte crossing a `VchanEndpoint`, for transcripts of sessions with Qubes' own C
 * peers (the fixtures under qrexec/fixtures/) and for debugging in the lab.
 */
import { Duplex } from 'node:stream';
import type { VchanEndpoint } from './transport.ts';

export interface TranscriptEvent {
  /**
   * Which vchan: `listen 0:513 #2` (we are server for remote 0, port 513; the 2nd channel this
   * endpoint opened) or `connect 0:512 #1`. Ports are reused, the number is not.
   */
  channel: string;
  /** `out` = we sent, `in` = we received, `eof` = the peer ended. */
  direction: 'in' | 'out' | 'eof';
  hex: string;
}

class RecordingStream extends Duplex {
  constructor(
    private readonly inner: Duplex,
    private readonly record: (direction: TranscriptEvent['direction'], bytes: Uint8Array) => void,
  ) {
    super({ allowHalfOpen: true });
    inner.on('data', (chunk: Buffer) => {
      record('in', chunk);
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => {
      record('eof', new Uint8Array(0));
      this.push(null);
    });
    inner.on('error', (e) => this.destroy(e));
    inner.on('close', () => {
      if (!this.readableEnded) this.push(null);
    });
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.record('out', chunk);
    this.inner.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy(error ?? undefined);
    callback(error);
  }
}

export function recordingEndpoint(
  inner: VchanEndpoint,
  onEvent: (event: TranscriptEvent) => void,
): VchanEndpoint {
  let opened = 0;
  const wrap = (stream: Duplex, name: string) => {
    const channel = `${name} #${++opened}`;
    return new RecordingStream(stream, (direction, bytes) =>
      onEvent({ channel, direction, hex: Buffer.from(bytes).toString('hex') }),
    );
  };
  return {
    async listen(remote, port, rings) {
      const listener = await inner.listen(remote, port, rings);
      const accepted = listener.accepted.then((s) => wrap(s, `listen ${remote}:${port}`));
      accepted.catch(() => undefined);
      return { accepted, close: () => listener.close() };
    },
    async connect(remote, port, timeoutMs) {
      return wrap(await inner.connect(remote, port, timeoutMs), `connect ${remote}:${port}`);
    },
  };
}
