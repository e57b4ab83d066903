import type { Duplex } from 'node:stream';

/** Reads a stream to its end. (Test helper.) */
export function collect(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.resume(); // a 'data' listener does not restart an explicitly paused stream
  });
}

/**
 * Reads a stream to its end like `collect`, pausing after each chunk for the next of `pausesMs`
 * (cycled; 0 = no pause): a reader that keeps stopping. (Test helper.)
 */
export function collectWithPauses(stream: Duplex, pausesMs: readonly number[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let i = 0;
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const pause = pausesMs[i++ % pausesMs.length] ?? 0;
      if (pause > 0) {
        stream.pause();
        setTimeout(() => stream.resume(), pause);
      }
    });
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Writes `data` in chunks of the given sizes (cycled), honouring backpressure, then ends. (Test helper.) */
export async function writeInChunks(
  stream: Duplex,
  data: Uint8Array,
  sizes: number[],
  options: { end?: boolean } = {},
): Promise<void> {
  let offset = 0;
  let i = 0;
  while (offset < data.length) {
    const size = sizes[i++ % sizes.length] ?? 1;
    const piece = data.subarray(offset, offset + size);
    offset += piece.length;
    if (!stream.write(piece)) await new Promise((resolve) => stream.once('drain', resolve));
  }
  if (options.end === false) return;
  await new Promise<void>((resolve, reject) => {
    stream.end(() => resolve());
    stream.once('error', reject);
  });
}

/** Reads exactly `length` bytes (or fails on EOF first), leaving the stream open. (Test helper.) */
export function readExactly(stream: Duplex, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const finish = (error?: Error) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', finish);
      stream.pause();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      const need = length - total;
      if (chunk.length > need) {
        stream.unshift(chunk.subarray(need));
        chunk = chunk.subarray(0, need);
      }
      chunks.push(chunk);
      total += chunk.length;
      if (total === length) finish();
    };
    const onEnd = () => finish(new Error(`EOF after ${total} of ${length} bytes`));
    if (length === 0) {
      resolve(Buffer.alloc(0));
      return;
    }
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', finish);
    stream.resume();
  });
}

/**
 * Writes `chunk` repeatedly, waiting for 'drain' when asked to, until a drain does not
 * come within `stallMs` (the peer stopped reading and every buffer on the way is full)
 * or `limit` bytes were accepted. Returns how many bytes the stream accepted. (Test helper.)
 */
export async function writeUntilStalled(
  stream: Duplex,
  chunk: Uint8Array,
  options: { stallMs: number; limit: number },
): Promise<number> {
  let accepted = 0;
  while (accepted < options.limit) {
    accepted += chunk.length;
    if (stream.write(chunk)) continue;
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        stream.off('drain', onDrain);
        resolve(false);
      }, options.stallMs);
      const onDrain = () => {
        clearTimeout(timer);
        resolve(true);
      };
      stream.once('drain', onDrain);
    });
    if (!drained) break;
  }
  return accepted;
}
