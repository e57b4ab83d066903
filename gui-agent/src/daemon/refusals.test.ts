import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { SimHypervisor } from '@moat/xen/sim';
import { afterAll, describe, expect, it } from 'vitest';
import { ExactReader } from '../byte-queue.ts';
import { GuiProtocolError } from '../errors.ts';
import {
  encodeHeader,
  encodeMessage,
  encodeVersion,
  GUI_VCHAN_PORT,
  type GuiMessage,
  MAX_GRANT_REFS_COUNT,
  MAX_MFN_COUNT,
  Msg,
  versionWord,
} from '../wire.ts';
import { GuiDaemon } from './daemon.ts';
import { REFUSALS } from './refusals.ts';

const directory = mkdtempSync(join(tmpdir(), 'gui-refusals-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const create = (window: number, width = 16, height = 16): GuiMessage => ({
  kind: 'create',
  window,
  x: 0,
  y: 0,
  width,
  height,
  parent: 0,
  overrideRedirect: 0,
});

/** Raw bytes: a header claiming `claimed` body bytes, then `body`. */
function raw(type: number, window: number, body: Uint8Array, claimed = body.length): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  encodeHeader({ type, window, untrustedLength: claimed }, out);
  out.set(body, 12);
  return out;
}

function words(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const v = new DataView(out.buffer);
  values.forEach((value, i) => {
    v.setUint32(i * 4, value >>> 0, true);
  });
  return out;
}

/** A hand-written agent: announces `version`, reads the daemon's answer, then sends `bytes`. */
async function refusalOf(
  bytes: (sim: { share(pages: number): number[] }) => Uint8Array[],
  version = versionWord(1, 7),
): Promise<string> {
  const hv = new SimHypervisor();
  const vm = hv.createDomain();
  const server = await socketVchanTransport({ directory, localDomain: vm.domid }).listen({
    peer: 0,
    port: GUI_VCHAN_PORT,
  });
  server.write(encodeVersion(version));
  const daemonStarted = GuiDaemon.connect({
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    vmDomain: vm.domid,
    grants: hv.dom0.grantMapper,
    timeoutMs: 5000,
  });
  let outcome: Error | undefined;
  try {
    const daemon = await daemonStarted;
    const reader = new ExactReader(server);
    await reader.read(version >= versionWord(1, 4) ? 20 : 16);
    const share = (pages: number) => [...vm.grantSharer.share(0, pages, { writable: false }).refs];
    for (const chunk of bytes({ share })) server.write(chunk);
    outcome = await daemon.ended;
  } catch (error) {
    outcome = error as Error;
  } finally {
    server.destroy();
  }
  if (!(outcome instanceof GuiProtocolError)) throw new Error(`not refused: ${String(outcome)}`);
  return outcome.reason;
}

const CASES: Record<string, Parameters<typeof refusalOf>> = {
  'agent-version': [() => [], versionWord(2, 0)],
  'clipboard-too-long': [() => [raw(Msg.CLIPBOARD_DATA, 0, new Uint8Array(0), 65001)]],
  'duplicate-create': [() => [encodeMessage(create(1)), encodeMessage(create(1))]],
  'unknown-window': [() => [encodeMessage({ kind: 'map', window: 7, transientFor: 0, overrideRedirect: 0 })]],
  'bad-length': [() => [raw(Msg.CREATE, 1, new Uint8Array(24), 28)]],
  'mfndump-too-short': [() => [encodeMessage(create(1)), raw(Msg.MFNDUMP, 1, new Uint8Array(0), 20)]],
  'mfndump-too-many': [
    () => [encodeMessage(create(1)), raw(Msg.MFNDUMP, 1, words(0, 1, 1, 24, 0, MAX_MFN_COUNT + 1, 0), 28)],
  ],
  'mfndump-too-big': [
    () => [encodeMessage(create(1)), raw(Msg.MFNDUMP, 1, words(0, 16385, 1, 24, 0, 1, 0), 32)],
  ],
  'mfndump-bad-offset': [
    () => [encodeMessage(create(1)), raw(Msg.MFNDUMP, 1, words(0, 1, 1, 24, 4096, 1, 0), 32)],
  ],
  'mfndump-too-small': [
    () => [encodeMessage(create(1)), raw(Msg.MFNDUMP, 1, words(0, 64, 64, 24, 0, 1, 0, 5))],
  ],
  'mfndump-unsupported': [
    () => [encodeMessage(create(1)), raw(Msg.MFNDUMP, 1, words(0, 32, 32, 24, 0, 1, 0, 5))],
  ],
  'window-dump-too-short': [() => [encodeMessage(create(1)), raw(Msg.WINDOW_DUMP, 1, new Uint8Array(0), 12)]],
  'window-dump-type': [() => [encodeMessage(create(1)), raw(Msg.WINDOW_DUMP, 1, words(1, 1, 1, 32, 5))]],
  'window-dump-too-big': [
    () => [encodeMessage(create(1)), raw(Msg.WINDOW_DUMP, 1, words(0, 1, 6145, 32, 5))],
  ],
  'window-dump-body': [
    () => [
      encodeMessage(create(1)),
      raw(Msg.WINDOW_DUMP, 1, words(0, 1, 1, 32), 16 + 4 * (MAX_GRANT_REFS_COUNT + 1)),
    ],
  ],
  'window-dump-too-small': [
    () => [encodeMessage(create(1)), raw(Msg.WINDOW_DUMP, 1, words(0, 64, 64, 32, 5))],
  ],
  'window-dump-unmappable': [
    () => [encodeMessage(create(1)), raw(Msg.WINDOW_DUMP, 1, words(0, 16, 16, 32, 12345))],
  ],
  'unknown-type': [() => [encodeMessage(create(1)), raw(Msg.KEYPRESS, 1, new Uint8Array(20))]],
  'create-negative-size': [() => [raw(Msg.CREATE, 1, words(0, 0, -5, 10, 0, 0))]],
  'configure-zero-size': [
    () => [
      encodeMessage(create(1)),
      encodeMessage({ kind: 'configure', window: 1, x: 0, y: 0, width: 0, height: 10, overrideRedirect: 0 }),
    ],
  ],
  'window-flags-conflict': [
    () => [
      encodeMessage(create(1)),
      encodeMessage({ kind: 'window-flags', window: 1, flagsSet: 1, flagsUnset: 1 }),
    ],
  ],
  'bad-cursor': [
    () => [encodeMessage(create(1)), encodeMessage({ kind: 'cursor', window: 1, cursor: 0x19a })],
  ],
};

describe("the lab daemon refuses every malformed message Qubes' daemon refuses", () => {
  it('has a case for every refusal in the list', () => {
    expect(Object.keys(CASES).sort()).toEqual(REFUSALS.map((r) => r.reason).sort());
  });

  for (const refusal of REFUSALS) {
    it(`${refusal.reason}: ${refusal.what} (xside.c:${refusal.line})`, async () => {
      expect(await refusalOf(...CASES[refusal.reason]!)).toBe(refusal.reason);
    });
  }

  it('below 1.6 a wrong untrusted_len is a warning, and the struct size is read (CHECK_LEN)', async () => {
    // At 1.5 the daemon reads the 24-byte struct whatever the claim; the next message then parses.
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const server = await socketVchanTransport({ directory, localDomain: vm.domid }).listen({
      peer: 0,
      port: GUI_VCHAN_PORT,
    });
    server.write(encodeVersion(versionWord(1, 5)));
    const daemon = await GuiDaemon.connect({
      transport: socketVchanTransport({ directory, localDomain: 0 }),
      vmDomain: vm.domid,
      grants: hv.dom0.grantMapper,
    });
    server.write(raw(Msg.CREATE, 1, encodeMessage(create(1)).subarray(12), 99));
    server.write(encodeMessage({ kind: 'unmap', window: 1 }));
    await daemon.waitFor('unmap');
    expect(daemon.version).toBe(versionWord(1, 5));
    expect(daemon.warnings).toEqual(['MSG_CREATE untrusted_len 99, struct size 24 (protocol < 1.6)']);
    daemon.disconnect();
    server.destroy();
  });

  it('a message after the window was destroyed is for an unknown window', async () => {
    const reason = await refusalOf(() => [
      encodeMessage(create(3)),
      encodeMessage({ kind: 'destroy', window: 3 }),
      encodeMessage({ kind: 'shmimage', window: 3, x: 0, y: 0, width: 1, height: 1 }),
    ]);
    expect(reason).toBe('unknown-window');
  });
});
