import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { conformanceSuite } from './conformance.ts';
import { XenstoredSim } from './sim/xenstored.ts';
import { SocketTransport } from './transports/socket.ts';

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

describe('xenstore conformance against XenstoredSim over a unix socket (SocketTransport)', () => {
  const sim = new XenstoredSim();
  const dir = mkdtempSync(join(tmpdir(), 'moat-xs-'));
  const path = join(dir, 'socket');
  let server: Server | undefined;
  beforeAll(async () => {
    server = await sim.listen(path);
  });
  afterAll(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const suite = conformanceSuite({
    connect: () => SocketTransport.connect(path, { timeoutMs: 2000 }),
    domid: 0,
    privileged: true,
    timeoutMs: 2000,
  });
  for (const c of suite) it(c.id, () => c.run());
});
