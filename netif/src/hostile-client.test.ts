/**
 * A client domain that writes anything into its shared rings: each violation costs that
 * client its connection (with a log line), never the netback domain or another client.
 */
import { describe, expect, it } from 'vitest';
import { type NetbackDevice, startNetback } from './netback.ts';
import { connectNetfront } from './netfront.ts';
import { RawFrontend, SimNetifWorld } from './sim/index.ts';
import { collect, frame, lines, settle, until } from './test-support.ts';
import {
  decodeTxResponse,
  encodeRxRequest,
  encodeTxRequest,
  NETIF_RSP_ERROR,
  NETTXF_extra_info,
  NETTXF_more_data,
  type TxRequest,
  XEN_NETIF_EXTRA_TYPE_GSO,
} from './wire.ts';

async function setup(keys?: Record<string, string>) {
  const world = new SimNetifWorld();
  const be = world.backend.domain.domid;
  const log = lines();
  const devices = new Map<number, NetbackDevice>();
  const netback = await startNetback({
    xen: world.backend.domain,
    xenstore: world.backend.xenstore,
    log: log.log,
    removeClosedAfterMs: 0,
    onDevice: (d) => devices.set(d.peer, d),
  });
  const good = world.addDomain('good');
  await world.toolstack.attach({ frontend: good.domain.domid, backend: be });
  const goodFront = await connectNetfront({ xen: good.domain, xenstore: good.xenstore, log: log.log });
  const evil = world.addDomain('evil');
  await world.toolstack.attach({ frontend: evil.domain.domid, backend: be });
  const raw = await RawFrontend.connect({
    domain: evil.domain,
    xenstore: evil.xenstore,
    backend: be,
    ...(keys ? { keys } : {}),
  });
  await until(() => devices.has(evil.domain.domid), 'the evil device');
  const evilDev = devices.get(evil.domain.domid)!;
  if (!keys) await evilDev.connected();
  const goodDev = devices.get(good.domain.domid)!;
  await goodDev.connected();
  return { world, log, netback, good, goodFront, goodDev, evil, raw, evilDev };
}

type Setup = Awaited<ReturnType<typeof setup>>;

function writeTx(raw: RawFrontend, i: number, r: Partial<TxRequest>): void {
  encodeTxRequest(raw.tx, RawFrontend.txSlot(i), {
    gref: raw.txPages.refs[0]!,
    offset: 0,
    flags: 0,
    id: i & 0xffff,
    size: 60,
    ...r,
  });
}

/** The evil client lost its connection, the log says why, and the good client still talks both ways. */
async function expectOnlyEvilCut(s: Setup, reason: RegExp): Promise<void> {
  await until(() => s.evilDev.stats().fatalErrors === 1, 'the evil client to be cut');
  await until(
    () => s.evilDev.resources().mappings === 0 && s.evilDev.resources().eventChannels === 0,
    'unmap',
  );
  expect(s.log.lines.filter((l) => reason.test(l))).toHaveLength(1);
  const b = s.evilDev.backendPath;
  await until(() => s.world.xs.peek(`${b}/state`)?.value === '5', 'backend state Closing');
  expect(s.world.openPorts(s.world.backend.domain.domid)).toBe(1); // the good client's
  const atBack = collect(s.goodDev);
  const atFront = collect(s.goodFront);
  s.goodFront.send(frame(100, 1));
  s.goodDev.send(frame(200, 2));
  await until(() => atBack.length === 1 && atFront.length === 1, 'the good client to be served');
  expect(s.goodDev.stats().fatalErrors).toBe(0);
  await s.netback.close();
  s.world.close();
}

describe('netback against a hostile client', () => {
  it('cuts a client whose TX req_prod jumps past the ring', async () => {
    const s = await setup();
    s.raw.setTxReqProd(1000);
    s.raw.notify();
    await expectOnlyEvilCut(s, /TX request index jumped/);
  });

  it('cuts a client whose RX req_prod jumps past the ring', async () => {
    const s = await setup();
    s.raw.setRxReqProd(5000);
    s.raw.notify();
    await expectOnlyEvilCut(s, /RX request index jumped/);
  });

  it('cuts a client whose slot crosses its page (offset + size > 4096)', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { offset: 4000, size: 200 });
    s.raw.setTxReqProd(1);
    s.raw.notify();
    await expectOnlyEvilCut(s, /crosses its page/);
  });

  it('cuts a client whose slots claim more bytes than the packet', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { size: 100, flags: NETTXF_more_data });
    writeTx(s.raw, 1, { size: 200, gref: s.raw.txPages.refs[1]! });
    s.raw.setTxReqProd(2);
    s.raw.notify();
    await expectOnlyEvilCut(s, /claim 200 bytes/);
  });

  it('cuts a client that names grant refs it did not grant us', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { gref: 3 });
    s.raw.setTxReqProd(1);
    s.raw.notify();
    await expectOnlyEvilCut(s, /TX grant ref 3 refused/);
  });

  it('cuts a client whose ref lies beyond any grant table', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { gref: 0xfffffff0 });
    s.raw.setTxReqProd(1);
    s.raw.notify();
    await expectOnlyEvilCut(s, /refused by Xen/);
  });

  it('cuts a client whose multi-slot chain never ends', async () => {
    const s = await setup();
    for (let i = 0; i < 256; i++) writeTx(s.raw, i, { size: i === 0 ? 6000 : 100, flags: NETTXF_more_data });
    s.raw.setTxReqProd(256);
    s.raw.notify();
    await expectOnlyEvilCut(s, /chains more than 18 slots/);
  });

  it('cuts a client sending an extra-info slot of unknown type', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { flags: NETTXF_extra_info });
    s.raw.tx.setUint8(RawFrontend.txSlot(1), 9);
    s.raw.setTxReqProd(2);
    s.raw.notify();
    await expectOnlyEvilCut(s, /extra-info slot of unknown type 9/);
  });

  it('cuts a client sending GSO with MSS 0', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { flags: NETTXF_extra_info });
    const e = RawFrontend.txSlot(1);
    s.raw.tx.setUint8(e, XEN_NETIF_EXTRA_TYPE_GSO);
    s.raw.tx.setUint8(e + 1, 0);
    s.raw.tx.setUint16(e + 2, 0, true);
    s.raw.tx.setUint8(e + 4, 1);
    s.raw.setTxReqProd(2);
    s.raw.notify();
    await expectOnlyEvilCut(s, /MSS 0/);
  });

  it('cuts a client whose RX buffers are grants it never gave', async () => {
    const s = await setup();
    for (let i = 0; i < 4; i++) encodeRxRequest(s.raw.rx, RawFrontend.rxSlot(i), { id: i, gref: 5 });
    s.raw.setRxReqProd(4);
    s.raw.notify();
    await settle();
    s.evilDev.send(frame(100, 1));
    await expectOnlyEvilCut(s, /RX grant ref 5 refused/);
  });

  it('refuses a client whose xenstore keys are garbage, without mapping anything', async () => {
    const s = await setup({ 'tx-ring-ref': 'abc' });
    await until(() => s.evilDev.stats().fatalErrors === 1, 'refusal');
    expect(s.log.lines.some((l) => /refusing frontend: frontend wrote no valid tx-ring-ref/.test(l))).toBe(
      true,
    );
    expect(s.evilDev.resources().mappings).toBe(0);
    await expectOnlyEvilCut(s, /refusing frontend/);
  });

  it('refuses a client whose ring refs are not granted to us', async () => {
    const s = await setup({ 'tx-ring-ref': '3' });
    await expectOnlyEvilCut(s, /cannot map its rings/);
  });

  it('drops a too-short packet with an error response but keeps the client', async () => {
    const s = await setup();
    writeTx(s.raw, 0, { size: 10, id: 7 });
    s.raw.setTxReqProd(1);
    s.raw.notify();
    await until(() => s.raw.txRspProd() === 1, 'the response');
    expect(decodeTxResponse(s.raw.tx, RawFrontend.txSlot(0))).toEqual({ id: 7, status: NETIF_RSP_ERROR });
    expect(s.evilDev.stats()).toMatchObject({ rxDropped: 1, fatalErrors: 0, rxFrames: 0 });
    expect(s.evilDev.state).toBe('connected');
    await s.netback.close();
    s.world.close();
  });

  it('waits for the rest of an incomplete chain and then delivers it', async () => {
    const s = await setup();
    const got = collect(s.evilDev);
    new Uint8Array(s.raw.txPages.buffer).set(frame(8192, 3));
    writeTx(s.raw, 0, { size: 6000, flags: NETTXF_more_data, gref: s.raw.txPages.refs[0]! });
    s.raw.setTxReqProd(1);
    s.raw.notify();
    await settle(50);
    expect(got).toHaveLength(0);
    expect(s.evilDev.state).toBe('connected');
    writeTx(s.raw, 1, { size: 6000 - 4096, gref: s.raw.txPages.refs[1]! });
    s.raw.setTxReqProd(2);
    s.raw.notify();
    await until(() => got.length === 1, 'the completed packet');
    expect(got[0]!.data).toEqual(frame(8192, 3).subarray(0, 6000));
    await s.netback.close();
    s.world.close();
  });

  it('bounds what is queued for a client that never posts RX buffers', async () => {
    const s = await setup();
    let accepted = 0;
    for (let i = 0; i < 5000; i++) if (s.evilDev.send(frame(1500, i))) accepted++;
    expect(accepted).toBeLessThan(1000);
    expect(s.evilDev.stats().txDropped).toBe(5000 - accepted);
    await settle();
    expect(s.evilDev.state).toBe('connected');
    const atFront = collect(s.goodFront);
    s.goodDev.send(frame(200, 2));
    await until(() => atFront.length === 1, 'the good client');
    await s.netback.close();
    s.world.close();
  });

  it('keeps serving other clients while one floods valid packets', async () => {
    const s = await setup();
    const atBack = collect(s.goodDev);
    const evilGot = collect(s.evilDev);
    let produced = 0;
    let goodSent = 0;
    for (let round = 0; atBack.length < 500 || produced < 4096; round++) {
      if (round > 20_000) throw new Error('the good client starved');
      // Refill the evil ring whenever netback answered everything.
      if (s.raw.txRspProd() === produced >>> 0) {
        for (let k = 0; k < 256; k++) writeTx(s.raw, produced + k, { gref: s.raw.txPages.refs[k % 32]! });
        produced += 256;
        s.raw.setTxReqProd(produced);
        s.raw.notify();
      }
      while (goodSent < 500 && s.goodFront.send(frame(100, goodSent))) goodSent++;
      await new Promise((r) => setImmediate(r));
    }
    expect(evilGot.length).toBeGreaterThanOrEqual(4096 - 256);
    expect(s.evilDev.stats().fatalErrors).toBe(0);
    await s.netback.close();
    s.world.close();
  });

  it('survives an event storm', async () => {
    const s = await setup();
    for (let i = 0; i < 100_000; i++) s.raw.notify();
    await settle();
    expect(s.evilDev.state).toBe('connected');
    expect(s.evilDev.stats().eventsIn).toBeLessThan(100);
    await s.netback.close();
    s.world.close();
  });

  it('frees everything when a connected client is destroyed', async () => {
    const s = await setup();
    const be = s.world.backend.domain.domid;
    await s.world.destroy(s.evil);
    await until(() => s.evilDev.state === 'closed', 'the device to end');
    expect(s.evilDev.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
    expect(s.netback.devices().map((d) => d.peer)).toEqual([s.good.domain.domid]);
    expect(s.world.openPorts(be)).toBe(1);
    await expectGoodStillServed(s);
  });
});

async function expectGoodStillServed(s: Setup): Promise<void> {
  const atBack = collect(s.goodDev);
  s.goodFront.send(frame(100, 1));
  await until(() => atBack.length === 1, 'the good client');
  await s.netback.close();
  s.world.close();
}

describe('a client that keeps coming back to break the protocol', () => {
  it('is cut every time, with log lines rate-limited, and the VM keeps serving', async () => {
    const s = await setup();
    const f = `/local/domain/${s.evil.domain.domid}/device/vif/0`;
    let raw = s.raw;
    for (let round = 0; round < 20; round++) {
      raw.setTxReqProd(5000);
      raw.notify();
      await until(() => s.evilDev.stats().fatalErrors === round + 1, `cut ${round}`);
      // The frontend goes Closed, then Initialising again, and reconnects with fresh pages.
      await s.evil.xenstore.write(`${f}/state`, '6');
      await until(() => s.world.xs.peek(`${s.evilDev.backendPath}/state`)?.value === '6', 'backend Closed');
      raw.release();
      await s.evil.xenstore.write(`${f}/state`, '1');
      raw = await RawFrontend.connect({
        domain: s.evil.domain,
        xenstore: s.evil.xenstore,
        backend: s.world.backend.domain.domid,
      });
      await s.evilDev.connected();
    }
    expect(s.evilDev.stats().fatalErrors).toBe(20);
    expect(s.log.lines.filter((l) => l.includes('TX request index jumped')).length).toBeLessThanOrEqual(5);
    // Only the live connection's two mappings and one channel are held, whatever came before.
    expect(s.evilDev.resources()).toEqual({ grants: 0, mappings: 2, eventChannels: 1, watches: 3 });
    await expectGoodStillServed(s);
  });
});
