import { SimHypervisor } from '@moat/xen/sim';
import { XenstoreClient } from '@moat/xenstore';
import { XenstoredSim } from '@moat/xenstore/sim';
import { describe, expect, it } from 'vitest';
import type { VchanError } from './errors.ts';
import { vchanXenstorePath } from './paths.ts';
import { readExactly } from './test-support.ts';
import { connectVchan, listenVchan } from './xen.ts';
import { waitForServerInXenstore, xenstoreLiveness } from './xenstore-hooks.ts';

describe('xenstore hooks for vchan', () => {
  it('the client waits on the event-channel leaf, then connects', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const xs = new XenstoredSim();
    const dom0Store = new XenstoreClient(xs.connectSocket());
    const path = vchanXenstorePath(0, vm.domid, 111);
    const connecting = connectVchan({
      domain: vm,
      peer: 0,
      port: 111,
      timeoutMs: 5000,
      waitForServer: waitForServerInXenstore(dom0Store),
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The sim vchan publishes in its own registry; we mirror what libxenvchan writes to xenstore.
    const server = await listenVchan({ domain: hv.dom0, peer: vm.domid, port: 111 });
    await dom0Store.write(`${path}/ring-ref`, '8');
    await dom0Store.write(`${path}/event-channel`, '5');
    const client = await connecting;
    client.write('up');
    expect((await readExactly(server, 2)).toString()).toBe('up');
  });

  it('a peer whose /local/domain/<id> disappears fails the stream with EPEERDEAD', async () => {
    const hv = new SimHypervisor();
    const vm = hv.createDomain();
    const xs = new XenstoredSim();
    xs.createDomain(vm.domid, 'vm');
    const dom0Store = new XenstoreClient(xs.connectSocket());
    const liveness = xenstoreLiveness(dom0Store, { intervalMs: 5 });
    const server = await listenVchan({
      domain: hv.dom0,
      peer: vm.domid,
      port: 512,
      liveness: liveness(vm.domid),
    });
    await connectVchan({ domain: vm, peer: 0, port: 512, timeoutMs: 2000 });
    await server.whenConnected();
    const failed = new Promise<VchanError>((resolve) => server.once('error', resolve));
    server.resume();
    hv.destroyDomain(vm.domid);
    await dom0Store.rm(`/local/domain/${vm.domid}`);
    expect((await failed).code).toBe('EPEERDEAD');
  });
});
