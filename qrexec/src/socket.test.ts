/**
 * The agent and the dom0 side over @moat/vchan's unix-socket transport (the layout of Qubes'
 * qubes-core-vchan-socket: vchan.<server>.<client>.<port>.sock), as separate "domains".
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectVchanSocket, socketVchanTransport } from '@moat/vchan/socket';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { QrexecAgent } from './agent.ts';
import { QrexecDaemon } from './dom0.ts';
import { QrexecRefusedError } from './errors.ts';
import { startAgent } from './start.ts';
import { encodeHeader, encodeMessage, MsgType } from './wire.ts';

const VM = 12;
let directory: string;
const stops: Array<() => Promise<void>> = [];
const quiet = () => undefined;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'qrexec-sock-'));
});
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  rmSync(directory, { recursive: true, force: true });
});

async function vmAndDom0(): Promise<{ agent: QrexecAgent; daemon: QrexecDaemon; logs: string[] }> {
  const logs: string[] = [];
  const { agent } = await startAgent({
    transport: socketVchanTransport({ directory, localDomain: VM }),
    log: (level, m) => logs.push(`${level}: ${m}`),
    connectTimeoutMs: 5000,
  });
  agent.handle('test.Sha256', async (call) => {
    const hash = createHash('sha256');
    for await (const c of call.stdin) hash.update(c);
    call.stdout.write(hash.digest('hex'));
    return 0;
  });
  agent.handle('test.Echo', async (call) => {
    for await (const c of call.stdin) {
      if (!call.stdout.write(c)) await new Promise((r) => call.stdout.once('drain', r));
    }
    return 42;
  });
  const daemon = await QrexecDaemon.connect({
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    domain: VM,
    name: 'sock-vm',
    log: (level, m) => logs.push(`${level}: ${m}`),
    startupTimeoutMs: 5000,
    policy: (r) =>
      r.service === 'qubes.FeaturesRequest'
        ? { action: 'allow', service: ({ stdin }) => ({ exitCode: 0, stdout: sha256(stdin) }) }
        : { action: 'deny' },
  });
  await agent.connected();
  stops.push(async () => {
    await daemon.close();
    await agent.stop();
  });
  return { agent, daemon, logs };
}

describe('qrexec over unix-socket vchan', () => {
  it('advertises the agent control server at the vchan-socket path vchan.<vm>.0.512.sock', async () => {
    const { agent } = await startAgent({
      transport: socketVchanTransport({ directory, localDomain: VM }),
      log: quiet,
    });
    stops.push(() => agent.stop());
    expect(existsSync(join(directory, `vchan.${VM}.0.512.sock`))).toBe(true);
  });

  it('answers a call with 1 MiB of stdin in and the checksum and exit code out', async () => {
    const { daemon } = await vmAndDom0();
    const input = randomBytes(1 << 20);
    const result = await daemon.call('test.Sha256', { stdin: input });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.toString()).toBe(sha256(input));
    await result.terminated;
    expect(daemon.portsInUse()).toEqual([]);
  });

  it('echoes 1 MiB both ways, checksummed', async () => {
    const { daemon } = await vmAndDom0();
    const input = randomBytes((1 << 20) + 3);
    const result = await daemon.call('test.Echo', { stdin: input });
    expect(result.exitCode).toBe(42);
    expect(sha256(result.stdout)).toBe(sha256(input));
  });

  it("survives dom0 hanging up in the middle of a service's output, and serves the next call", async () => {
    const { daemon, agent } = await vmAndDom0();
    agent.handle('test.Flood', async (call) => {
      for (let i = 0; i < 64 && !call.signal.aborted; i++) {
        // A well-behaved service also wakes on 'close' (its streams are destroyed when the link fails).
        if (!call.stdout.write(Buffer.alloc(65536, i)))
          await new Promise((r) => {
            call.stdout.once('drain', r);
            call.stdout.once('close', r);
          });
      }
      return 0;
    });
    await expect(daemon.call('test.Flood', { maxOutputBytes: 100_000 })).rejects.toMatchObject({
      reason: 'output-too-large',
    });
    await expect.poll(() => agent.stats.connectionErrors).toBe(1);
    expect((await daemon.call('test.Echo', { stdin: 'next' })).stdout.toString()).toBe('next');
  });

  it('refuses an unknown service with 127', async () => {
    const { daemon } = await vmAndDom0();
    const result = await daemon.call('qubes.Unknown', { stdin: 'x' });
    expect(result.exitCode).toBe(127);
    await result.terminated;
  });

  it('answers the built-ins (qubes.SetDateTime, qubes.WaitForSession)', async () => {
    const { daemon } = await vmAndDom0();
    expect((await daemon.call('qubes.SetDateTime', { stdin: '2031-01-01T00:00:00+00:00\n' })).exitCode).toBe(
      0,
    );
    const date = await daemon.call('qubes.GetDate');
    expect(date.stdout.toString()).toMatch(/^2031-01-01T00:00:0\d\+00:00\n$/);
    expect((await daemon.call('qubes.WaitForSession', { stdin: 'user\n' })).exitCode).toBe(0);
  });

  it('makes VM-initiated calls: accepted by policy, and refused', async () => {
    const { agent } = await vmAndDom0();
    const input = randomBytes(100_000);
    const ok = await agent.call('dom0', 'qubes.FeaturesRequest', { stdin: input });
    expect(ok).toMatchObject({ exitCode: 0 });
    expect(ok.stdout.toString()).toBe(sha256(input));
    await expect(agent.call('dom0', 'qubes.Other')).rejects.toBeInstanceOf(QrexecRefusedError);
  });

  it('survives a dom0 that sends an unknown message, and serves the next dom0', async () => {
    const logs: string[] = [];
    const { agent } = await startAgent({
      transport: socketVchanTransport({ directory, localDomain: VM }),
      log: (_l, m) => logs.push(m),
    });
    stops.push(() => agent.stop());
    const raw = await connectVchanSocket({ directory, localDomain: 0, peer: VM, port: 512, timeoutMs: 5000 });
    raw.on('error', () => undefined);
    raw.write(encodeMessage({ kind: 'hello', version: 4 }));
    raw.write(encodeHeader({ type: 0x4242, length: 0 }));
    await new Promise((resolve) => raw.on('close', resolve).resume());
    await expect.poll(() => logs.join('\n')).toContain('unknown-type');
    const daemon = await QrexecDaemon.connect({
      transport: socketVchanTransport({ directory, localDomain: 0 }),
      domain: VM,
      name: 'sock-vm',
      log: quiet,
      startupTimeoutMs: 5000,
    });
    stops.unshift(() => daemon.close());
    expect((await daemon.call('qubes.WaitForRunningSystem')).exitCode).toBe(0);
  });

  it('ends one call whose caller sends an oversized chunk, and keeps serving', async () => {
    const { daemon, agent, logs } = await vmAndDom0();
    const dom0 = socketVchanTransport({ directory, localDomain: 0 });
    // Play qrexec-client by hand on port 600 through the real daemon's control channel.
    const server = await dom0.listen({ peer: VM, port: 600, readMin: 65536, writeMin: 65536 });
    server.on('error', () => undefined);
    await (daemon as unknown as { send(m: unknown): Promise<void> }).send({
      kind: 'exec-cmdline',
      connectDomain: 0,
      connectPort: 600,
      cmdline: 'user:QUBESRPC test.Echo+ dom0',
    });
    await server.whenConnected();
    server.write(encodeMessage({ kind: 'hello', version: 4 }));
    server.write(encodeHeader({ type: MsgType.DATA_STDIN, length: 65537 }));
    await new Promise((resolve) => server.on('close', resolve).resume());
    await expect.poll(() => agent.stats.connectionErrors).toBe(1);
    expect(logs.join('\n')).toContain('too-big-data-chunk');
    expect((await daemon.call('test.Echo', { stdin: 'again' })).stdout.toString()).toBe('again');
  });
});
