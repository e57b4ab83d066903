/**
 * The smoke guest: proves a guest's own JavaScript ran under Xen and sees the Xen devices.
 * Runs unchanged in dom0 and in domUs.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { guestMain } from '../guest.ts';

const required = ['evtchn', 'gntdev', 'gntalloc', 'privcmd', 'xenbus'];

void guestMain({
  'xen devices': () => {
    const devices = readdirSync('/dev/xen').sort();
    const missing = required.filter((d) => !devices.includes(d));
    if (missing.length > 0) throw new Error(`missing /dev/xen/${missing.join(', /dev/xen/')}`);
    return { devices };
  },
  'javascript runs': () => {
    // A computation whose answer the host checks (smokeExpectedSum), so the result cannot
    // come from anywhere but this guest's JS.
    let x = 0;
    for (let i = 1; i <= 100_000; i++) x = (x + i * i) % 1_000_003;
    return { node: process.version, sum: x };
  },
  'running on xen': () => {
    const type = existsSync('/sys/hypervisor/type')
      ? readFileSync('/sys/hypervisor/type', 'utf8').trim()
      : 'unknown';
    if (type !== 'xen') throw new Error(`/sys/hypervisor/type says ${type}`);
    const mem = /MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
    return { hypervisor: type, memTotalKb: Number(mem), rssBytes: process.memoryUsage().rss };
  },
});
