/**
 * Events are sent only when a ring's event index asks, and at most one per pass: TX and RX
 * responses share one channel, and Linux's frontends and backends delay their next event
 * after one that finds nothing new (xen_irq_lateeoi's spurious-event backoff).
 */
import { describe, expect, it } from 'vitest';
import { type NetbackDevice, startNetback } from './netback.ts';
import { connectNetfront } from './netfront.ts';
import { RawBackend, RawFrontend, SimNetifWorld } from './sim/index.ts';
import { frame, settle, until } from './test-support.ts';
import { encodeRxRequest, encodeRxResponse, encodeTxRequest, RING_REQ_EVENT } from './wire.ts';

describe('notifications', () => {
  it('netback: one pass answering TX requests and filling RX buffers sends one event', async () => {
    const world = new SimNetifWorld();
    const devices: NetbackDevice[] = [];
    const netback = await startNetback({
      xen: world.backend.domain,
      xenstore: world.backend.xenstore,
      log: () => undefined,
      removeClosedAfterMs: 0,
      onDevice: (d) => devices.push(d),
    });
    const client = world.addDomain('client');
    await world.toolstack.attach({ frontend: client.domain.domid, backend: world.backend.domain.domid });
    const raw = await RawFrontend.connect({
      domain: client.domain,
      xenstore: client.xenstore,
      backend: world.backend.domain.domid,
    });
    await until(() => devices.length === 1, 'the device');
    const dev = devices[0]!;
    await dev.connected();
    await settle();
    // A frame for the client waits: it has posted no RX buffer yet.
    expect(dev.send(frame(60, 1))).toBe(true);
    await settle();
    expect(raw.rxRspProd()).toBe(0);
    const before = dev.stats().eventsOut;
    // One TX request and one RX buffer, one event: the backend's pass answers both.
    encodeTxRequest(raw.tx, RawFrontend.txSlot(0), {
      gref: raw.txPages.refs[0]!,
      offset: 0,
      flags: 0,
      id: 0,
      size: 60,
    });
    encodeRxRequest(raw.rx, RawFrontend.rxSlot(0), { id: 0, gref: raw.rxPages.refs[0]! });
    raw.setTxReqProd(1);
    raw.setRxReqProd(1);
    raw.notify();
    await until(() => raw.txRspProd() === 1 && raw.rxRspProd() === 1, 'both responses');
    await settle();
    expect(dev.stats().eventsOut - before).toBe(1);
    await netback.close();
    world.close();
  });

  it('netfront: posting RX buffers and TX requests in one pass sends one event', async () => {
    const world = new SimNetifWorld('netvm');
    const us = world.addDomain('us');
    await world.toolstack.attach({ frontend: us.domain.domid, backend: world.backend.domain.domid });
    const connecting = connectNetfront({
      xen: us.domain,
      xenstore: us.xenstore,
      log: () => undefined,
      timeoutMs: 2000,
    });
    const raw = await RawBackend.serve({
      domain: world.backend.domain,
      xenstore: world.backend.xenstore,
      frontend: us.domain.domid,
    });
    const front = await connecting;
    await settle();
    const before = front.stats().eventsOut;
    // The backend asks for an event at the next TX request and at the next RX buffer, as
    // Linux's netback does when its rings run dry, and answers one RX buffer.
    raw.tx.setUint32(RING_REQ_EVENT, raw.txReqProd() + 1, true);
    raw.rx.setUint32(RING_REQ_EVENT, raw.rxReqProd() + 1, true);
    encodeRxResponse(raw.rx, RawFrontend.rxSlot(0), { id: 0, offset: 0, flags: 0, status: 60 });
    // Our user answers the frame in the same turn: its TX request and the re-posted buffer
    // go out together.
    front.onFrame(() => front.send(frame(60, 2)));
    raw.setRxRspProd(1);
    raw.notify();
    await until(() => raw.txReqProd() === 1 && raw.rxReqProd() === 257, 'the reply and the buffer');
    await settle();
    expect(front.stats().rxFrames).toBe(1);
    expect(front.stats().eventsOut - before).toBe(1);
    await front.close();
    world.close();
  });
});
