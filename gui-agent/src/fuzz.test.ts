/**
 * Fuzz target for daemon → agent bytes (runs in the unit phase): generated daemon messages,
 * mutated (bit flips, wrong lengths, truncation, junk), fed to the sans-IO parser and to a
 * whole agent with an open window. The agent may end the connection, but only with a
 * GuiProtocolError; it never throws anything else, never grows its queues past their bounds,
 * and never shares more pages than its window needs.
 */
import { VchanStream, type VchanTransport } from '@moat/vchan';
import { memoryVchanPair } from '@moat/vchan/memory';
import { SimHypervisor } from '@moat/xen/sim';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuiAgent } from './agent.ts';
import { GuiProtocolError } from './errors.ts';
import { DaemonStreamParser } from './inbound.ts';
import { encodeMessage, encodeVersion, encodeXconf, type GuiMessage, versionWord, xconfFor } from './wire.ts';

const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const small = fc.integer({ min: 0, max: 2000 });
const windowId = fc.oneof(fc.constant(1), fc.constant(0), u32);

const daemonMessage: fc.Arbitrary<GuiMessage> = fc.oneof(
  fc.record({
    kind: fc.constant('keypress' as const),
    window: windowId,
    eventType: fc.integer({ min: 0, max: 5 }),
    x: i32,
    y: i32,
    state: u32,
    keycode: fc.integer({ min: 0, max: 300 }),
  }),
  fc.record({
    kind: fc.constant('button' as const),
    window: windowId,
    eventType: fc.integer({ min: 3, max: 6 }),
    x: i32,
    y: i32,
    state: u32,
    button: fc.integer({ min: 0, max: 300 }),
  }),
  fc.record({
    kind: fc.constant('motion' as const),
    window: windowId,
    x: i32,
    y: i32,
    state: u32,
    isHint: u32,
  }),
  fc.record({
    kind: fc.constant('crossing' as const),
    window: windowId,
    eventType: fc.integer({ min: 6, max: 9 }),
    x: i32,
    y: i32,
    state: u32,
    mode: u32,
    detail: u32,
    focus: u32,
  }),
  fc.record({
    kind: fc.constant('focus' as const),
    window: windowId,
    eventType: fc.integer({ min: 8, max: 11 }),
    mode: u32,
    detail: u32,
  }),
  fc.record({
    kind: fc.constant('configure' as const),
    window: windowId,
    x: i32,
    y: i32,
    width: fc.oneof(small, u32),
    height: fc.oneof(small, u32),
    overrideRedirect: u32,
  }),
  fc.record({
    kind: fc.constant('map' as const),
    window: windowId,
    transientFor: u32,
    overrideRedirect: u32,
  }),
  fc.record({ kind: fc.constant('close' as const), window: windowId }),
  fc.record({ kind: fc.constant('destroy' as const), window: windowId }),
  fc.record({ kind: fc.constant('window-dump-ack' as const), window: windowId }),
  fc.record({ kind: fc.constant('clipboard-req' as const), window: windowId }),
  fc.record({
    kind: fc.constant('clipboard-data' as const),
    window: windowId,
    data: fc.uint8Array({ maxLength: 300 }),
  }),
  fc.record({
    kind: fc.constant('keymap-notify' as const),
    window: windowId,
    keys: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  }),
  fc.record({ kind: fc.constant('window-flags' as const), window: windowId, flagsSet: u32, flagsUnset: u32 }),
  fc.record({
    kind: fc.constant('unknown' as const),
    type: fc.integer({ min: 100, max: 200 }),
    window: windowId,
    body: fc.uint8Array({ maxLength: 64 }),
  }),
);

type Mutation =
  | { kind: 'none' }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'cut'; at: number }
  | { kind: 'junk'; bytes: Uint8Array };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'none' as const }) },
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('junk' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
);

function stream(messages: readonly GuiMessage[], mutations: readonly Mutation[]): Uint8Array {
  const parts = messages.map((m, i) => {
    const bytes = encodeMessage(m);
    const mut = mutations[i] ?? { kind: 'none' };
    if (mut.kind === 'flip') bytes[mut.at % bytes.length]! ^= 1 << mut.bit;
    if (mut.kind === 'cut') return bytes.subarray(0, mut.at % bytes.length);
    if (mut.kind === 'junk') return mut.bytes;
    return bytes;
  });
  return Buffer.concat(parts);
}

const handshake = Buffer.concat([encodeVersion(versionWord(1, 7)), encodeXconf(xconfFor(1920, 1080))]);

describe('fuzz: daemon → agent messages', () => {
  it('the parser returns items or a GuiProtocolError, for any bytes split anywhere', () => {
    fc.assert(
      fc.property(
        fc.array(daemonMessage, { maxLength: 30 }),
        fc.array(mutation, { maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
        (messages, mutations, splits) => {
          const bytes = Buffer.concat([handshake, stream(messages, mutations)]);
          const parser = new DaemonStreamParser(versionWord(1, 7));
          let at = 0;
          let k = 0;
          try {
            while (at < bytes.length) {
              const n = splits[k++ % splits.length]!;
              parser.push(bytes.subarray(at, at + n));
              at += n;
              while (parser.next()) {}
            }
          } catch (error) {
            expect(error).toBeInstanceOf(GuiProtocolError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('a whole agent with an open window survives or ends with a GuiProtocolError, within its bounds', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(daemonMessage, { maxLength: 40 }),
        fc.array(mutation, { maxLength: 40 }),
        async (messages, mutations) => {
          const hv = new SimHypervisor({ gntallocLimit: 1024 });
          const vm = hv.createDomain();
          const pair = memoryVchanPair();
          const channel = {
            localDomain: vm.domid,
            remoteDomain: 0,
            port: 6000,
            transport: 'memory' as const,
          };
          const transport: VchanTransport = {
            localDomain: vm.domid,
            listen: async () => new VchanStream(pair.server, { ...channel, role: 'server' }),
            connect: () => Promise.reject(new Error('not used')),
          };
          const started = GuiAgent.start({ transport, guiDomain: 0, grants: vm.grantSharer });
          const daemon = new VchanStream(pair.connect(), {
            ...channel,
            localDomain: 0,
            remoteDomain: vm.domid,
            role: 'client',
          });
          daemon.resume(); // discard what the agent sends
          daemon.write(handshake);
          const agent = await started;
          const window = agent.openWindow({ title: 'fuzz', width: 64, height: 64 });
          daemon.write(stream(messages, mutations));
          await new Promise((resolve) => setTimeout(resolve, 5));
          expect(window.events.length).toBeLessThanOrEqual(window.events.limit);
          expect(agent.sharedPages).toBeLessThanOrEqual(2 * Math.ceil((16384 * 6144 * 4) / 4096));
          agent.close();
          const error = await agent.ended;
          if (error !== undefined && !(error instanceof GuiProtocolError)) throw error;
          daemon.destroy();
        },
      ),
      { numRuns: 150 },
    );
  });
});
