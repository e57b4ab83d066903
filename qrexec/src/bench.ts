/**
 * `./moat bench qrexec`: dom0 → VM call latency and stdin throughput between our dom0 side and
 * our agent over unix-socket vchan, with a bare unix socket measured in the same run as the
 * baseline (same machine, same moment). Figures only; nothing here is asserted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { QrexecAgent } from './agent.ts';
import { QrexecDaemon } from './dom0.ts';

export interface QrexecBenchReport {
  calls: number;
  callMedianMs: number;
  callP90Ms: number;
  bareRoundTripMedianMs: number;
  bytes: number;
  qrexecMiBps: number;
  bareSocketMiBps: number;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

export async function measureQrexec(options: {
  calls: number;
  mebibytes: number;
}): Promise<QrexecBenchReport> {
  const dir = mkdtempSync(join(tmpdir(), 'qrexec-bench-'));
  const quiet = () => undefined;
  const agent = new QrexecAgent({
    transport: socketVchanTransport({ directory: dir, localDomain: 5 }),
    log: quiet,
  });
  agent.handle('bench.Nothing', () => 0);
  agent.handle('bench.Discard', async (call) => {
    for await (const _ of call.stdin) {
      // discarded: we measure the transport, not a consumer
    }
    return 0;
  });
  await agent.start();
  const daemon = await QrexecDaemon.connect({
    transport: socketVchanTransport({ directory: dir, localDomain: 0 }),
    domain: 5,
    name: 'bench',
    log: quiet,
  });
  try {
    const times: number[] = [];
    for (let i = 0; i < options.calls; i++) {
      const t0 = performance.now();
      const r = await daemon.call('bench.Nothing');
      times.push(performance.now() - t0);
      await r.terminated;
    }
    times.sort((a, b) => a - b);
    const bytes = options.mebibytes * 1024 * 1024;
    const payload = Buffer.alloc(bytes, 0x5a);
    const t0 = performance.now();
    await daemon.call('bench.Discard', { stdin: payload });
    const qrexecSeconds = (performance.now() - t0) / 1000;
    const bare = await bareSocket(join(dir, 'bare.sock'), payload, options.calls);
    return {
      calls: options.calls,
      callMedianMs: quantile(times, 0.5),
      callP90Ms: quantile(times, 0.9),
      bareRoundTripMedianMs: bare.roundTripMedianMs,
      bytes,
      qrexecMiBps: options.mebibytes / qrexecSeconds,
      bareSocketMiBps: options.mebibytes / bare.seconds,
    };
  } finally {
    await daemon.close();
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The baseline: one connect + 1-byte round trip per "call", and the payload through one socket. */
async function bareSocket(
  path: string,
  payload: Buffer,
  calls: number,
): Promise<{ roundTripMedianMs: number; seconds: number }> {
  const server = createServer((socket) => {
    socket.on('data', (d) => {
      if (d.length === 1) socket.end(d);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const c: Socket = createConnection(path, () => c.write(Buffer.of(1)));
        c.on('data', () => undefined);
        c.on('end', () => resolve());
        c.on('error', reject);
      });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const sink = createServer((socket) => socket.resume());
    const sinkPath = `${path}.sink`;
    await new Promise<void>((resolve) => sink.listen(sinkPath, resolve));
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const c = createConnection(sinkPath, () => c.end(payload));
      c.on('close', () => resolve());
      c.on('error', reject);
    });
    const seconds = (performance.now() - t0) / 1000;
    await new Promise<void>((resolve) => sink.close(() => resolve()));
    return { roundTripMedianMs: quantile(times, 0.5), seconds };
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
