import { afterEach, describe, expect, it } from 'vitest';
import { changingCalls, FakeDom0 } from './fake-dom0/index.ts';

let dom0: FakeDom0 | undefined;
afterEach(() => {
  dom0?.remove();
  dom0 = undefined;
});

/** A stock dom0 with the moat templates installed (qvm-template) and PVH GRUB present. */
function withTemplates(): FakeDom0 {
  dom0 = FakeDom0.stockQubes().template('moat-firewall').template('moat-viewer').pvgrub();
  return dom0;
}

// virt_mode pvh comes from the template (template.conf) or Qubes' default, so it is not set.
const firewallSettings = [
  'qvm-prefs sys-moat provides_network True',
  'qvm-prefs sys-moat netvm sys-net',
  'qvm-prefs sys-moat memory 128',
  'qvm-prefs sys-moat maxmem 128',
  'qvm-prefs sys-moat vcpus 1',
  'qvm-features sys-moat qubes-firewall 1',
  "qvm-features sys-moat gui ''",
  'qvm-features sys-moat skip-update 1',
];

describe('moat-setup --help', () => {
  it('prints the usage of every command without calling Qubes tools', () => {
    const d = withTemplates();
    const result = d.moatSetup(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['firewall', 'viewer', 'rollback', 'status', '--convert', '--all-clients']) {
      expect(result.stdout).toContain(command);
    }
    expect(result.calls).toEqual([]);
  });

  it('exits 2 with the usage when no command is given, 1 for an unknown one', () => {
    const d = withTemplates();
    expect(d.moatSetup([]).code).toBe(2);
    const unknown = d.moatSetup(['frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown command: frobnicate');
    expect(unknown.stderr).toContain('moat-setup --help');
  });
});

describe('moat-setup firewall', () => {
  it('creates sys-moat from the template with every property and feature it needs', () => {
    const d = withTemplates();
    const result = d.moatSetup(['firewall']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(changingCalls(result.calls)).toEqual([
      'qvm-create --class AppVM --template moat-firewall --label green sys-moat',
      'qvm-features moat-firewall skip-update 1',
      ...firewallSettings,
    ]);
    // The default netvm is sys-firewall, so moat-setup offers; no answer means no.
    expect(result.stdout).toContain('make sys-moat the default netvm');
    expect(d.globalPref('default_netvm')).toBe('sys-firewall');
    expect(d.pref('work', 'netvm')).toBe('sys-firewall');
  });

  it('changes nothing when run a second time', () => {
    const d = withTemplates();
    expect(d.moatSetup(['firewall', '--clients', 'work', '--default-netvm']).code).toBe(0);
    const again = d.moatSetup(['firewall', '--clients', 'work', '--default-netvm']);
    expect(again.code).toBe(0);
    expect(changingCalls(again.calls)).toEqual([]);
    // The saved assignment is still the original one, not sys-moat.
    expect(d.readFile('var/lib/moat-setup/netvms')).toBe('work\tsys-firewall\n');
  });

  it('moves chosen clients after saving their netvm, starting sys-moat first for a running client', () => {
    const d = withTemplates();
    const result = d.moatSetup(['firewall', '--clients', 'work,personal']);
    expect(result.code).toBe(0);
    expect(changingCalls(result.calls).slice(-3)).toEqual([
      'qvm-start --skip-if-running sys-moat',
      'qvm-prefs work netvm sys-moat',
      'qvm-prefs personal netvm sys-moat',
    ]);
    expect(d.readFile('var/lib/moat-setup/netvms')).toBe('work\tsys-firewall\npersonal\tsys-firewall\n');
  });

  it('--all-clients moves every qube that uses sys-firewall and nothing else', () => {
    const d = withTemplates();
    const result = d.moatSetup(['firewall', '--all-clients']);
    expect(result.code).toBe(0);
    expect(d.pref('work', 'netvm')).toBe('sys-moat');
    expect(d.pref('personal', 'netvm')).toBe('sys-moat');
    expect(d.pref('vault', 'netvm')).toBe('');
    expect(d.pref('sys-firewall', 'netvm')).toBe('sys-net');
  });

  it('sets default_netvm when asked and saves the old value', () => {
    const d = withTemplates();
    const result = d.moatSetup(['firewall'], 'y\n');
    expect(result.code).toBe(0);
    expect(changingCalls(result.calls).at(-1)).toBe('qubes-prefs default_netvm sys-moat');
    expect(d.readFile('var/lib/moat-setup/default-netvm')).toBe('default_netvm\tsys-firewall\n');
  });

  it('refuses to replace sys-firewall while it is the updatevm, and says to move that to sys-net', () => {
    const d = withTemplates().global('updatevm', 'sys-firewall');
    for (const args of [['--all-clients'], ['--default-netvm']]) {
      const result = d.moatSetup(['firewall', ...args]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("sys-firewall is dom0's updatevm");
      expect(result.stderr).toContain('qubes-prefs updatevm sys-net');
      expect(changingCalls(result.calls)).toEqual([]);
    }
    // Answering yes to the default_netvm offer is refused the same way.
    const offered = d.moatSetup(['firewall'], 'y\n');
    expect(offered.code).toBe(1);
    expect(offered.stderr).toContain('qubes-prefs updatevm sys-net');
    expect(d.globalPref('default_netvm')).toBe('sys-firewall');
  });

  it('refuses when sys-moat itself is the updatevm', () => {
    const d = withTemplates().global('updatevm', 'sys-moat');
    const result = d.moatSetup(['firewall', '--default-netvm']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("sys-moat is dom0's updatevm");
  });

  it('refuses while qubes.UpdatesProxy goes to sys-firewall, naming the policy file', () => {
    const d = withTemplates().file(
      'etc/qubes/policy.d/50-config-updates.policy',
      'qubes.UpdatesProxy * @type:TemplateVM @default allow target=sys-firewall\n',
    );
    const result = d.moatSetup(['firewall', '--all-clients']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('50-config-updates.policy sends qubes.UpdatesProxy');
    expect(result.stderr).toContain('target=sys-net');
    expect(changingCalls(result.calls)).toEqual([]);
  });

  it('uses the kernel directory when the template is not installed', () => {
    dom0 = FakeDom0.stockQubes().kernelDir('moat-firewall');
    const result = dom0.moatSetup(['firewall']);
    expect(result.stderr).toBe('');
    expect(changingCalls(result.calls)).toEqual([
      'qvm-create --class StandaloneVM --label green sys-moat',
      'qvm-prefs sys-moat kernel moat-firewall',
      "qvm-prefs sys-moat kernelopts ''",
      ...firewallSettings,
    ]);
  });

  it('--route kernel picks the kernel directory even when the template is installed', () => {
    const d = withTemplates().kernelDir('moat-firewall');
    const result = d.moatSetup(['firewall', '--route', 'kernel']);
    expect(result.code).toBe(0);
    expect(d.pref('sys-moat', 'kernel')).toBe('moat-firewall');
  });

  describe('fails before changing anything, saying what to do', () => {
    const cases: { name: string; setup: (d: FakeDom0) => void; args: string[]; says: string[] }[] = [
      {
        name: 'nothing is installed',
        setup: () => {},
        args: [],
        says: [
          'neither the template moat-firewall nor the kernel directory',
          'qvm-template install --nogpgcheck',
        ],
      },
      {
        name: 'the template lacks PVH GRUB in dom0',
        setup: (d) => d.template('moat-firewall'),
        args: [],
        says: ['PVH GRUB', 'sudo qubes-dom0-update grub2-xen-pvh', '--route kernel'],
      },
      {
        name: '--route template without the template',
        setup: (d) => d.kernelDir('moat-firewall'),
        args: ['--route', 'template'],
        says: ['the template moat-firewall is not installed'],
      },
      {
        name: '--route kernel without the kernel directory',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--route', 'kernel'],
        says: ['moat-firewall/vmlinuz is missing', 'moat-vm-kernels'],
      },
      {
        name: 'a bad --route',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--route', 'hvm'],
        says: ['--route must be template or kernel'],
      },
      {
        name: 'the upstream qube is missing',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--netvm', 'sys-usb'],
        says: ['the upstream qube sys-usb does not exist'],
      },
      {
        name: 'a client is missing',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--clients', 'work,typo'],
        says: ['the client qube typo does not exist', 'qvm-ls'],
      },
      {
        name: 'a client name is not a qube name',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--clients', 'work;rm'],
        says: ["'work;rm' is not a qube name"],
      },
      {
        name: 'sys-net is named as a client',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--clients', 'sys-net'],
        says: ['sys-net cannot be a client of sys-moat'],
      },
      {
        name: '--clients with --all-clients',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--clients', 'work', '--all-clients'],
        says: ['exclude each other'],
      },
      {
        name: 'an unknown option',
        setup: (d) => d.template('moat-firewall').pvgrub(),
        args: ['--memory', '64'],
        says: ['unknown option for firewall: --memory'],
      },
      {
        name: 'not root',
        setup: (d) => d.template('moat-firewall').pvgrub().uid(1000),
        args: [],
        says: ['run it as root', 'sudo moat-setup firewall'],
      },
      {
        name: 'sys-moat exists on another template',
        setup: (d) =>
          d
            .template('moat-firewall')
            .pvgrub()
            .qube('sys-moat', { prefs: { template: 'fedora-42-xfce' } }),
        args: [],
        says: ["sys-moat exists but is based on 'fedora-42-xfce', not moat-firewall", 'qvm-remove sys-moat'],
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        dom0 = FakeDom0.stockQubes();
        c.setup(dom0);
        const before = dom0.snapshot();
        const result = dom0.moatSetup(['firewall', ...c.args]);
        expect(result.code).toBe(1);
        for (const text of c.says) expect(result.stderr).toContain(text);
        expect(dom0.snapshot()).toEqual(before);
      });
    }
  });

  it('stops at a failing Qubes call with the command that failed, and a rerun finishes the job', () => {
    const d = withTemplates().failing('qvm-prefs sys-moat memory 128');
    const result = d.moatSetup(['firewall']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("'qvm-prefs sys-moat memory 128' failed");
    expect(result.stderr).toContain('run moat-setup again');
    expect(d.exists('sys-moat')).toBe(true);
    writeNoFailures(d);
    const rerun = d.moatSetup(['firewall']);
    expect(rerun.code).toBe(0);
    expect(changingCalls(rerun.calls)).toEqual(firewallSettings.slice(2));
  });
});

function writeNoFailures(d: FakeDom0): void {
  d.file('../world/fail', '');
}

describe('moat-setup viewer', () => {
  const policy = [
    '# moat: qubes may open files in a moat-viewer disposable when they ask for it by name',
    '# (qvm-open-in-vm @dispvm:moat-viewer-dvm FILE). Installed by moat-dom0 or moat-setup viewer.',
    'qubes.OpenInVM  *  @anyvm  @dispvm:moat-viewer-dvm  allow',
    '',
  ].join('\n');

  it('creates the disposable template and the OpenInVM policy, leaving the default disposable alone', () => {
    const d = withTemplates();
    const result = d.moatSetup(['viewer']);
    expect(result.stderr).toBe('');
    expect(changingCalls(result.calls)).toEqual([
      'qvm-create --class AppVM --template moat-viewer --label red moat-viewer-dvm',
      'qvm-features moat-viewer skip-update 1',
      'qvm-prefs moat-viewer-dvm template_for_dispvms True',
      "qvm-prefs moat-viewer-dvm netvm ''",
      'qvm-prefs moat-viewer-dvm memory 320',
      'qvm-prefs moat-viewer-dvm maxmem 320',
      'qvm-prefs moat-viewer-dvm vcpus 1',
      'qvm-features moat-viewer-dvm skip-update 1',
    ]);
    expect(d.pref('moat-viewer-dvm', 'netvm')).toBe('');
    expect(d.readFile('etc/qubes/policy.d/40-moat.policy')).toBe(policy);
    expect(d.readFile('etc/qubes/policy.d/40-moat-convert.policy')).toBeUndefined();
    expect(d.globalPref('default_dispvm')).toBe('default-dvm');
    expect(result.calls.some((call) => call.includes('default_dispvm'))).toBe(false);
  });

  it('--print-policy prints the same policy (what the moat-dom0 package ships)', () => {
    const d = withTemplates();
    expect(d.moatSetup(['--print-policy']).stdout).toBe(policy);
  });

  it('keeps a policy file the moat-dom0 package installed and refuses one with other content', () => {
    const d = withTemplates().file('etc/qubes/policy.d/40-moat.policy', policy);
    expect(d.moatSetup(['viewer']).code).toBe(0);
    expect(d.readFile('var/lib/moat-setup/created')).toBe('moat-viewer-dvm\n');
    d.file('etc/qubes/policy.d/40-moat.policy', 'qubes.OpenInVM * @anyvm @anyvm allow\n');
    const changed = d.moatSetup(['viewer']);
    expect(changed.code).toBe(1);
    expect(changed.stderr).toContain('40-moat.policy exists with other content');
  });

  it('--convert redirects qubes.GetImageRGBA with a warning; --no-convert undoes it', () => {
    const d = withTemplates();
    const result = d.moatSetup(['viewer', '--convert']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('(TIFF, SVG) will fail to convert');
    expect(d.readFile('etc/qubes/policy.d/40-moat-convert.policy')).toContain(
      'qubes.GetImageRGBA  *  @anyvm  @dispvm  allow target=@dispvm:moat-viewer-dvm\n',
    );
    expect(changingCalls(d.moatSetup(['viewer', '--convert']).calls)).toEqual([]);
    expect(d.moatSetup(['viewer', '--no-convert']).code).toBe(0);
    expect(d.readFile('etc/qubes/policy.d/40-moat-convert.policy')).toBeUndefined();
    expect(d.readFile('etc/qubes/policy.d/40-moat.policy')).toBe(policy);
  });

  it('uses the kernel directory on an AppVM of the default template when the template is missing', () => {
    dom0 = FakeDom0.stockQubes().kernelDir('moat-viewer');
    const result = dom0.moatSetup(['viewer']);
    expect(result.stderr).toBe('');
    expect(changingCalls(result.calls).slice(0, 3)).toEqual([
      'qvm-create --class AppVM --template fedora-42-xfce --label red moat-viewer-dvm',
      'qvm-prefs moat-viewer-dvm kernel moat-viewer',
      "qvm-prefs moat-viewer-dvm kernelopts ''",
    ]);
  });

  it('fails without either route, with the install commands', () => {
    dom0 = FakeDom0.stockQubes();
    const result = dom0.moatSetup(['viewer']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('qubes-template-moat-viewer');
    expect(dom0.readFile('etc/qubes/policy.d/40-moat.policy')).toBeUndefined();
  });
});

describe('moat-setup rollback', () => {
  it('restores clients and default_netvm, removes the policies and, when told yes, the qubes', () => {
    const d = withTemplates();
    const before = d.snapshot();
    expect(d.moatSetup(['firewall', '--clients', 'work,personal', '--default-netvm']).code).toBe(0);
    expect(d.moatSetup(['viewer', '--convert']).code).toBe(0);
    const result = d.moatSetup(['rollback'], 'y\ny\n');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(changingCalls(result.calls)).toEqual([
      'qvm-start --skip-if-running sys-firewall',
      'qvm-prefs work netvm sys-firewall',
      'qvm-prefs personal netvm sys-firewall',
      'qubes-prefs default_netvm sys-firewall',
      'qvm-remove --force moat-viewer-dvm',
      'qvm-shutdown --wait sys-moat',
      'qvm-remove --force sys-moat',
    ]);
    expect(result.stdout).toContain('delete the qube moat-viewer-dvm (created by moat-setup)? [y/N]');
    expect(d.readFile('etc/qubes/policy.d/40-moat.policy')).toBeUndefined();
    expect(d.readFile('etc/qubes/policy.d/40-moat-convert.policy')).toBeUndefined();
    // Only the templates keep what moat-setup set on them (skip-update: they have no package manager).
    const after = d.snapshot();
    for (const template of ['moat-firewall', 'moat-viewer']) delete after[template]?.features['skip-update'];
    expect(after).toEqual(before);
    expect(d.globalPref('default_netvm')).toBe('sys-firewall');
    expect(d.moatSetup(['rollback']).stdout).toContain('nothing to roll back');
  });

  it('keeps the qubes it is told not to delete, and a later rollback deletes them', () => {
    const d = withTemplates();
    d.moatSetup(['firewall', '--clients', 'work']);
    const kept = d.moatSetup(['rollback'], 'n\n');
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain('kept sys-moat; delete it later with: qvm-remove sys-moat');
    expect(d.exists('sys-moat')).toBe(true);
    expect(d.pref('work', 'netvm')).toBe('sys-firewall');
    const later = d.moatSetup(['rollback', '--yes']);
    expect(changingCalls(later.calls)).toEqual([
      'qvm-shutdown --wait sys-moat',
      'qvm-remove --force sys-moat',
    ]);
    expect(d.exists('sys-moat')).toBe(false);
  });

  it('never deletes a qube it did not create', () => {
    const d = withTemplates().qube('sys-moat', { prefs: { template: 'moat-firewall' } });
    expect(d.moatSetup(['firewall']).code).toBe(0);
    const result = d.moatSetup(['rollback', '--yes']);
    expect(result.calls.filter((call) => call.startsWith('qvm-remove'))).toEqual([]);
    expect(d.exists('sys-moat')).toBe(true);
  });

  it('skips a saved client that was deleted since, and reports a failing restore', () => {
    const d = withTemplates();
    d.moatSetup(['firewall', '--clients', 'work,personal']);
    const removed = d.shell('rm -rf "$FAKE_DOM0/qubes/personal"');
    expect(removed.code).toBe(0);
    d.failing('qvm-prefs work netvm sys-firewall');
    const result = d.moatSetup(['rollback', '--yes']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("'qvm-prefs work netvm sys-firewall' failed");
    // The saved assignments are kept for the next try.
    expect(d.readFile('var/lib/moat-setup/netvms')).toContain('work\tsys-firewall');
    writeNoFailures(d);
    const retry = d.moatSetup(['rollback', '--yes']);
    expect(retry.code).toBe(0);
    expect(retry.stdout).toContain('personal no longer exists');
    expect(d.pref('work', 'netvm')).toBe('sys-firewall');
  });

  it('needs root', () => {
    const d = withTemplates().uid(1000);
    const result = d.moatSetup(['rollback']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('sudo moat-setup rollback');
  });
});

describe('moat-setup status', () => {
  it('shows versions, checksums, the qubes and the clients of sys-moat without changing anything', () => {
    const d = withTemplates().kernelDir('moat-firewall').uid(1000);
    d.file('../world/rpms/moat-dom0', '0.1.0-1.noarch');
    d.uid(0);
    d.moatSetup(['firewall', '--clients', 'work']);
    d.uid(1000);
    const result = d.moatSetup(['status']);
    expect(result.code).toBe(0);
    expect(changingCalls(result.calls)).toEqual([]);
    expect(result.stdout).toMatch(/moat-setup 0\.1\.0 \([0-9a-f]{64}\)/);
    expect(result.stdout).toContain('package: moat-dom0-0.1.0-1.noarch');
    expect(result.stdout).toContain('package: moat-vm-kernels not installed');
    expect(result.stdout).toContain('template moat-firewall: version 0.1.0-1');
    expect(result.stdout).toMatch(/kernel moat-firewall: vmlinuz sha256 [0-9a-f]{64}/);
    expect(result.stdout).toContain("qube sys-moat: running, template 'moat-firewall'");
    expect(result.stdout).toContain('qube moat-viewer-dvm: does not exist');
    expect(result.stdout).toContain('clients of sys-moat: work');
    expect(result.stdout).toContain('40-moat.policy absent');
  });

  it('warns when sys-moat was made the updatevm by hand', () => {
    const d = withTemplates();
    d.moatSetup(['firewall']);
    d.global('updatevm', 'sys-moat');
    expect(d.moatSetup(['status']).stdout).toContain('qubes-prefs updatevm sys-net');
  });
});
