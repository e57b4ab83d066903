/**
 * The README's dom0 commands (blocks marked `<!-- dom0-check: NAME -->`) run against the same
 * stand-in qvm-* tools as moat-setup's tests: the by-hand commands must give the qubes exactly
 * the properties and features moat-setup gives them.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDom0 } from './fake-dom0/index.ts';

const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md'), 'utf8');

function block(name: string): string {
  const marker = `<!-- dom0-check: ${name} -->\n\`\`\`sh\n`;
  const start = readme.indexOf(marker);
  if (start < 0) throw new Error(`README has no block marked dom0-check: ${name}`);
  const body = readme.slice(start + marker.length);
  return body.slice(0, body.indexOf('```'));
}

/** dom0 paths go to the stand-in's root; sudo is not needed there. */
function asScript(commands: string): string {
  return commands.replaceAll('sudo ', '').replaceAll(' /etc/qubes/', ' "$MOAT_SETUP_ROOT"/etc/qubes/');
}

const worlds: FakeDom0[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.remove();
});

function world(route: 'template' | 'kernel'): FakeDom0 {
  const w = FakeDom0.stockQubes();
  if (route === 'template') w.template('moat-firewall').template('moat-viewer').pvgrub();
  else w.kernelDir('moat-firewall').kernelDir('moat-viewer');
  worlds.push(w);
  return w;
}

function run(w: FakeDom0, name: string): void {
  const result = w.shell(asScript(block(name)));
  expect(result.stderr, `README block ${name}`).toBe('');
  expect(result.code, `README block ${name}`).toBe(0);
}

describe("README's dom0 commands", () => {
  it('marks every block this test runs', () => {
    const marked = [...readme.matchAll(/<!-- dom0-check: ([a-z-]+) -->/g)].map((m) => m[1]);
    expect(marked).toEqual([
      'setup',
      'manual-firewall',
      'manual-viewer',
      'manual-kernel-firewall',
      'clients',
      'rollback',
    ]);
  });

  it('setup: moat-setup firewall, viewer and status run', () => {
    const w = world('template');
    run(w, 'setup');
    expect(w.exists('sys-moat')).toBe(true);
    expect(w.exists('moat-viewer-dvm')).toBe(true);
  });

  it('manual-firewall gives sys-moat and its template what moat-setup firewall gives them', () => {
    const byHand = world('template');
    run(byHand, 'manual-firewall');
    const bySetup = world('template');
    expect(bySetup.moatSetup(['firewall']).code).toBe(0);
    expect(byHand.snapshot()).toEqual(bySetup.snapshot());
  });

  it('manual-viewer gives moat-viewer-dvm and the policy what moat-setup viewer gives them', () => {
    const byHand = world('template');
    run(byHand, 'manual-viewer');
    const bySetup = world('template');
    expect(bySetup.moatSetup(['viewer']).code).toBe(0);
    expect(byHand.snapshot()).toEqual(bySetup.snapshot());
    const policy = 'etc/qubes/policy.d/40-moat.policy';
    expect(byHand.readFile(policy)).toBe(bySetup.readFile(policy));
  });

  it('manual-kernel-firewall matches moat-setup firewall --route kernel', () => {
    const byHand = world('kernel');
    run(byHand, 'manual-kernel-firewall');
    const bySetup = world('kernel');
    expect(bySetup.moatSetup(['firewall', '--route', 'kernel']).code).toBe(0);
    expect(byHand.snapshot()).toEqual(bySetup.snapshot());
  });

  it('clients, then rollback, bring every qube back to where it was', () => {
    const w = world('template');
    const before = w.snapshot();
    run(w, 'setup');
    run(w, 'clients');
    expect(w.pref('work', 'netvm')).toBe('sys-moat');
    expect(w.pref('personal', 'netvm')).toBe('sys-moat');
    expect(w.globalPref('default_netvm')).toBe('sys-moat');
    run(w, 'rollback');
    const after = w.snapshot();
    for (const template of ['moat-firewall', 'moat-viewer']) delete after[template]?.features['skip-update'];
    expect(after).toEqual(before);
    expect(w.globalPref('default_netvm')).toBe('sys-firewall');
  });
});
