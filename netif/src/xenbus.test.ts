/** The xenbus walk as the toolstack and a frontend see it. */
import { describe, expect, it } from 'vitest';
import { type NetbackDevice, startNetback } from './netback.ts';
import { connectNetfront } from './netfront.ts';
import { RawFrontend, SimNetifWorld } from './sim/index.ts';
import { collect, frame, until } from './test-support.ts';
import { backendPath, encodeTxRequest } from './wire.ts';

async function world(removeClosedAfterMs: number) {
  const w = new SimNetifWorld();
  const devices: NetbackDevice[] = [];
  const netback = await startNetback({
    xen: w.backend.domain,
    xenstore: w.backend.xenstore,
    log: () => undefined,
    removeClosedAfterMs,
    onDevice: (d) => devices.push(d),
  });
  const client = w.addDomain('client');
  const vif = { frontend: client.domain.domid, backend: w.backend.domain.domid, devid: 0 };
  await w.toolstack.attach(vif);
  return { w, netback, devices, client, vif, b: backendPath(vif.backend, vif.frontend, 0) };
}

describe('xenbus walk', () => {
  it('offers its features, hotplug-status and InitWait as soon as the toolstack creates the device', async () => {
    const { w, netback, b } = await world(0);
    await until(() => w.xs.peek(`${b}/state`)?.value === '2', 'InitWait');
    for (const [k, v] of [
      ['feature-rx-copy', '1'],
      ['feature-rx-flip', '0'],
      ['feature-sg', '1'],
      ['feature-gso-tcpv4', '1'],
      ['feature-gso-tcpv6', '1'],
      ['hotplug-status', 'connected'],
    ])
      expect(w.xs.peek(`${b}/${k}`)?.value).toBe(v);
    await netback.close();
    w.close();
  });

  it("removes its backend directory once Closed on a detach (xl devd's part, which libxl waits for)", async () => {
    const { w, netback, client, vif, b, devices } = await world(0);
    const front = await connectNetfront({
      xen: client.domain,
      xenstore: client.xenstore,
      log: () => undefined,
    });
    expect(await w.toolstack.detach(vif)).toBe(true);
    expect(w.xs.peek(b)).toBeUndefined();
    await until(() => front.state === 'closed' && devices[0]!.state === 'closed', 'both ends to close');
    await netback.close();
    w.close();
  });

  it('a detach of a vif whose frontend never connected completes in time (Closed at once: nothing was shared)', async () => {
    const { w, netback, b, vif, devices } = await world(0);
    await until(() => w.xs.peek(`${b}/state`)?.value === '2', 'InitWait');
    // The frontend stays Initialising for good (a client whose netfront never runs); libxl's
    // wait for Closed, then for the directory's removal, must not time out (2 s here, 10 s in libxl).
    expect(await w.toolstack.detach(vif, 2000)).toBe(true);
    await until(() => devices[0]?.state === 'closed', 'the device to end');
    await netback.close();
    w.close();
  });

  it("ends the netfront when its backend's domain is destroyed (the whole directory goes at once)", async () => {
    const { w, netback, client } = await world(0);
    const front = await connectNetfront({
      xen: client.domain,
      xenstore: client.xenstore,
      log: () => undefined,
    });
    // libxl removes a destroyed domain's /local/domain/<id>; reading under it is then EACCES
    // for a domU (the nearest existing parent is not ours to read), not ENOENT.
    await w.toolstack.client.rm(`/local/domain/${w.backend.domain.domid}`);
    await until(() => front.state === 'closed', 'the netfront to end');
    await netback.close().catch(() => undefined);
    w.close();
  });

  it('leaves the directory to a real xl devd when told to (removeClosedAfterMs -1)', async () => {
    const { w, netback, client, vif, b } = await world(-1);
    await connectNetfront({ xen: client.domain, xenstore: client.xenstore, log: () => undefined });
    // libxl's wait for the removal times out (here after 200 ms instead of 10 s).
    expect(await w.toolstack.detach(vif, 200)).toBe(false);
    expect(w.xs.peek(b)).toBeUndefined(); // the toolstack then removed it itself
    await netback.close();
    w.close();
  });

  it('serves a frontend again after it closed and came back (Initialising after Closed)', async () => {
    const { w, netback, client, devices } = await world(0);
    const first = await connectNetfront({
      xen: client.domain,
      xenstore: client.xenstore,
      log: () => undefined,
    });
    await first.close();
    await until(() => devices[0]!.resources().mappings === 0, 'the backend to let go');
    const second = await connectNetfront({
      xen: client.domain,
      xenstore: client.xenstore,
      log: () => undefined,
    });
    await devices[0]!.connected();
    const got = collect(devices[0]!);
    second.send(frame(100, 1));
    await until(() => got.length === 1, 'a frame over the new connection');
    expect(devices).toHaveLength(1);
    await second.close();
    await netback.close();
    w.close();
  });
});

describe('attaching to rings a previous backend used', () => {
  it('starts where the old responses ended (BACK_RING_ATTACH)', async () => {
    const { w, netback, client, devices } = await world(0);
    const raw = await RawFrontend.connect({
      domain: client.domain,
      xenstore: client.xenstore,
      backend: w.backend.domain.domid,
      startIndex: 0xfffffff0,
    });
    await until(() => devices[0]?.state === 'connected', 'connection');
    const got = collect(devices[0]!);
    new Uint8Array(raw.txPages.buffer).set(frame(100, 4));
    encodeTxRequest(raw.tx, RawFrontend.txSlot(0xfffffff0), {
      gref: raw.txPages.refs[0]!,
      offset: 0,
      flags: 0,
      id: 1,
      size: 100,
    });
    raw.setTxReqProd(0xfffffff1);
    raw.notify();
    await until(() => got.length === 1, 'the frame');
    expect(got[0]!.data).toEqual(frame(100, 4));
    expect(raw.txRspProd()).toBe(0xfffffff1);
    await netback.close();
    w.close();
  });
});
