import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { QubesDbDaemon } from './dom0.ts';
import { connectQubesDb } from './vm.ts';
import { encodeMessage, QdbMsg } from './wire.ts';

export interface LatencyFigures {
  samples: number;
  medianMs: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface WatchLatencyReport {
  /** dom0 daemon `write()` → the VM replica's watch callback, over unix-socket vchan. */
  qubesdb: LatencyFigures;
  /** The same message bytes written on one plain unix socket and read on the other end. */
  rawSocket: LatencyFigures;
  /** qubesdb median / raw socket median: what the protocol layers cost on top of moving the bytes. */
  medianRatio: number;
}

/**
 * Measures write → watch delivery between our dom0 daemon and our VM side, in one
 * process over the vchan-socket transport, against a baseline measured in the same run
 * (the same bytes over a bare unix socket). Figures, never assertions.
 */
export async function measureWatchLatency(options: { writes?: number } = {}): Promise<WatchLatencyReport> {
  const writes = options.writes ?? 2000;
  const directory = mkdtempSync(join(tmpdir(), 'qubesdb-bench-'));
  try {
    const rawSocket = await rawSocketLatency(directory, writes);
    const qubesdb = await qubesDbLatency(directory, writes);
    return { qubesdb, rawSocket, medianRatio: qubesdb.medianMs / rawSocket.medianMs };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

async function qubesDbLatency(directory: string, writes: number): Promise<LatencyFigures> {
  const daemon = new QubesDbDaemon({
    vmDomain: 5,
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    log: () => {},
  });
  await daemon.start();
  const db = await connectQubesDb({
    transport: socketVchanTransport({ directory, localDomain: 5 }),
    timeoutMs: 5000,
  });
  try {
    const samples: number[] = [];
    let resolveDelivery: ((at: number) => void) | undefined;
    db.watch('/bench/key', () => resolveDelivery?.(performance.now()));
    for (let i = 0; i < writes; i++) {
      const delivered = new Promise<number>((resolve) => {
        resolveDelivery = resolve;
      });
      const start = performance.now();
      daemon.write('/bench/key', `value-${i}`);
      samples.push((await delivered) - start);
    }
    return summarise(samples);
  } finally {
    db.close();
    await daemon.stop();
  }
}

async function rawSocketLatency(directory: string, writes: number): Promise<LatencyFigures> {
  const path = join(directory, 'raw.sock');
  const message = encodeMessage(QdbMsg.CMD_WRITE, '/bench/key', new TextEncoder().encode('value-0000'));
  let serverSide: Socket | undefined;
  const server = createServer((socket) => {
    serverSide = socket;
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = createConnection(path);
  await new Promise((resolve) => client.once('connect', resolve));
  while (!serverSide) await new Promise((resolve) => setImmediate(resolve));
  const receiver = serverSide;
  try {
    const samples: number[] = [];
    let pending = 0;
    let resolveDelivery: ((at: number) => void) | undefined;
    receiver.on('data', (chunk: Buffer) => {
      pending -= chunk.length;
      if (pending <= 0) resolveDelivery?.(performance.now());
    });
    for (let i = 0; i < writes; i++) {
      const delivered = new Promise<number>((resolve) => {
        resolveDelivery = resolve;
      });
      pending = message.length;
      const start = performance.now();
      client.write(message);
      samples.push((await delivered) - start);
    }
    return summarise(samples);
  } finally {
    client.destroy();
    receiver.destroy();
    server.close();
  }
}

function summarise(samples: number[]): LatencyFigures {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    Number(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(4));
  return { samples: sorted.length, medianMs: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: at(1) };
}
