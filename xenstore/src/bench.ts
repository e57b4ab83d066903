/**
 * `./moat bench xenstore`: sequential read round trips of XenstoreClient against XenstoredSim
 * over a unix socket, beside a bare unix-socket echo of the same bytes measured in the same
 * run (the floor: what the socket and event loop cost without xenstore on either end).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenstoreClient } from './client.ts';
import { XenstoredSim } from './sim/xenstored.ts';
import { SocketTransport } from './transports/socket.ts';
import { encodeMessage, joinStrings, XsType } from './wire.ts';

export interface RoundTripReport {
  requests: number;
  clientMedianUs: number;
  clientP99Us: number;
  bareSocketMedianUs: number;
  ratio: number;
  /** Reads per second with 64 requests in flight. */
  pipelinedPerSecond: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

export async function measureXenstoreRoundTrip(
  options: { requests?: number } = {},
): Promise<RoundTripReport> {
  const requests = options.requests ?? 2000;
  const dir = mkdtempSync(join(tmpdir(), 'moat-xs-bench-'));
  const sim = new XenstoredSim();
  const simPath = join(dir, 'xenstored');
  const echoPath = join(dir, 'echo');
  const reply = encodeMessage(XsType.READ, 1, 0, joinStrings(['value']));
  const simServer = await sim.listen(simPath);
  const echo = createServer((s) => s.on('data', () => s.write(reply)));
  await new Promise<void>((r) => echo.listen(echoPath, r));
  try {
    const client = new XenstoreClient(await SocketTransport.connect(simPath));
    await client.write('/bench/key', 'value');
    const ours: number[] = [];
    for (let i = 0; i < requests; i++) {
      const t = process.hrtime.bigint();
      await client.read('/bench/key');
      ours.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    const started = process.hrtime.bigint();
    for (let i = 0; i < requests; i += 64) {
      await Promise.all(Array.from({ length: Math.min(64, requests - i) }, () => client.read('/bench/key')));
    }
    const pipelinedSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    client.close();

    const sock = createConnection(echoPath);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const request = encodeMessage(XsType.READ, 1, 0, joinStrings(['/bench/key']));
    const bare: number[] = [];
    for (let i = 0; i < requests; i++) {
      const t = process.hrtime.bigint();
      await new Promise<void>((resolve) => {
        sock.once('data', () => resolve());
        sock.write(request);
      });
      bare.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    sock.destroy();
    ours.sort((a, b) => a - b);
    bare.sort((a, b) => a - b);
    const clientMedianUs = percentile(ours, 0.5);
    const bareSocketMedianUs = percentile(bare, 0.5);
    return {
      requests,
      clientMedianUs: Math.round(clientMedianUs),
      clientP99Us: Math.round(percentile(ours, 0.99)),
      bareSocketMedianUs: Math.round(bareSocketMedianUs),
      ratio: Number((clientMedianUs / bareSocketMedianUs).toFixed(2)),
      pipelinedPerSecond: Math.round(requests / pipelinedSeconds),
    };
  } finally {
    simServer.close();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
