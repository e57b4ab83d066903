import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bridgeVifScript } from './bridge-vif-script.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Runs the script as `xl devd` does for vif `<domid>.<dev>`, with `ip` and xenstore-write logging their arguments. */
function run(action: string, domid: number, dev: number): string[] {
  const root = mkdtempSync(join(tmpdir(), 'bridge-vif-'));
  dirs.push(root);
  const calls = join(root, 'calls');
  writeFileSync(calls, '');
  writeFileSync(join(root, 'xenstore-write'), `#!/bin/sh\necho "xenstore-write $*" >> "${calls}"\n`);
  chmodSync(join(root, 'xenstore-write'), 0o755);
  const script = join(root, 'vif-moat-bridge');
  writeFileSync(script, bridgeVifScript());
  // `ip` as a shell function: busybox sh runs its own applet ahead of PATH, as a function is.
  const ip = `ip() { echo "ip $*" >> "${calls}"; }`;
  const r = spawnSync('/bin/sh', ['-c', `${ip}; set -- ${action}; . "${script}"`], {
    encoding: 'utf8',
    env: { PATH: `${root}:/usr/bin:/bin`, XENBUS_PATH: `/local/domain/3/backend/vif/${domid}/${dev}` },
  });
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(calls, 'utf8').trim().split('\n');
}

describe('the bridge role vif script', () => {
  it("gives the vif a MAC of its own before it joins br0 (netback's fe:ff:ff:ff:ff:ff is the netvm's gateway MAC)", () => {
    expect(run('online', 6, 0)).toEqual([
      'ip link set vif6.0 address fe:ff:fe:00:06:00',
      'ip link set vif6.0 master br0',
      'ip link set vif6.0 up',
      'xenstore-write /local/domain/3/backend/vif/6/0/hotplug-status connected',
    ]);
    expect(run('add', 4660, 1)[0]).toBe('ip link set vif4660.1 address fe:ff:fe:12:34:01');
  });

  it('touches nothing on remove', () => {
    expect(run('remove', 6, 0)).toEqual(['']);
  });
});
