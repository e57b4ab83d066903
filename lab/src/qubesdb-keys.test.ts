import { describe, expect, it } from 'vitest';
import { firewallQubesDbEntries } from './firewall-vm.ts';
import { clientFirewallEntries, qubesDbEntries, qubesFirewallEntries } from './qubesdb-keys.ts';

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

  it('with the ipv6 feature: the IPv6 keys of net.py and qubesvm.py, and the IPv6 rule tree', () => {
    const rules = new Map([
      [0, 'action=accept dst6=2001:db8:10::/64'],
      [1, 'action=accept dst4=192.0.2.10/32'],
      [3, 'action=drop'],
    ]);
    const entries = firewallQubesDbEntries(
      'sys-firewall',
      '10.137.0.6',
      '10.137.0.5',
      [
        { ip: '10.137.0.10', ip6: 'fd09:24ef:4179::a89:a', rules },
        { ip: '10.137.0.12', rules: new Map([[0, 'action=accept']]) },
      ],
      undefined,
      { ip6: 'fd09:24ef:4179::a89:6', upstreamIp6: 'fd09:24ef:4179::a89:5' },
    );
    const keys = new Map(entries);
    // As a ProxyVM: its own IPv6 address is its clients' IPv6 gateway; its netvm's is its own.
    expect(keys.get('/qubes-netvm-gateway6')).toBe('fd09:24ef:4179::a89:6');
    expect(keys.get('/qubes-ip6')).toBe('fd09:24ef:4179::a89:6');
    expect(keys.get('/qubes-gateway6')).toBe('fd09:24ef:4179::a89:5');
    expect(keys.get('/connected-ips')).toBe('10.137.0.10 10.137.0.12');
    expect(keys.get('/connected-ips6')).toBe('fd09:24ef:4179::a89:a');
    // create_qdb_entries order: gateway6 right after the netvm gateway, ip6 after the DNS keys.
    const order = entries.map(([k]) => k);
    expect(order.indexOf('/qubes-netvm-gateway6')).toBe(order.indexOf('/qubes-netvm-gateway') + 1);
    expect(order.indexOf('/qubes-ip6')).toBe(order.indexOf('/qubes-secondary-dns') + 1);
    // reload_firewall_for_vm: the IPv4 tree, then the IPv6 tree, each committed by its base key.
    expect(clientFirewallEntries({ ip: '10.137.0.10', ip6: 'fd09:24ef:4179::a89:a', rules })).toEqual([
      ['/qubes-firewall/10.137.0.10/policy', 'drop'],
      ['/qubes-firewall/10.137.0.10/0001', 'action=accept dst4=192.0.2.10/32'],
      ['/qubes-firewall/10.137.0.10/0003', 'action=drop'],
      ['/qubes-firewall/10.137.0.10', ''],
      ['/qubes-firewall/fd09:24ef:4179::a89:a/policy', 'drop'],
      ['/qubes-firewall/fd09:24ef:4179::a89:a/0000', 'action=accept dst6=2001:db8:10::/64'],
      ['/qubes-firewall/fd09:24ef:4179::a89:a/0003', 'action=drop'],
      ['/qubes-firewall/fd09:24ef:4179::a89:a', ''],
    ]);
    expect(keys.has('/qubes-firewall/10.137.0.12/policy')).toBe(true);
    expect([...keys.keys()].filter((k) => k.startsWith('/qubes-firewall/fd09')).length).toBe(4);
  });

  it('without the ipv6 feature no IPv6 key but an empty /connected-ips6, as before', () => {
    const keys = new Map(
      firewallQubesDbEntries('sys-firewall', '10.137.0.6', '10.137.0.5', [
        { ip: '10.137.0.10', rules: new Map([[0, 'action=accept']]) },
      ]),
    );
    for (const k of ['/qubes-ip6', '/qubes-gateway6', '/qubes-netvm-gateway6'])
      expect(keys.has(k)).toBe(false);
    expect(keys.get('/connected-ips6')).toBe('');
  });

  it('the random seed is 64 bytes and the same every run', () => {
    const seed = new Map(qubesDbEntries({ name: 'x' })).get('/qubes-random-seed') ?? '';
    expect(Buffer.from(seed, 'base64')).toHaveLength(64);
    expect(new Map(qubesDbEntries({ name: 'x' })).get('/qubes-random-seed')).toBe(seed);
  });
});
