import { describe, it } from 'vitest';
import { xenConformanceSuite } from './conformance.ts';
import { SimHypervisor } from './sim/hypervisor.ts';

// The same ids the lab runs against openNativeDomain() in a domU, here against sim:
// once as a domU and once as dom0.
for (const who of ['domU', 'dom0'] as const) {
  describe(`xen primitives conformance against sim (${who})`, () => {
    const hv = new SimHypervisor();
    const domain = who === 'dom0' ? hv.dom0 : hv.createDomain();
    for (const c of xenConformanceSuite({ domain, timeoutMs: 2000 })) it(c.id, () => c.run());
  });
}
