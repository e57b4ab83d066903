import { describe, expect, it } from 'vitest';
import { completeChecksum } from './checksum.ts';
import { startNetback } from './netback.ts';
import { RawFrontend, SimNetifWorld } from './sim/index.ts';
import { until } from './test-support.ts';
import { encodeRxRequest, NETRXF_csum_blank, NETRXF_data_validated } from './wire.ts';

function sum16(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** An Ethernet frame with a UDP/IPv4 (or TCP/IPv6) segment; `partial` puts the pseudo-header sum in the field. */
function packet(
  kind: 'udp4' | 'tcp6',
  payload: number[],
  partial: boolean,
): { frame: Uint8Array; full: number } {
  const l4len = (kind === 'udp4' ? 8 : 20) + payload.length;
  const eth = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, ...(kind === 'udp4' ? [0x08, 0x00] : [0x86, 0xdd])];
  let ip: number[];
  let pseudo: number[];
  if (kind === 'udp4') {
    const src = [10, 137, 0, 5];
    const dst = [10, 138, 0, 1];
    const total = 20 + l4len;
    ip = [0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, 17, 0, 0, ...src, ...dst];
    pseudo = [...src, ...dst, 0, 17, l4len >> 8, l4len & 0xff];
  } else {
    const src = [0xfd, 0, ...Array(13).fill(0), 5];
    const dst = [0xfd, 0, ...Array(13).fill(0), 1];
    ip = [0x60, 0, 0, 0, l4len >> 8, l4len & 0xff, 6, 64, ...src, ...dst];
    pseudo = [...src, ...dst, 0, 0, l4len >> 8, l4len & 0xff, 0, 0, 0, 6];
  }
  const l4 =
    kind === 'udp4'
      ? [0x30, 0x39, 0x00, 0x35, l4len >> 8, l4len & 0xff, 0, 0, ...payload]
      : [0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, ...payload];
  const csumAt = kind === 'udp4' ? 6 : 16;
  const full = ~sum16([...pseudo, ...l4]) & 0xffff;
  if (partial) {
    const p = sum16(pseudo);
    l4[csumAt] = p >> 8;
    l4[csumAt + 1] = p & 0xff;
  } else {
    l4[csumAt] = full >> 8;
    l4[csumAt + 1] = full & 0xff;
  }
  return { frame: new Uint8Array([...eth, ...ip, ...l4]), full };
}

describe('completing partial checksums', () => {
  for (const kind of ['udp4', 'tcp6'] as const)
    for (const size of [0, 1, 17, 1000])
      it(`${kind} with ${size} payload bytes gets the checksum computed from scratch`, () => {
        const payload = Array.from({ length: size }, (_, i) => (i * 13 + 7) & 0xff);
        const { frame, full } = packet(kind, payload, true);
        expect(completeChecksum(frame, 0, frame.length)).toBe(true);
        expect(frame).toEqual(packet(kind, payload, false).frame);
        const at = 14 + (kind === 'udp4' ? 20 + 6 : 40 + 16);
        expect((frame[at]! << 8) | frame[at + 1]!).toBe(full === 0 && kind === 'udp4' ? 0xffff : full);
      });

  it('refuses what it cannot complete (not IP, truncated)', () => {
    expect(completeChecksum(new Uint8Array(60), 0, 60)).toBe(false);
    const { frame } = packet('udp4', [1, 2, 3], true);
    expect(completeChecksum(frame, 0, 30)).toBe(false);
  });

  it('netback completes the checksum for a client without checksum offload', async () => {
    const w = new SimNetifWorld();
    const netback = await startNetback({
      xen: w.backend.domain,
      xenstore: w.backend.xenstore,
      log: () => undefined,
      removeClosedAfterMs: 0,
    });
    const c = w.addDomain('client');
    await w.toolstack.attach({ frontend: c.domain.domid, backend: w.backend.domain.domid });
    const raw = await RawFrontend.connect({
      domain: c.domain,
      xenstore: c.xenstore,
      backend: w.backend.domain.domid,
      keys: { 'feature-no-csum-offload': '1' },
    });
    await until(() => netback.devices()[0]?.state === 'connected', 'connection');
    encodeRxRequest(raw.rx, RawFrontend.rxSlot(0), { id: 0, gref: raw.rxPages.refs[0]! });
    raw.setRxReqProd(1);
    raw.notify();
    const payload = Array.from({ length: 100 }, (_, i) => i);
    const partial = packet('udp4', payload, true).frame;
    netback.devices()[0]!.send(partial, { csumBlank: true, dataValidated: true, gsoType: 0, gsoSize: 0 });
    await until(() => raw.rxRspProd() === 1, 'the response');
    const flags = raw.rx.getUint16(RawFrontend.rxSlot(0) + 4, true);
    expect(flags & NETRXF_csum_blank).toBe(0);
    expect(flags & NETRXF_data_validated).toBe(NETRXF_data_validated);
    const got = new Uint8Array(raw.rxPages.buffer, 0, partial.length);
    expect(got).toEqual(packet('udp4', payload, false).frame);
    await netback.close();
    w.close();
  });
});
