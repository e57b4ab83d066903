/**
 * Arbitrary bytes from either peer, after a valid HELLO: whatever they are, the connection
 * either carries on or ends with a logged reason, nothing throws out of the agent or the
 * daemon, and the agent can be reached again afterwards.
 */

import { MemoryVchanNetwork } from '@moat/vchan/memory';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QrexecAgent } from './agent.ts';
import { QrexecDaemon } from './dom0.ts';
import { accepted } from './frames.ts';
import { encodeHeader, encodeMessage, MsgType } from './wire.ts';

const VM = 4;
const settle = () => new Promise((r) => setTimeout(r, 5));

/** Byte soup biased towards real headers, so the parsers get past the first 8 bytes. */
const soup = fc.array(
  fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc
      .tuple(
        fc.constantFrom(...Object.values(MsgType), 0x1234),
        fc.oneof(fc.integer({ min: 0, max: 200 }), fc.constantFrom(0xffffffff, 65537, 65536)),
        fc.uint8Array({ maxLength: 200 }),
      )
      .map(([type, length, body]) => Buffer.concat([encodeHeader({ type, length }), body])),
  ),
  { maxLength: 6 },
);

describe('arbitrary bytes from the peer', () => {
  it('from dom0 on the control channel: the agent survives and listens again', async () => {
    await fc.assert(
      fc.asyncProperty(soup, async (chunks) => {
        const net = new MemoryVchanNetwork();
        const agent = new QrexecAgent({
          transport: net.transport(VM),
          log: () => undefined,
          connectTimeoutMs: 50,
        });
        agent.handle('test.Ok', () => 0);
        await agent.start();
        try {
          const dom0 = await net.transport(0).connect({ peer: VM, port: 512, timeoutMs: 1000 });
          dom0.on('error', () => undefined);
          dom0.resume();
          dom0.write(encodeMessage({ kind: 'hello', version: 4 }));
          for (const c of chunks) dom0.write(c);
          await settle();
          dom0.destroy();
          await expect.poll(() => net.advertised(), { timeout: 2000 }).toContain(`${VM}.0.512`);
          const daemon = await QrexecDaemon.connect({
            transport: net.transport(0),
            domain: VM,
            name: 'v',
            log: () => undefined,
          });
          expect((await daemon.call('test.Ok', { timeoutMs: 2000 })).exitCode).toBe(0);
          await daemon.close();
        } finally {
          await agent.stop();
        }
      }),
      { numRuns: 40, seed: 4242 },
    );
  });

  it('from a caller on a data channel: the agent ends that call, reports it, and keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(soup, async (chunks) => {
        const net = new MemoryVchanNetwork();
        const agent = new QrexecAgent({ transport: net.transport(VM), log: () => undefined });
        agent.handle('test.Cat', async (call) => {
          for await (const c of call.stdin) call.stdout.write(c);
          return 0;
        });
        await agent.start();
        const daemon = await QrexecDaemon.connect({
          transport: net.transport(0),
          domain: VM,
          name: 'v',
          log: () => undefined,
        });
        try {
          // Play the caller by hand on port 700, through the daemon's control channel.
          const listener = await net
            .transport(0)
            .listen({ peer: VM, port: 700, readMin: 65536, writeMin: 65536 });
          await (daemon as unknown as { send(m: unknown): Promise<void> }).send({
            kind: 'exec-cmdline',
            connectDomain: 0,
            connectPort: 700,
            cmdline: 'user:QUBESRPC test.Cat+ dom0',
          });
          const data = await accepted(listener);
          data.on('error', () => undefined);
          data.resume();
          data.write(encodeMessage({ kind: 'hello', version: 3 }));
          for (const c of chunks) data.write(c);
          await settle();
          data.destroy();
          const r = await daemon.call('test.Cat', { stdin: 'after', timeoutMs: 2000 });
          expect(r.stdout.toString()).toBe('after');
        } finally {
          await daemon.close();
          await agent.stop();
        }
      }),
      { numRuns: 40, seed: 4244 },
    );
  });

  it('from the agent on the control channel: the daemon ends or carries on, never throws', async () => {
    await fc.assert(
      fc.asyncProperty(soup, async (chunks) => {
        const net = new MemoryVchanNetwork();
        const listener = await net
          .transport(VM)
          .listen({ peer: 0, port: 512, readMin: 4096, writeMin: 4096 });
        const connecting = QrexecDaemon.connect({
          transport: net.transport(0),
          domain: VM,
          name: 'v',
          log: () => undefined,
          policy: () => ({ action: 'deny' }),
        });
        const agent = await accepted(listener);
        agent.on('error', () => undefined);
        agent.resume();
        agent.write(encodeMessage({ kind: 'hello', version: 3 }));
        const daemon = await connecting;
        for (const c of chunks) agent.write(c);
        await settle();
        agent.destroy();
        await daemon.closed();
        expect(daemon.connected).toBe(false);
      }),
      { numRuns: 40, seed: 4243 },
    );
  });
});
