/** Our netfront against a backend (the upstream netvm) that writes anything into the rings. */
import { describe, expect, it } from 'vitest';
import { connectNetfront, type NetfrontDevice } from './netfront.ts';
import { RawBackend, RawFrontend, SimNetifWorld } from './sim/index.ts';
import { collect, frame, lines, until } from './test-support.ts';
import { encodeRxResponse, encodeTxResponse, NETIF_RSP_OKAY, NETRXF_more_data } from './wire.ts';

async function setup() {
  const world = new SimNetifWorld('netvm');
  const us = world.addDomain('sys-moat');
  const log = lines();
  await world.toolstack.attach({ frontend: us.domain.domid, backend: world.backend.domain.domid });
  const served = RawBackend.serve({
    domain: world.backend.domain,
    xenstore: world.backend.xenstore,
    frontend: us.domain.domid,
  });
  const front = await connectNetfront({
    xen: us.domain,
    xenstore: us.xenstore,
    log: log.log,
    timeoutMs: 500,
  });
  const raw = await served;
  return { world, us, log, front, raw };
}

async function expectCut(
  s: {
    front: NetfrontDevice;
    log: { lines: string[] };
    world: SimNetifWorld;
    us: { domain: { domid: number } };
  },
  reason: RegExp,
) {
  await until(() => s.front.state === 'closed', 'netfront to give up');
  expect(s.front.stats().fatalErrors).toBe(1);
  expect(s.log.lines.filter((l) => reason.test(l))).toHaveLength(1);
  expect(s.front.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
  expect(s.world.liveGrants(s.us.domain.domid)).toBe(0);
  expect(s.world.openPorts(s.us.domain.domid)).toBe(0);
  s.world.close();
}

describe('netfront against a hostile backend', () => {
  it('receives well-formed frames from a hand-driven backend', async () => {
    const s = await setup();
    const got = collect(s.front);
    // Data into RX buffer 0 via grant copy, as netback does.
    const gref = s.raw.rx.getUint32(RawFrontend.rxSlot(0) + 4, true);
    const status = s.world.backend.domain.grantCopier.copy([
      {
        direction: 'to-grant',
        domain: s.us.domain.domid,
        ref: gref,
        offset: 0,
        length: 100,
        source: frame(100, 5),
        sourceOffset: 0,
      },
    ]);
    expect([...status]).toEqual([0]);
    encodeRxResponse(s.raw.rx, RawFrontend.rxSlot(0), { id: 0, offset: 0, flags: 0, status: 100 });
    s.raw.setRxRspProd(1);
    s.raw.notify();
    await until(() => got.length === 1, 'the frame');
    expect(got[0]!.data).toEqual(frame(100, 5));
    await s.front.close();
    s.world.close();
  });

  it('gives up on a backend whose RX rsp_prod runs past our requests', async () => {
    const s = await setup();
    s.raw.setRxRspProd(300);
    s.raw.notify();
    await expectCut(s, /RX response index jumped/);
  });

  it('gives up on a backend whose TX rsp_prod runs past our requests', async () => {
    const s = await setup();
    s.raw.setTxRspProd(7);
    s.raw.notify();
    await expectCut(s, /TX response index jumped/);
  });

  it('gives up on a backend answering a TX id not in flight', async () => {
    const s = await setup();
    s.front.send(frame(60, 1));
    await until(() => s.raw.txReqProd() === 1, 'the request');
    encodeTxResponse(s.raw.tx, RawFrontend.txSlot(0), { id: 200, status: NETIF_RSP_OKAY });
    s.raw.setTxRspProd(1);
    s.raw.notify();
    await expectCut(s, /TX response for id 200/);
  });

  it('gives up on an RX slot that crosses its page', async () => {
    const s = await setup();
    encodeRxResponse(s.raw.rx, RawFrontend.rxSlot(0), { id: 0, offset: 4000, flags: 0, status: 200 });
    s.raw.setRxRspProd(1);
    s.raw.notify();
    await expectCut(s, /RX slot crosses its page/);
  });

  it('gives up on an RX chain that never ends', async () => {
    const s = await setup();
    for (let i = 0; i < 256; i++)
      encodeRxResponse(s.raw.rx, RawFrontend.rxSlot(i), {
        id: i,
        offset: 0,
        flags: NETRXF_more_data,
        status: 100,
      });
    s.raw.setRxRspProd(256);
    s.raw.notify();
    await expectCut(s, /RX packet chains more than 18 slots/);
  });

  it('drops, without hanging, what a backend that never answers TX leaves no room for', async () => {
    const s = await setup();
    let accepted = 0;
    for (let i = 0; i < 300; i++) if (s.front.send(frame(1500, i))) accepted++;
    expect(accepted).toBe(256);
    expect(s.front.stats().txDropped).toBe(44);
    expect(s.front.txInFlight).toBe(256);
    // Once it answers, the ids come back.
    await until(() => s.raw.txReqProd() === 256, 'the requests');
    for (let i = 0; i < 256; i++) {
      const id = s.raw.tx.getUint16(RawFrontend.txSlot(i) + 8, true);
      encodeTxResponse(s.raw.tx, RawFrontend.txSlot(i), { id, status: NETIF_RSP_OKAY });
    }
    s.raw.setTxRspProd(256);
    s.raw.notify();
    await until(() => s.front.txInFlight === 0, 'the ids to come back');
    expect(s.front.send(frame(60, 1))).toBe(true);
    await s.front.close();
    s.world.close();
  });
});
