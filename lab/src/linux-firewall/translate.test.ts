import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { firewallQubesDbEntries } from '../firewall-vm.ts';
import { qubesFirewallEntries } from '../qubesdb-keys.ts';
import { parseScenario, type ScenarioStep } from '../scenario.ts';
import { type FirewallIo, QubesFirewallDaemon } from './daemon.ts';
import {
  baseTables,
  dnatDns,
  type FirewallRule,
  ipv6Tables,
  isBlocked,
  parseConntrackList,
  RuleParseError,
  readRules,
  vifOnlineElements,
} from './translate.ts';

/**
 * The translator against what Qubes' own qubesagent/firewall.py gave nft for the same QubesDB
 * trees (fixtures/, captured as fixtures/README.md says).
 */
interface Fixture {
  readonly input: string;
  readonly calls: readonly { readonly phase: string; readonly input: string }[];
  readonly qubesdb_after: Record<string, string>;
}
interface Tree {
  readonly nameservers: string[];
  readonly dns: Record<string, Record<string, string[]>>;
  readonly entries: [string, string][];
  readonly steps: { phase: string; base: string; entries: [string, string][] }[];
}

const root = new URL('../../../', import.meta.url).pathname;
const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`./fixtures/${name}.nft.json`, import.meta.url), 'utf8')) as Fixture;

/** A scenario's firewall QubesDB as the runner builds it, and its set_rules commits in order. */
function scenarioTree(file: string): Tree {
  const scenario = parseScenario(readFileSync(`${root}${file}`, 'utf8'), file);
  const steps: Tree['steps'] = [];
  const walk = (list: readonly ScenarioStep[], label: string) =>
    list.forEach((step, i) => {
      if (step.kind === 'repeat') for (let r = 0; r < step.times; r++) walk(step.steps, `${label}${i + 1}.`);
      if (step.kind !== 'set_rules') return;
      const ip = scenario.clients.find((c) => c.name === step.client)?.ip ?? '';
      const base = `/qubes-firewall/${ip}`;
      const entries = qubesFirewallEntries(ip, step.rules)
        .filter(([k]) => k !== base)
        .map(([k, v]): [string, string] => [k.slice(base.length + 1), v]);
      steps.push({ phase: `step ${label}${i + 1}`, base, entries });
    });
  walk(scenario.steps, '');
  return {
    nameservers: ['10.139.1.1', '10.139.1.2'],
    dns: Object.fromEntries(Object.entries(scenario.upstream.dns).map(([h, a]) => [h, { '4': [a] }])),
    entries: firewallQubesDbEntries('firewall', scenario.firewallIp, scenario.upstream.ip, scenario.clients),
    steps,
  };
}

/** Runs our daemon over a tree as firewall.py's main() ran over it: start, then each commit. */
async function replay(tree: Tree) {
  const store = new Map(tree.entries);
  const calls: { phase: string; input: string }[] = [];
  let phase = 'start';
  const io: FirewallIo = {
    async nft(input) {
      calls.push({ phase, input });
    },
    conntrackList: async () => '',
    conntrackDelete: async () => {},
    async resolve(host, family) {
      const found = tree.dns[host]?.[String(family)];
      if (!found?.length) throw new Error('Name or service not known');
      return found;
    },
    dnsServers: () => tree.nameservers,
    db: {
      multiread: (prefix) =>
        [...store].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)),
      read: (path) => store.get(path),
      write: (path, value) => {
        store.set(path, value);
      },
      rm: (path) => {
        for (const k of [...store.keys()])
          if (k === path || (path.endsWith('/') && k.startsWith(path))) store.delete(k);
      },
    },
    log: () => {},
  };
  const daemon = new QubesFirewallDaemon(io);
  await daemon.start();
  for (const step of tree.steps) {
    phase = step.phase;
    io.db.rm(`${step.base}/`);
    for (const [k, v] of step.entries) store.set(`${step.base}/${k}`, v);
    store.set(step.base, '');
    await daemon.onWatch(step.base);
  }
  const after = Object.fromEntries(
    [...store].filter(([k]) => k.startsWith('/dns/') || k.startsWith('/qubes-firewall-handled/')).sort(),
  );
  return { calls, after };
}

/**
 * Normalisation, for what firewall.py leaves to Python's hash order: (1) the elements of a
 * resolved `dsthost` set (`daddr { a/32, b/32 }`, and the set's repr in /dns/...) are sorted;
 * (2) the clients of the initial load (firewall.py iterates a Python set of targets) are put in
 * address order, each with its chain creation and its rules. firewall.py's exit (`cleanup`,
 * deleting its tables) is left out: our daemon has no such step (a firewall that stops must
 * fail closed).
 */
function normalise(calls: readonly { phase: string; input: string }[]) {
  const sortSets = (text: string) =>
    text
      .replace(
        /daddr \{ ([^}]+) \}/g,
        (_, items: string) => `daddr { ${items.split(', ').sort().join(', ')} }`,
      )
      .replace(/^\{('.*')\}$/, (_, items: string) => `{${items.split(', ').sort().join(', ')}}`);
  const kept = calls.filter((c) => c.phase !== 'exit').map((c) => ({ ...c, input: sortSets(c.input) }));
  const start = kept.filter((c) => c.phase === 'start');
  const [init, ...rest] = start;
  const firstConnected = rest.findIndex((c) => c.input.includes(' prerouting\n'));
  const perClient = rest.slice(0, firstConnected);
  const chainOf = (c: { input: string }) => /chain (qbs-[^ ]+) \{/.exec(c.input)?.[1] ?? '';
  const ordered = [...perClient].sort((a, b) =>
    chainOf(a) < chainOf(b) ? -1 : chainOf(a) > chainOf(b) ? 1 : 0,
  );
  return [init, ...ordered, ...rest.slice(firstConnected), ...kept.filter((c) => c.phase !== 'start')];
}

const sortRepr = (after: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(after).map(([k, v]) => [
      k,
      v.replace(/^\{(.*)\}$/, (_, i: string) => `{${i.split(', ').sort().join(', ')}}`),
    ]),
  );

describe('Linux reference firewall: the nft input of Qubes firewall.py, reproduced', () => {
  it.each(['linux-rules', 'linux-lifecycle'])(
    'scenario %s: every call, in order, the same text',
    async (name) => {
      const f = fixture(name);
      const ours = await replay(scenarioTree(f.input));
      expect(normalise(ours.calls)).toEqual(normalise(f.calls));
      expect(sortRepr(ours.after)).toEqual(sortRepr(f.qubesdb_after));
    },
  );

  it('edge cases: IPv6, several addresses, refused rules and unresolvable names', async () => {
    const f = fixture('edge-cases');
    const tree = JSON.parse(
      readFileSync(new URL('./fixtures/edge-cases.tree.json', import.meta.url), 'utf8'),
    ) as Tree;
    const ours = await replay(tree);
    expect(normalise(ours.calls)).toEqual(normalise(f.calls));
    expect(sortRepr(ours.after)).toEqual(sortRepr(f.qubesdb_after));
    // The capture ended as the daemon does on exit: both tables deleted.
    expect(f.calls.at(-1)?.input).toBe('delete table ip qubes-firewall\ndelete table ip6 qubes-firewall\n');
  });
});

describe('Linux reference firewall: parts firewall.py does not print', () => {
  const rules = (lines: string[]) =>
    readRules(
      [
        ['/qubes-firewall/10.137.0.10/policy', 'drop'],
        ...lines.map((l, i): [string, string] => [
          `/qubes-firewall/10.137.0.10/${String(i).padStart(4, '0')}`,
          l,
        ]),
      ],
      '10.137.0.10',
    );

  it('a token without one = is a parse error (the client blocked, not the daemon stopped)', () => {
    expect(() => rules(['action=accept comment=a=b'])).toThrow(RuleParseError);
    expect(() => rules(['action=accept  proto=tcp'])).toThrow(RuleParseError);
  });

  it('is_blocked: first match, dst4 networks, dsthost addresses, dns servers, blocked by default', () => {
    const r: FirewallRule[] = rules([
      'action=drop dsthost=www.example.test proto=tcp dstports=80-80',
      'action=accept dst4=192.0.2.0/24 proto=tcp dstports=440-450',
      'action=accept specialtarget=dns',
    ]);
    const dns = new Map([['www.example.test', ['192.0.2.10/32']]]);
    const servers = ['10.139.1.1', '10.139.1.2'];
    const blocked = (proto: string, dst: string, dport: string) =>
      isBlocked(r, { proto, dst, dport }, dns, servers);
    expect(blocked('tcp', '192.0.2.10', '80')).toBe(true);
    expect(blocked('tcp', '192.0.2.10', '443')).toBe(false);
    expect(blocked('tcp', '192.0.3.10', '443')).toBe(true);
    expect(blocked('udp', '10.139.1.2', '53')).toBe(false);
    expect(blocked('udp', '192.0.2.10', '53')).toBe(true);
  });

  it('reads conntrack -L lines (original direction), skipping its summary', () => {
    const text = [
      'tcp      6 431999 ESTABLISHED src=10.137.0.10 dst=192.0.2.10 sport=40000 dport=80 src=192.0.2.10 dst=10.137.0.6 sport=80 dport=40000 [ASSURED] mark=0 use=1',
      'udp      17 29 src=10.137.0.10 dst=10.139.1.1 sport=5000 dport=53 src=10.139.1.1 dst=10.137.0.6 sport=53 dport=5000 mark=0 use=1',
      'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.',
    ].join('\n');
    expect(parseConntrackList(text)).toEqual([
      { proto: 'tcp', dst: '192.0.2.10', dport: '80' },
      { proto: 'udp', dst: '10.139.1.1', dport: '53' },
    ]);
  });

  it('DNS DNAT as qubes-setup-dnat-to-ns: paired cyclically; no resolver drops', () => {
    const text = dnatDns(['10.139.1.1', '10.139.1.2'], ['10.139.1.1']);
    expect(text).toContain('ip daddr 10.139.1.2 udp dport 53 dnat to 10.139.1.1\n');
    expect(text).toContain('type nat hook prerouting priority dstnat; policy accept;');
    expect(dnatDns(['10.139.1.1'], [])).toContain('ip daddr 10.139.1.1 tcp dport 53 drop\n');
  });

  it('with IPv6 addresses: the ip6 table masquerades and isolates as the ip one, and answers admin-prohibited', () => {
    const v6 = ipv6Tables();
    expect(v6.startsWith('table ip6 qubes {')).toBe(true);
    // The same postrouting and forward chains as the IPv4 table of baseTables.
    const chain = (text: string, name: string) => new RegExp(`chain ${name} \\{[^}]*\\}`).exec(text)?.[0];
    const v4 = baseTables().split('table ip6 qubes')[0] ?? '';
    for (const name of ['postrouting', 'forward']) expect(chain(v6, name)).toBe(chain(v4, name));
    expect(chain(v6, 'postrouting')).toContain('masquerade');
    expect(chain(v6, 'forward')).toContain('oifgroup 2 counter drop');
    expect(v6).toContain('meta l4proto != ipv6-icmp counter reject with icmpv6 type admin-prohibited');
    expect(v6).toContain('icmpv6 type { nd-router-advert, nd-redirect } counter drop');
  });

  it('vif elements as vif-route-qubes adds them; a bad vif name is refused', () => {
    expect(vifOnlineElements('vif3.0', ['10.137.0.10'])).toBe(
      'add element ip qubes allowed { "vif3.0" . 10.137.0.10 }\nadd element ip qubes downstream { 10.137.0.10 }\n',
    );
    expect(() => vifOnlineElements('eth0; rm', ['10.137.0.10'])).toThrow(RangeError);
  });
});
