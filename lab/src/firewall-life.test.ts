import { describe, expect, it } from 'vitest';
import { plugClientVifs, type VifClient } from './firewall-life.ts';
import type { Lab } from './lab.ts';
import type { LinuxVm } from './topology.ts';
import { VIF_SCRIPT } from './topology-wire.ts';

describe('plugClientVifs', () => {
  it("attaches each vif with the lab's hotplug script, which the Linux reference firewall's devd runs", async () => {
    const xl: string[][] = [];
    const lab = {
      exec: async (argv: string[]) => {
        xl.push(argv);
        return { code: 0, lines: [] };
      },
    } as unknown as Lab;
    const scripts: string[] = [];
    const vm = {
      name: 'fb-client1',
      command: async (c: { argv: string[] }) => {
        const script = c.argv[2] ?? '';
        scripts.push(script);
        return { code: 0, out: script.startsWith('cd /sys/class/net') ? 'eth0 00:16:3e:5e:6c:15\n' : '' };
      },
    } as unknown as LinuxVm;
    const client: VifClient = { vm, vifs: [{ ip: '10.137.0.21', mac: '00:16:3e:5e:6c:15' }] };
    const devices = await plugClientVifs(lab, client, 'fb-linux', '10.137.0.4');
    expect(devices).toEqual(new Map([['10.137.0.21', 'eth0']]));
    expect(xl).toHaveLength(1);
    expect(xl[0]?.slice(0, 3)).toEqual(['xl', 'network-attach', 'fb-client1']);
    expect(xl[0]).toContain('backend=fb-linux');
    expect(xl[0]).toContain(`script=${VIF_SCRIPT}`);
    expect(xl[0]).toContain('ip=10.137.0.21');
    expect(scripts.at(-1)).toMatch(/ip addr add 10\.137\.0\.21\/32 dev eth0/);
  });
});
