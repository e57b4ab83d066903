import { describe, it } from 'vitest';
import { conformanceSuite } from './conformance.ts';
import { XenstoredSim } from './sim/xenstored.ts';

// The same ids the lab runs against the C xenstored, here against XenstoredSim through each
// way in: dom0's socket (privileged), a domU's raw connection, and a domU's /dev/xen/xenbus
// (the real XenbusTransport over the fake Linux device, once with replies cut into 7-byte reads).
const targets = [
  {
    name: 'dom0 socket',
    domid: 0,
    privileged: true,
    factory: (sim: XenstoredSim) => sim.transportFactory(0),
  },
  {
    name: 'domU connection',
    domid: 3,
    privileged: false,
    factory: (sim: XenstoredSim) => sim.transportFactory(3),
  },
  {
    name: 'domU /dev/xen/xenbus',
    domid: 4,
    privileged: false,
    factory: (sim: XenstoredSim) => sim.xenbusTransportFactory(4),
  },
  {
    name: 'domU /dev/xen/xenbus, split reads',
    domid: 5,
    privileged: false,
    factory: (sim: XenstoredSim) => sim.xenbusTransportFactory(5, { chunkSize: 7 }),
  },
];

for (const t of targets) {
  describe(`xenstore conformance against XenstoredSim: ${t.name}`, () => {
    const sim = new XenstoredSim();
    if (t.domid !== 0) sim.createDomain(t.domid);
    const suite = conformanceSuite({
      connect: t.factory(sim),
      domid: t.domid,
      privileged: t.privileged,
      timeoutMs: 2000,
    });
    for (const c of suite) it(c.id, () => c.run());
  });
}
