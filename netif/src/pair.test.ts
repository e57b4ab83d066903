import { describe, expect, it } from 'vitest';
import { plainMeta } from './device.ts';
import { simNetifPair } from './sim/index.ts';
import { collect, frame, until } from './test-support.ts';
import { XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from './wire.ts';

describe('our netfront <-> our netback on sim', () => {
  it('connects and carries frames both ways', async () => {
    const pair = await simNetifPair();
    expect(pair.front.state).toBe('connected');
    expect(pair.back.state).toBe('connected');
    expect(pair.back.peer).toBe(pair.frontendDomain.domid);
    expect(pair.front.peer).toBe(pair.backendDomain.domid);
    expect(pair.front.mac).toBe(pair.back.mac);
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    expect(pair.front.send(frame(60, 1))).toBe(true);
    expect(pair.back.send(frame(1514, 2))).toBe(true);
    await until(() => atBack.length === 1 && atFront.length === 1, 'both frames');
    expect(atBack[0]!.data).toEqual(frame(60, 1));
    expect(atFront[0]!.data).toEqual(frame(1514, 2));
    expect(atBack[0]!.meta).toEqual(plainMeta());
    await pair.close();
  });

  it('reads the MTU the toolstack wrote', async () => {
    const pair = await simNetifPair({ mtu: 9000 });
    expect(pair.front.mtu).toBe(9000);
    expect(pair.back.mtu).toBe(9000);
    await pair.close();
  });

  it('carries multi-slot (scatter-gather) frames both ways', async () => {
    const pair = await simNetifPair();
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    for (const len of [4096, 4097, 9014, 12288]) {
      pair.front.send(frame(len, len));
      pair.back.send(frame(len, len + 1));
    }
    await until(() => atBack.length === 4 && atFront.length === 4, 'jumbo frames');
    expect(atBack.map((r) => r.data.length)).toEqual([4096, 4097, 9014, 12288]);
    for (const [i, len] of [4096, 4097, 9014, 12288].entries()) {
      expect(atBack[i]!.data).toEqual(frame(len, len));
      expect(atFront[i]!.data).toEqual(frame(len, len + 1));
    }
    await pair.close();
  });

  it('carries a 64 KiB GSO segment as one multi-slot frame with its MSS, both ways', async () => {
    const pair = await simNetifPair();
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    const big = frame(65535, 9);
    const gso4 = { csumBlank: true, dataValidated: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV4, gsoSize: 1448 };
    const gso6 = { csumBlank: true, dataValidated: true, gsoType: XEN_NETIF_GSO_TYPE_TCPV6, gsoSize: 1428 };
    expect(pair.front.send(big, gso4)).toBe(true);
    expect(pair.back.send(big, gso6)).toBe(true);
    await until(() => atBack.length === 1 && atFront.length === 1, 'GSO frames');
    expect(atBack[0]!.data).toEqual(big);
    expect(atBack[0]!.meta).toEqual(gso4);
    expect(atFront[0]!.data).toEqual(big);
    expect(atFront[0]!.meta).toEqual(gso6);
    expect(pair.back.stats().gsoFrames).toBe(2);
    expect(pair.front.stats().gsoFrames).toBe(2);
    // 16 data slots + 1 extra each way.
    expect(pair.back.stats().slots).toBe(34);
    await pair.close();
  });

  it('keeps the checksum flags (blank, validated) in both directions', async () => {
    const pair = await simNetifPair();
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    const blank = { csumBlank: true, dataValidated: true, gsoType: 0, gsoSize: 0 };
    const validated = { csumBlank: false, dataValidated: true, gsoType: 0, gsoSize: 0 };
    for (const m of [blank, validated, plainMeta()]) {
      pair.front.send(frame(100, 1), m);
      pair.back.send(frame(100, 2), m);
    }
    await until(() => atBack.length === 3 && atFront.length === 3, 'frames');
    expect(atBack.map((r) => r.meta)).toEqual([blank, validated, plainMeta()]);
    expect(atFront.map((r) => r.meta)).toEqual([blank, validated, plainMeta()]);
    await pair.close();
  });

  it('moves a burst with one grant-copy call per direction and few notifications', async () => {
    const pair = await simNetifPair();
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    const before = pair.back.stats();
    const frontBefore = pair.front.stats();
    for (let i = 0; i < 200; i++) {
      pair.front.send(frame(64 + i, i));
      pair.back.send(frame(64 + i, i + 1));
    }
    await until(() => atBack.length === 200 && atFront.length === 200, 'the burst');
    const after = pair.back.stats();
    expect(after.copyBatches - before.copyBatches).toBe(2);
    // One kick for the TX burst; netback's notifications: one TX-response batch, one RX batch.
    expect(pair.front.stats().eventsOut - frontBefore.eventsOut).toBeLessThanOrEqual(2);
    expect(after.eventsOut - before.eventsOut).toBeLessThanOrEqual(2);
    expect(atBack.map((r) => r.data.length)).toEqual(Array.from({ length: 200 }, (_, i) => 64 + i));
    await pair.close();
  });

  it('delivers more frames than the rings hold, in order, both ways', async () => {
    const pair = await simNetifPair();
    const atBack = collect(pair.back);
    const atFront = collect(pair.front);
    let sentFront = 0;
    let sentBack = 0;
    // Keep both queues topped up; send refuses (and counts) only when full.
    while (sentFront < 3000 || sentBack < 3000) {
      while (sentFront < 3000 && pair.front.send(frame(1500, sentFront))) sentFront++;
      while (sentBack < 3000 && pair.back.send(frame(1500, sentBack))) sentBack++;
      await new Promise((r) => setImmediate(r));
    }
    await until(() => atBack.length === 3000 && atFront.length === 3000, 'all frames', 20_000);
    for (const i of [0, 1, 255, 256, 1000, 2999]) {
      expect(atBack[i]!.data).toEqual(frame(1500, i));
      expect(atFront[i]!.data).toEqual(frame(1500, i));
    }
    await pair.close();
  });

  it('drops (and counts) what a peer did not ask for: multi-slot without sg, GSO without gso', async () => {
    const pair = await simNetifPair({ frontendFeatures: { sg: false, gsoTcpv4: false, gsoTcpv6: false } });
    const atFront = collect(pair.front);
    expect(pair.back.frontendFeatures.sg).toBe(false);
    pair.back.send(frame(5000, 1));
    pair.back.send(frame(1000, 2), { csumBlank: true, dataValidated: true, gsoType: 1, gsoSize: 500 });
    pair.back.send(frame(1000, 3));
    await until(() => atFront.length === 1, 'the plain frame');
    expect(atFront[0]!.data).toEqual(frame(1000, 3));
    expect(pair.back.stats().txDropped).toBe(2);
    // And our netfront does not send what the backend did not offer either.
    const pair2 = await simNetifPair({ backendFeatures: { sg: false, gsoTcpv4: false, gsoTcpv6: false } });
    expect(pair2.front.send(frame(5000, 1))).toBe(false);
    expect(
      pair2.front.send(frame(100, 1), { csumBlank: false, dataValidated: false, gsoType: 1, gsoSize: 50 }),
    ).toBe(false);
    expect(pair2.front.stats().txDropped).toBe(2);
    await pair.close();
    await pair2.close();
  });

  it('ends both devices cleanly on close, with nothing held', async () => {
    const pair = await simNetifPair();
    const { front, back, netback } = pair;
    const closedBack = new Promise<string>((r) => back.onClose(r));
    await front.close();
    expect(front.state).toBe('closed');
    expect(front.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
    expect(front.send(frame(60, 1))).toBe(false);
    await until(() => back.resources().mappings === 0, 'the backend to unmap');
    expect(back.resources().eventChannels).toBe(0);
    await netback.close();
    expect(await closedBack).toBe('closed by us');
    expect(netback.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
    await pair.close();
  });
});

describe('frame listeners', () => {
  it('a listener that throws costs a log line, not the connection', async () => {
    const out: string[] = [];
    const pair = await simNetifPair({ log: (l) => out.push(l) });
    pair.back.onFrame(() => {
      throw new Error('bug in the bridge');
    });
    const got = collect(pair.back);
    pair.front.send(frame(60, 1));
    pair.front.send(frame(60, 2));
    await until(() => got.length === 2, 'both frames');
    expect(pair.back.state).toBe('connected');
    expect(out.filter((l) => l.includes('bug in the bridge')).length).toBeGreaterThan(0);
    await pair.close();
  });
});
