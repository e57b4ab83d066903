import { describe, expect, it } from 'vitest';
import { qubesDbEntries, qubesFirewallEntries } from './qubesdb-keys.ts';

describe('the QubesDB keys qubesd writes for a lab VM', () => {
  it('a client AppVM gets its address, the netvm as gateway and the Qubes DNS addresses', () => {
    const keys = new Map(
      qubesDbEntries({
        name: 'work',
        ip: '10.137.0.10',
        mac: '00:16:3e:5e:6c:0a',
        netvmIp: '10.137.0.5',
        vmConfig: { 'log-level': 'debug' },
      }),
    );
    expect(keys.get('/name')).toBe('work');
    expect(keys.get('/type')).toBe('AppVM');
    expect(keys.get('/qubes-ip')).toBe('10.137.0.10');
    expect(keys.get('/qubes-gateway')).toBe('10.137.0.5');
    expect(keys.get('/qubes-netmask')).toBe('255.255.255.255');
    expect([keys.get('/qubes-primary-dns'), keys.get('/qubes-secondary-dns')]).toEqual([
      '10.139.1.1',
      '10.139.1.2',
    ]);
    expect(keys.get('/qubes-mac')).toBe('00:16:3e:5e:6c:0a');
    expect(keys.get('/vm-config/log-level')).toBe('debug');
    expect(keys.has('/qubes-netvm-gateway')).toBe(false);
    expect(keys.get('/qubes-vm-type')).toBe('AppVM');
  });

  it('a netvm gets the netvm keys, its clients and their firewall entries (base key last)', () => {
    const rules = new Map([
      [0, 'action=accept proto=tcp dstports=80-80'],
      [10, 'action=drop'],
    ]);
    const entries = qubesDbEntries({
      name: 'sys-net',
      ip: '10.137.0.5',
      providesNetwork: true,
      clients: [{ ip: '10.137.0.10', rules }],
    });
    const keys = new Map(entries);
    expect(keys.get('/qubes-netvm-gateway')).toBe('10.137.0.5');
    expect(keys.get('/qubes-netvm-primary-dns')).toBe('10.139.1.1');
    expect(keys.get('/connected-ips')).toBe('10.137.0.10');
    expect(keys.get('/qubes-vm-type')).toBe('NetVM');
    expect(qubesFirewallEntries('10.137.0.10', rules)).toEqual([
      ['/qubes-firewall/10.137.0.10/policy', 'drop'],
      ['/qubes-firewall/10.137.0.10/0000', 'action=accept proto=tcp dstports=80-80'],
      ['/qubes-firewall/10.137.0.10/0010', 'action=drop'],
      ['/qubes-firewall/10.137.0.10', ''],
    ]);
    expect(entries.at(-1)).toEqual(['/qubes-firewall/10.137.0.10', '']);
  });

  it('the random seed is 64 bytes and the same every run', () => {
    const seed = new Map(qubesDbEntries({ name: 'x' })).get('/qubes-random-seed') ?? '';
    expect(Buffer.from(seed, 'base64')).toHaveLength(64);
    expect(new Map(qubesDbEntries({ name: 'x' })).get('/qubes-random-seed')).toBe(seed);
  });
});
