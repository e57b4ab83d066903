import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { firewallVifScript } from './vif-script.ts';

/**
 * The firewall's vif hotplug script run as `xl devd` runs it, with stub programs that log their
 * arguments. A shell function `ip` stands for busybox sh's own `ip` applet, which busybox runs
 * ahead of every PATH entry for a bare `ip`: on real Xen (2026-12-06) that applet refused
 * `group 2` and `neighbour replace`, the client vifs stayed down, and every allow through the
 * firewall failed (the clients' ARP for their gateway went unanswered).
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function stub(dir: string, name: string, body: string): void {
  writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(dir, name), 0o755);
}

/** Runs the script with `action` for the vif of domain 7, device 0; returns its output and what it called. */
function runScript(
  action: string,
  options: { failing?: string; gone?: boolean; ip?: string; ownIp6?: string } = {},
) {
  const root = mkdtempSync(join(tmpdir(), 'vif-script-'));
  dirs.push(root);
  const bin = join(root, 'bin');
  const iproute2 = join(root, 'iproute2');
  const proc = join(root, 'proc');
  const calls = join(root, 'calls');
  for (const d of [bin, iproute2, join(proc, 'ipv4/conf/vif7.0'), join(proc, 'ipv6/conf/vif7.0')])
    mkdirSync(d, { recursive: true });
  writeFileSync(join(proc, 'ipv4/conf/vif7.0/proxy_arp'), '0\n');
  writeFileSync(join(proc, 'ipv6/conf/vif7.0/proxy_ndp'), '0\n');
  writeFileSync(calls, '');
  const log = (who: string) => `echo "${who} $*" >> "${calls}"`;
  stub(
    bin,
    'xenstore-read',
    options.gone
      ? 'exit 1'
      : `case "$1" in */ip) echo ${options.ip ?? '10.137.0.10'};; */mac) echo 00:16:3e:5e:6c:0a;; *) exit 1;; esac`,
  );
  stub(bin, 'xenstore-write', log('xenstore-write'));
  // nft -f - and ip -batch -: each line of their input logged as a call.
  const logInput = (who: string) =>
    `${log(who)}\nwhile IFS= read -r line; do [ -n "$line" ] && echo "${who}< $line" >> "${calls}"; done; true`;
  stub(bin, 'nft', logInput('nft'));
  stub(bin, 'conntrack', log('conntrack'));
  stub(
    iproute2,
    'ip',
    `${log('iproute2')}\nfail=0\nwhile IFS= read -r line; do echo "iproute2< $line" >> "${calls}"; ${
      options.failing
        ? `case "$line" in *"${options.failing}"*) echo "RTNETLINK answers: Invalid argument" >&2; echo "Command failed -:1" >&2; fail=1;; esac`
        : ''
    } done\nexit $fail`,
  );
  const script = join(root, 'vif-firewall');
  writeFileSync(
    script,
    firewallVifScript({
      ownIp: '10.137.0.6',
      ...(options.ownIp6 ? { ownIp6: options.ownIp6 } : {}),
      ipCommand: join(iproute2, 'ip'),
      procSysNet: proc,
    }),
  );
  // `ip` as a function: found before PATH, as busybox sh finds its applet.
  const applet = `ip() { echo "busybox-applet $*" >> "${calls}"; return 1; }`;
  const r = spawnSync('/bin/sh', ['-c', `${applet}; set -- ${action}; . "${script}"`], {
    encoding: 'utf8',
    env: { PATH: `${bin}:/usr/bin:/bin`, XENBUS_PATH: 'backend/vif/7/0' },
  });
  return {
    status: r.status,
    out: `${r.stdout}${r.stderr}`,
    calls: readFileSync(calls, 'utf8').trim().split('\n'),
    proxyArp: readFileSync(join(proc, 'ipv4/conf/vif7.0/proxy_arp'), 'utf8').trim(),
    proxyNdp: readFileSync(join(proc, 'ipv6/conf/vif7.0/proxy_ndp'), 'utf8').trim(),
  };
}

describe('the Linux firewall vif hotplug script', () => {
  it('sets the client vif up as vif-route-qubes does, with iproute2 and never the busybox applet', () => {
    const r = runScript('add');
    expect(r.calls.filter((c) => c.startsWith('busybox-applet'))).toEqual([]);
    expect(r.calls.filter((c) => c.startsWith('iproute2'))).toEqual([
      'iproute2 -force -batch -',
      'iproute2< link set dev vif7.0 group 2 up',
      'iproute2< neighbour replace 10.137.0.10 dev vif7.0 lladdr 00:16:3e:5e:6c:0a nud permanent',
      'iproute2< route replace 10.137.0.10/32 dev vif7.0 metric 32745',
      'iproute2< addr replace 10.137.0.6/32 dev vif7.0',
    ]);
    expect(r.calls.filter((c) => c.startsWith('nft'))).toEqual([
      'nft -f -',
      'nft< add element ip qubes allowed { "vif7.0" . 10.137.0.10 }',
      'nft< add element ip qubes downstream { 10.137.0.10 }',
    ]);
    // The status before the conntrack purge (a slow purge never holds the vif back).
    expect(r.calls.slice(-3)).toEqual([
      'xenstore-write backend/vif/7/0/hotplug-status connected',
      'conntrack -D -s 10.137.0.10',
      'conntrack -D -d 10.137.0.10',
    ]);
    expect(r.proxyArp).toBe('1');
    expect(r.status).toBe(0);
    expect(r.out).toContain('vif-firewall: add vif7.0 10.137.0.10');
  });

  it('with the ipv6 feature: the IPv6 address routed /128 and anti-spoofed in ip6, the gateway6 on the vif', () => {
    const ip = '10.137.0.10 fd09:24ef:4179::a89:a';
    const r = runScript('add', { ip, ownIp6: 'fd09:24ef:4179::a89:6' });
    expect(r.calls.filter((c) => c.startsWith('iproute2'))).toEqual([
      'iproute2 -force -batch -',
      'iproute2< link set dev vif7.0 group 2 up',
      'iproute2< neighbour replace 10.137.0.10 dev vif7.0 lladdr 00:16:3e:5e:6c:0a nud permanent',
      'iproute2< neighbour replace fd09:24ef:4179::a89:a dev vif7.0 lladdr 00:16:3e:5e:6c:0a nud permanent',
      'iproute2< route replace 10.137.0.10/32 dev vif7.0 metric 32745',
      'iproute2< route replace fd09:24ef:4179::a89:a/128 dev vif7.0 metric 32745',
      'iproute2< addr replace 10.137.0.6/32 dev vif7.0',
      'iproute2< addr replace fd09:24ef:4179::a89:6/128 dev vif7.0 nodad',
    ]);
    expect(r.calls.filter((c) => c.startsWith('nft'))).toEqual([
      'nft -f -',
      'nft< add element ip qubes allowed { "vif7.0" . 10.137.0.10 }',
      'nft< add element ip qubes downstream { 10.137.0.10 }',
      'nft< add element ip6 qubes allowed { "vif7.0" . fd09:24ef:4179::a89:a }',
      'nft< add element ip6 qubes downstream { fd09:24ef:4179::a89:a }',
    ]);
    expect([r.proxyArp, r.proxyNdp, r.status]).toEqual(['1', '1', 0]);
    expect(r.calls).toContain('conntrack -D -s fd09:24ef:4179::a89:a');
    const removed = runScript('remove', { ip, ownIp6: 'fd09:24ef:4179::a89:6' });
    expect(removed.calls).toContain(
      'nft< delete element ip6 qubes allowed { "vif7.0" . fd09:24ef:4179::a89:a }',
    );
    // Without the feature nothing IPv6 is touched (proxy NDP stays off).
    expect(runScript('add').proxyNdp).toBe('0');
  });

  it('says which command failed and reports hotplug-status error, never connected', () => {
    const r = runScript('add', { failing: 'group 2' });
    expect(r.out).toContain('vif-firewall: add vif7.0 10.137.0.10: FAILED');
    expect(r.out).toContain('ip: RTNETLINK answers: Invalid argument');
    expect(r.calls).toContain('xenstore-write backend/vif/7/0/hotplug-status error');
    expect(r.calls).not.toContain('xenstore-write backend/vif/7/0/hotplug-status connected');
    // The script itself ends at once: the set-up runs in the background, out of libxl's 40 s.
    expect(r.status).toBe(0);
  });

  it('leaves a backend that is gone alone (no status written to recreate it)', () => {
    const r = runScript('add', { gone: true });
    expect(r.calls).toEqual(['']);
    expect(r.out).toContain('vif-firewall: add vif7.0: backend/vif/7/0 is gone');
    expect(r.status).toBe(0);
  });

  it('takes the client out of the anti-spoofing sets on remove', () => {
    const r = runScript('remove');
    expect(r.calls).toEqual([
      'nft -f -',
      'nft< delete element ip qubes allowed { "vif7.0" . 10.137.0.10 }',
      'nft< delete element ip qubes downstream { 10.137.0.10 }',
    ]);
    expect(r.status).toBe(0);
  });

  it('refuses a bare ip command and an address that is not IPv4', () => {
    expect(() => firewallVifScript({ ownIp: '10.137.0.6', ipCommand: 'ip' })).toThrow(/absolute path/);
    expect(() => firewallVifScript({ ownIp: '10.137.0.6; reboot', ipCommand: '/sbin/ip' })).toThrow(
      /not an IPv4/,
    );
  });
});
