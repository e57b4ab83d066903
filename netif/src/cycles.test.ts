/**
 * 500 attach/detach cycles (`xl network-attach` / `network-detach` as libxl does them) of
 * a live client against one netback: grants, mappings, event channels and watches counted
 * back to zero on both sides, by our own counts and at the (sim) Xen and xenstored level.
 */
import { describe, expect, it } from 'vitest';
import type { NetbackDevice } from './netback.ts';
import { startNetback } from './netback.ts';
import { connectNetfront } from './netfront.ts';
import { SimNetifWorld } from './sim/index.ts';
import { collect, frame, lines, until } from './test-support.ts';

const CYCLES = Number(process.env.MOAT_NETIF_CYCLES ?? 500);

describe('attach/detach cycles', () => {
  it(`leaks nothing over ${CYCLES} attach/detach cycles with traffic`, { timeout: 240_000 }, async () => {
    const world = new SimNetifWorld();
    const be = world.backend.domain.domid;
    const client = world.addDomain('client');
    const fe = client.domain.domid;
    const log = lines();
    let current: NetbackDevice | undefined;
    const netback = await startNetback({
      xen: world.backend.domain,
      xenstore: world.backend.xenstore,
      log: log.log,
      removeClosedAfterMs: 0,
      onDevice: (d) => {
        current = d;
      },
    });
    const baseWatchesBack = SimNetifWorld.watchesOf(world.backend);
    const baseWatchesFront = SimNetifWorld.watchesOf(client);
    for (let i = 0; i < CYCLES; i++) {
      const devid = i % 3; // several device numbers, as repeated network-attach gives
      await world.toolstack.attach({ frontend: fe, backend: be, devid });
      const front = await connectNetfront({
        xen: client.domain,
        xenstore: client.xenstore,
        devid,
        log: log.log,
      });
      await until(() => current?.devid === devid && current.state === 'connected', 'the backend device');
      const back = current!;
      const atBack = collect(back);
      const atFront = collect(front);
      front.send(frame(100 + (i % 1400), i));
      back.send(frame(9000, i), { csumBlank: true, dataValidated: true, gsoType: 0, gsoSize: 0 });
      await until(() => atBack.length === 1 && atFront.length === 1, `cycle ${i}'s frames`);
      if (i % 2 === 0) {
        // The toolstack detaches a running client (netfront follows the backend's Closing).
        expect(await world.toolstack.detach({ frontend: fe, backend: be, devid })).toBe(true);
        await until(() => front.state === 'closed', 'netfront to close');
      } else {
        // The client closes first, then the toolstack removes the device.
        await front.close();
        expect(await world.toolstack.detach({ frontend: fe, backend: be, devid })).toBe(true);
      }
      await until(() => back.state === 'closed', 'the backend device to end');
      expect(front.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
      expect(back.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
    }
    expect(netback.devices().length).toBe(0);
    expect(netback.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 1 });
    expect(world.liveGrants(fe)).toBe(0);
    expect(world.openPorts(fe)).toBe(0);
    expect(world.openPorts(be)).toBe(0);
    expect(SimNetifWorld.watchesOf(client)).toBe(baseWatchesFront);
    expect(SimNetifWorld.watchesOf(world.backend)).toBe(baseWatchesBack);
    const stats = netback.stats();
    expect(stats.rxFrames).toBe(CYCLES);
    expect(stats.txFrames).toBe(CYCLES);
    expect(stats.fatalErrors).toBe(0);
    expect(log.lines.join('\n')).toBe('');
    await netback.close();
    expect(netback.resources()).toEqual({ grants: 0, mappings: 0, eventChannels: 0, watches: 0 });
    expect(SimNetifWorld.watchesOf(world.backend)).toBe(0);
    world.close();
  });
});
