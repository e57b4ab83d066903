/**
 * Lab scenarios, format version 1 (README "Lab scenarios"): a netvm upstream, client qubes
 * with their firewall rules as QubesDB rule lines, and steps (probes with expectations, and
 * actions). This module parses and checks a scenario file; scenario-run.ts runs it in a lab.
 */
import { isIPv6 } from 'node:net';
import { LabError } from './errors.ts';
import type { ProbeOutcome } from './topology-wire.ts';

export const SCENARIO_VERSION = 1;

/**
 * `none`: clients attach to the upstream directly; `linux`: the Linux reference firewall VM
 * between them (linux-firewall/); `moat`: sys-moat (firewall/src/vm/) between them.
 */
export const SCENARIO_FIREWALLS = ['none', 'linux', 'moat'] as const;
export type ScenarioFirewall = (typeof SCENARIO_FIREWALLS)[number];

/** The firewall VM's address when a scenario gives none (sys-firewall's place in 10.137.0.0/16). */
export const DEFAULT_FIREWALL_IP = '10.137.0.6';

export type Expectation = 'allow' | 'deny' | 'reject' | 'drop';
export type ProbeKind = 'tcp' | 'udp' | 'ping' | 'dns' | 'iperf3';

export interface ScenarioUpstream {
  readonly ip: string;
  /**
   * Its IPv6 address when any qube has the `ipv6` feature (`ip6`, default Qubes' address for
   * its IPv4 one, qubesIp6): as sys-net with `qvm-features sys-net ipv6 1`.
   */
  readonly ip6?: string;
  /** More addresses the upstream owns (hosts "on the internet"), IPv4 or IPv6. */
  readonly extraAddresses: readonly string[];
  /** Ports with an echo that first reports the source address it saw. */
  readonly tcpPorts: readonly number[];
  readonly udpPorts: readonly number[];
  /** What its DNS server (at 10.139.1.1/.2) answers: name -> IPv4. */
  readonly dns: Readonly<Record<string, string>>;
}

export interface ScenarioClient {
  readonly name: string;
  readonly ip: string;
  /**
   * Its IPv6 address when it has Qubes' `ipv6` feature (`ip6`: an address, or `true` for the
   * one qubesd gives it, qubesIp6). Its rules then also go into `/qubes-firewall/<ip6>`.
   */
  readonly ip6?: string;
  /** QubesDB rule lines by rule number (`/qubes-firewall/<ip>/<NNNN>`). */
  readonly rules: ReadonlyMap<number, string>;
}

export type ScenarioStep =
  | {
      readonly kind: 'probe';
      readonly from: string;
      readonly probe: ProbeKind;
      readonly to?: string;
      readonly port?: number;
      readonly name?: string;
      readonly expect: Expectation;
      /**
       * What the Linux reference firewall gives instead, where the two differ by design
       * (`expect_linux` with its `why`): the same file then passes for both.
       */
      readonly linux?: { readonly expect: Expectation; readonly why: string };
      readonly upstreamSees?: string;
      /** dns: the addresses the answer must hold. */
      readonly answer?: readonly string[];
      readonly timeoutMs?: number;
      /** tcp/udp: send from this address instead of the client's own (anti-spoofing). */
      readonly source?: string;
      /** tcp: keep the connection open under this name. */
      readonly hold?: string;
      /** tcp: send a line over the connection held under this name (no `to`/`port`). */
      readonly on?: string;
      /** iperf3: seconds to run, and the direction (reverse: upstream to client). */
      readonly seconds?: number;
      readonly reverse?: boolean;
    }
  | { readonly kind: 'set_rules'; readonly client: string; readonly rules: ReadonlyMap<number, string> }
  | { readonly kind: 'attach' | 'detach'; readonly client: string }
  | { readonly kind: 'restart' }
  | { readonly kind: 'wait'; readonly ms: number }
  | { readonly kind: 'repeat'; readonly times: number; readonly steps: readonly ScenarioStep[] };

export interface Scenario {
  readonly version: 1;
  readonly name: string;
  readonly description?: string;
  readonly firewall: ScenarioFirewall;
  /** The firewall VM's address (`firewall_ip`; linux and moat). */
  readonly firewallIp: string;
  /**
   * Its IPv6 address (uplink, and its clients' IPv6 gateway), present when a client has an
   * `ip6`: `firewall_ip6`, default qubesIp6(firewallIp).
   */
  readonly firewallIp6?: string;
  readonly virtMode: 'pv' | 'pvh';
  readonly upstream: ScenarioUpstream;
  readonly clients: readonly ScenarioClient[];
  readonly steps: readonly ScenarioStep[];
}

/** What each probe outcome satisfies. `deny` is either `reject` or `drop`. */
const SATISFIES: Record<Expectation, readonly ProbeOutcome[]> = {
  allow: ['accepted'],
  reject: ['refused', 'icmp'],
  drop: ['silence'],
  deny: ['refused', 'icmp', 'silence'],
};

/** The expectation a probe holds to with this firewall (its `expect_linux` for `linux`). */
export function expectationFor(
  step: Extract<ScenarioStep, { kind: 'probe' }>,
  firewall: ScenarioFirewall,
): Expectation {
  return firewall === 'linux' && step.linux ? step.linux.expect : step.expect;
}

export function outcomeMeets(outcome: ProbeOutcome, expect: Expectation): boolean {
  return SATISFIES[expect].includes(outcome);
}

/** The keys of a Qubes firewall rule line (qubes-core-admin qubes/firewall.py, Rule properties). */
const RULE_KEYS = new Set([
  'action',
  'dst4',
  'dst6',
  'dsthost',
  'proto',
  'dstports',
  'icmptype',
  'specialtarget',
  'expire',
  'comment',
]);

class Where {
  constructor(readonly path: string) {}
  at(key: string | number): Where {
    return new Where(typeof key === 'number' ? `${this.path}[${key}]` : `${this.path}.${key}`);
  }
  fail(message: string): never {
    throw new LabError('scenario', `${this.path}: ${message}`);
  }
}

type Json = Record<string, unknown>;

function object(value: unknown, w: Where): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) w.fail('must be an object');
  return value as Json;
}

function onlyKeys(o: Json, keys: readonly string[], w: Where): void {
  for (const key of Object.keys(o))
    if (!keys.includes(key)) w.fail(`unknown field "${key}" (known: ${keys.join(', ')})`);
}

function string(value: unknown, w: Where): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 1000)
    w.fail(
      typeof value === 'string' && value.length > 1000
        ? `${value.length} characters, more than 1000`
        : 'must be a non-empty string',
    );
  return value;
}

function ipv4(value: unknown, w: Where): string {
  const s = string(value, w);
  const parts = s.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255))
    w.fail(`"${s}" is not an IPv4 address`);
  return s;
}

/**
 * An IPv6 address in the form Python's ipaddress prints (RFC 5952: lower case, the longest run
 * of zero groups as `::`), which is how qubesd writes it into QubesDB keys and paths.
 */
export function canonicalIpv6(address: string): string | undefined {
  if (!isIPv6(address) || address.includes('%')) return undefined;
  // WHATWG URL host serialisation is RFC 5952's canonical form.
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

function ipv6(value: unknown, w: Where): string {
  const s = string(value, w);
  const canonical = canonicalIpv6(s);
  if (!canonical) w.fail(`"${s}" is not an IPv6 address`);
  return canonical;
}

/** An address of either family (IPv6 canonicalised). */
function address(value: unknown, w: Where): string {
  const s = string(value, w);
  return s.includes(':') ? ipv6(s, w) : ipv4(s, w);
}

/** Qubes' IPv6 prefix (qubes-core-admin qubes/config.py `qubes_ipv6_prefix`). */
export const QUBES_IPV6_PREFIX = 'fd09:24ef:4179';

/**
 * The IPv6 address qubesd gives a qube whose IPv4 address is `ip4` (qubes/vm/mix/net.py
 * `get_ip6_for_vm`: `<prefix>::a89:<qid>`, 0xa89 being 10.137, and 10.137.<qid / 256>.<qid % 256>
 * its IPv4 address; DispVMs `::a8a:<dispid>` for 10.138): the IPv4 address in the low 32 bits.
 */
export function qubesIp6(ip4: string): string {
  const [a = 0, b = 0, c = 0, d = 0] = ip4.split('.').map(Number);
  return ipv6(
    `${QUBES_IPV6_PREFIX}::${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`,
    new Where('ip6'),
  );
}

function integer(value: unknown, w: Where, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    w.fail(`must be an integer in ${min}..${max}`);
  return value;
}

function array(value: unknown, w: Where): unknown[] {
  if (!Array.isArray(value)) w.fail('must be an array');
  return value;
}

/** A QubesDB rule line: space-separated key=value, keys Qubes knows, an action. */
export function checkRuleLine(line: string, w: Where = new Where('rule')): string {
  if (line.length > 3000) w.fail('rule line too long');
  const tokens = line.trim().split(/\s+/);
  let action: string | undefined;
  for (const token of tokens) {
    const eq = token.indexOf('=');
    const key = eq > 0 ? token.slice(0, eq) : token;
    // `comment=` takes the rest of the line in Qubes' format.
    if (key === 'comment') break;
    if (eq <= 0 || !RULE_KEYS.has(key)) w.fail(`"${token}" is not a Qubes rule key=value`);
    if (key === 'action') action = token.slice(eq + 1);
  }
  if (action !== 'accept' && action !== 'drop') w.fail(`rule "${line}" needs action=accept or action=drop`);
  return line.trim();
}

/**
 * The rules of one address family's tree, as qubesd's `qdb_entries(addr_family)` writes them
 * (qubes-core-admin qubes/firewall.py): a `dst6` rule is left out of the IPv4 tree and a `dst4`
 * rule out of the IPv6 tree, the others keep their numbers (so the gaps show where).
 */
export function rulesOfFamily(rules: ReadonlyMap<number, string>, family: 4 | 6): Map<number, string> {
  const other = family === 4 ? 'dst6' : 'dst4';
  return new Map(
    [...rules].filter(([, line]) => {
      const words = line.split(/\s+/);
      const comment = words.findIndex((t) => t.startsWith('comment='));
      return !(comment < 0 ? words : words.slice(0, comment)).some((t) => t.startsWith(`${other}=`));
    }),
  );
}

function rules(value: unknown, w: Where): Map<number, string> {
  const out = new Map<number, string>();
  if (value === undefined) return out;
  if (Array.isArray(value)) {
    value.forEach((line, i) => {
      out.set(i, checkRuleLine(string(line, w.at(i)), w.at(i)));
    });
    return out;
  }
  const map = object(value, w);
  for (const [key, line] of Object.entries(map)) {
    if (!/^\d{1,4}$/.test(key)) w.fail(`rule number "${key}" must be 0..9999`);
    out.set(Number(key), checkRuleLine(string(line, w.at(key)), w.at(key)));
  }
  return new Map([...out].sort(([a], [b]) => a - b));
}

const EXPECTATIONS: readonly Expectation[] = ['allow', 'deny', 'reject', 'drop'];
const PROBES: readonly ProbeKind[] = ['tcp', 'udp', 'ping', 'dns', 'iperf3'];

function step(value: unknown, w: Where, clients: Set<string>, depth: number): ScenarioStep {
  const o = object(value, w);
  const client = (v: unknown) => {
    const name = string(v, w.at('client'));
    if (!clients.has(name)) w.at('client').fail(`no client named "${name}"`);
    return name;
  };
  if ('repeat' in o) {
    onlyKeys(o, ['repeat', 'steps'], w);
    if (depth > 4) w.fail('repeats nest at most 4 deep');
    const steps = array(o.steps, w.at('steps')).map((s, i) =>
      step(s, w.at('steps').at(i), clients, depth + 1),
    );
    return { kind: 'repeat', times: integer(o.repeat, w.at('repeat'), 1, 1000), steps };
  }
  if ('action' in o) {
    const action = string(o.action, w.at('action'));
    switch (action) {
      case 'set_rules':
        onlyKeys(o, ['action', 'client', 'rules'], w);
        return { kind: 'set_rules', client: client(o.client), rules: rules(o.rules, w.at('rules')) };
      case 'attach':
      case 'detach':
        onlyKeys(o, ['action', 'client'], w);
        return { kind: action, client: client(o.client) };
      case 'restart':
        onlyKeys(o, ['action'], w);
        return { kind: 'restart' };
      case 'wait':
        onlyKeys(o, ['action', 'ms'], w);
        return { kind: 'wait', ms: integer(o.ms, w.at('ms'), 0, 600_000) };
      default:
        return w.at('action').fail(`unknown action "${action}" (set_rules, attach, detach, restart, wait)`);
    }
  }
  onlyKeys(
    o,
    [
      ...['from', 'probe', 'to', 'port', 'name', 'expect', 'upstream_sees', 'answer', 'timeout_ms'],
      ...['source', 'hold', 'on', 'seconds', 'reverse', 'expect_linux', 'why'],
    ],
    w,
  );
  const from = string(o.from, w.at('from'));
  if (!clients.has(from)) w.at('from').fail(`no client named "${from}"`);
  const probe = string(o.probe, w.at('probe')) as ProbeKind;
  if (!PROBES.includes(probe)) w.at('probe').fail(`must be one of ${PROBES.join(', ')}`);
  const expect = string(o.expect, w.at('expect')) as Expectation;
  if (!EXPECTATIONS.includes(expect)) w.at('expect').fail(`must be one of ${EXPECTATIONS.join(', ')}`);
  let linux: { linux: { expect: Expectation; why: string } } | Record<string, never> = {};
  if (o.expect_linux !== undefined || o.why !== undefined) {
    const expectLinux = string(o.expect_linux, w.at('expect_linux')) as Expectation;
    if (!EXPECTATIONS.includes(expectLinux))
      w.at('expect_linux').fail(`must be one of ${EXPECTATIONS.join(', ')}`);
    if (expectLinux === expect) w.at('expect_linux').fail(`is the same as expect ("${expect}")`);
    const why = string(o.why, w.at('why'));
    linux = { linux: { expect: expectLinux, why } };
  }
  const base = { kind: 'probe' as const, from, probe, expect, ...linux };
  const timeoutMs =
    o.timeout_ms === undefined ? {} : { timeoutMs: integer(o.timeout_ms, w.at('timeout_ms'), 100, 120_000) };
  if (probe === 'dns') {
    const answer =
      o.answer === undefined
        ? {}
        : { answer: array(o.answer, w.at('answer')).map((a, i) => ipv4(a, w.at('answer').at(i))) };
    return { ...base, name: string(o.name, w.at('name')), ...answer, ...timeoutMs };
  }
  const only = (kinds: readonly ProbeKind[], ...fields: string[]) => {
    for (const f of fields)
      if (o[f] !== undefined && !kinds.includes(probe)) w.at(f).fail(`only for ${kinds.join('/')} probes`);
  };
  only(['tcp', 'udp'], 'source');
  only(['tcp'], 'hold', 'on');
  only(['iperf3'], 'seconds', 'reverse');
  if (o.on !== undefined) {
    onlyKeys(o, ['from', 'probe', 'on', 'expect', 'timeout_ms', 'expect_linux', 'why'], w);
    return { ...base, on: string(o.on, w.at('on')), ...timeoutMs };
  }
  // IPv6 too (a ping to one goes out of the client's eth0, so link-local multicast works).
  const to = address(o.to, w.at('to'));
  if (probe === 'iperf3' && to.includes(':')) w.at('to').fail('an iperf3 probe goes to an IPv4 address');
  if (probe === 'iperf3') {
    if (expect !== 'allow') w.at('expect').fail('an iperf3 probe expects allow');
    if (o.expect_linux !== undefined) w.at('expect_linux').fail('an iperf3 probe expects allow');
    const reverse = o.reverse === undefined ? {} : { reverse: o.reverse === true };
    if (o.reverse !== undefined && typeof o.reverse !== 'boolean')
      w.at('reverse').fail('must be true or false');
    return {
      ...base,
      to,
      seconds: o.seconds === undefined ? 3 : integer(o.seconds, w.at('seconds'), 1, 60),
      ...reverse,
    };
  }
  const sameFamily = (field: string, a: string) => {
    if (a.includes(':') !== to.includes(':'))
      w.at(field).fail(`${a} is not of the same address family as "to" (${to})`);
    return a;
  };
  const source =
    o.source === undefined ? {} : { source: sameFamily('source', address(o.source, w.at('source'))) };
  const hold = o.hold === undefined ? {} : { hold: string(o.hold, w.at('hold')) };
  const sees =
    o.upstream_sees === undefined
      ? {}
      : { upstreamSees: sameFamily('upstream_sees', address(o.upstream_sees, w.at('upstream_sees'))) };
  if (probe === 'ping') return { ...base, to, ...timeoutMs };
  return {
    ...base,
    to,
    port: integer(o.port, w.at('port'), 1, 65535),
    ...sees,
    ...source,
    ...hold,
    ...timeoutMs,
  };
}

/** Parses and checks a scenario (JSON text or value); the error names the field at fault. */
export function parseScenario(input: string | unknown, source = 'scenario'): Scenario {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (error) {
      throw new LabError('scenario', `${source}: not JSON: ${(error as Error).message}`);
    }
  }
  const w = new Where(source);
  const o = object(value, w);
  onlyKeys(
    o,
    [
      'version',
      'name',
      'description',
      'firewall',
      'firewall_ip',
      'firewall_ip6',
      'virt_mode',
      'upstream',
      'clients',
      'steps',
    ],
    w,
  );
  if (o.version !== SCENARIO_VERSION)
    w.at('version').fail(`must be ${SCENARIO_VERSION} (this lab reads version 1)`);
  const firewall = (o.firewall ?? 'none') as ScenarioFirewall;
  if (!SCENARIO_FIREWALLS.includes(firewall))
    w.at('firewall').fail(
      `"${String(o.firewall)}" is not a firewall this lab knows (${SCENARIO_FIREWALLS.join(', ')})`,
    );
  const firewallIp =
    o.firewall_ip === undefined ? DEFAULT_FIREWALL_IP : ipv4(o.firewall_ip, w.at('firewall_ip'));
  if (o.firewall_ip !== undefined && firewall === 'none') w.at('firewall_ip').fail('only with a firewall');
  const virtMode = o.virt_mode ?? 'pv';
  if (virtMode !== 'pv' && virtMode !== 'pvh') return w.at('virt_mode').fail('must be "pv" or "pvh"');

  const uw = w.at('upstream');
  const u = object(o.upstream, uw);
  onlyKeys(u, ['ip', 'ip6', 'extra_addresses', 'services', 'dns'], uw);
  const services = u.services === undefined ? {} : object(u.services, uw.at('services'));
  onlyKeys(services, ['tcp', 'udp', 'ping'], uw.at('services'));
  const ports = (v: unknown, sw: Where) =>
    v === undefined ? [7] : array(v, sw).map((p, i) => integer(p, sw.at(i), 1, 65535));
  const dns: Record<string, string> = {};
  if (u.dns !== undefined)
    for (const [name, ip] of Object.entries(object(u.dns, uw.at('dns')))) {
      if (!/^[A-Za-z0-9.-]{1,253}$/.test(name)) uw.at('dns').fail(`"${name}" is not a host name`);
      dns[name] = ipv4(ip, uw.at('dns').at(name));
    }
  const upstreamIp = ipv4(u.ip, uw.at('ip'));
  const extraAddresses =
    u.extra_addresses === undefined
      ? []
      : array(u.extra_addresses, uw.at('extra_addresses')).map((a, i) =>
          address(a, uw.at('extra_addresses').at(i)),
        );
  const upstream: ScenarioUpstream = {
    ip: upstreamIp,
    ...(u.ip6 === undefined ? {} : { ip6: ipv6(u.ip6, uw.at('ip6')) }),
    extraAddresses,
    tcpPorts: ports(services.tcp, uw.at('services').at('tcp')),
    udpPorts: ports(services.udp, uw.at('services').at('udp')),
    dns,
  };

  const cw = w.at('clients');
  const names = new Set<string>();
  if (firewall !== 'none' && firewallIp === upstream.ip)
    w.at('firewall_ip').fail(`${firewallIp} is the upstream's address`);
  const ips = new Set<string>([upstream.ip, ...(firewall === 'none' ? [] : [firewallIp])]);
  const clients = array(o.clients, cw).map((c, i): ScenarioClient => {
    const x = object(c, cw.at(i));
    onlyKeys(x, ['name', 'ip', 'ip6', 'rules'], cw.at(i));
    const name = string(x.name, cw.at(i).at('name'));
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(name))
      cw.at(i).at('name').fail('lower-case letters, digits and -, at most 31');
    if (names.has(name)) cw.at(i).at('name').fail(`"${name}" twice`);
    names.add(name);
    const ip = ipv4(x.ip, cw.at(i).at('ip'));
    if (ips.has(ip)) cw.at(i).at('ip').fail(`${ip} is used twice`);
    ips.add(ip);
    let ip6: { ip6: string } | Record<string, never> = {};
    if (x.ip6 !== undefined) {
      if (firewall === 'none')
        cw.at(i).at('ip6').fail("only with a firewall (the lab's netvm serves IPv4 clients only)");
      const a = x.ip6 === true ? qubesIp6(ip) : ipv6(x.ip6, cw.at(i).at('ip6'));
      ip6 = { ip6: a };
    }
    return { name, ip, ...ip6, rules: rules(x.rules, cw.at(i).at('rules')) };
  });
  if (clients.length === 0) cw.fail('needs at least one client');
  // IPv6 in the lab only as Qubes has it with the `ipv6` feature on the netvm: every VM on the
  // path (upstream, firewall) has an IPv6 address then, the clients that have it too.
  const ipv6On = clients.some((c) => c.ip6 !== undefined);
  if (!ipv6On) {
    if (o.firewall_ip6 !== undefined) w.at('firewall_ip6').fail('only with a client that has ip6');
    if (upstream.ip6 !== undefined) uw.at('ip6').fail('only with a client that has ip6');
    const v6 = extraAddresses.find((a) => a.includes(':'));
    if (v6) uw.at('extra_addresses').fail(`${v6}: IPv6 addresses only with a client that has ip6`);
  }
  const firewallIp6 = ipv6On
    ? o.firewall_ip6 === undefined
      ? qubesIp6(firewallIp)
      : ipv6(o.firewall_ip6, w.at('firewall_ip6'))
    : undefined;
  const fullUpstream: ScenarioUpstream =
    ipv6On && upstream.ip6 === undefined ? { ...upstream, ip6: qubesIp6(upstream.ip) } : upstream;
  const ips6 = new Set<string>();
  for (const [where, a] of [
    ['upstream.ip6', fullUpstream.ip6],
    ['firewall_ip6', firewallIp6],
    ...clients.map((c, i) => [`clients[${i}].ip6`, c.ip6] as const),
  ] as const) {
    if (a === undefined) continue;
    if (ips6.has(a)) new Where(`${source}.${where}`).fail(`${a} is used twice`);
    ips6.add(a);
  }
  if (clients.length > 20) cw.fail('at most 20 clients');
  const steps = array(o.steps, w.at('steps')).map((s, i) => step(s, w.at('steps').at(i), names, 0));
  return {
    version: 1,
    name: string(o.name, w.at('name')),
    ...(o.description === undefined ? {} : { description: string(o.description, w.at('description')) }),
    firewall,
    firewallIp,
    ...(firewallIp6 ? { firewallIp6 } : {}),
    virtMode,
    upstream: fullUpstream,
    clients,
    steps,
  };
}

/** One line of a run's output (`--json` prints these). */
export interface StepReport {
  /** Position in the file, `3` or `4.2#1` (repeat: inner step and iteration). */
  readonly step: string;
  readonly what: string;
  readonly result: string;
  readonly expect?: Expectation;
  readonly ok: boolean;
  readonly ms: number;
  readonly detail?: unknown;
}

/** One step of a scenario run with sys-moat and with the Linux reference, side by side. */
export interface ComparedStep {
  readonly step: string;
  readonly what: string;
  readonly moat?: string;
  readonly linux?: string;
  /** Both runs met the step's expectation (each its own where the file declares a difference). */
  readonly same: boolean;
  /** The file's reason why Linux is expected to differ here. */
  readonly differs?: string;
}

/**
 * Compares a scenario's rows with `moat` and with `linux`: the same steps, each met by both.
 * Rows that met `deny` differently (one firewall refused, the other stayed silent) count as the
 * same result, and the table shows both outcomes.
 */
export function compareRuns(
  moat: readonly StepReport[],
  linux: readonly StepReport[],
): {
  readonly rows: readonly ComparedStep[];
  readonly mismatches: readonly string[];
  readonly table: string;
} {
  const byStep = (reports: readonly StepReport[]) => new Map(reports.map((r) => [r.step, r]));
  const m = byStep(moat);
  const l = byStep(linux);
  const ids = [...new Set([...m.keys(), ...l.keys()])];
  const rows = ids.map((step): ComparedStep => {
    const a = m.get(step);
    const b = l.get(step);
    const differs = ((a ?? b)?.detail as { differs?: { why: string } } | undefined)?.differs?.why;
    return {
      step,
      // The firewall's own row (0.f) names it; the rest are the same text in both.
      what: step === '0.f' ? 'firewall: QubesDB, uplink, rules of every client' : ((a ?? b)?.what ?? ''),
      ...(a ? { moat: a.result } : {}),
      ...(b ? { linux: b.result } : {}),
      same: Boolean(a?.ok && b?.ok),
      ...(differs ? { differs } : {}),
    };
  });
  const mismatches = rows
    .filter((r) => !r.same)
    .map((r) => `${r.step} ${r.what}: moat ${r.moat ?? '(no row)'}, linux ${r.linux ?? '(no row)'}`);
  const table = rows
    .map(
      (r) =>
        `${r.same ? 'same' : 'DIFF'} ${r.step.padEnd(7)} ${r.what.padEnd(44)} moat ${(r.moat ?? '-').padEnd(12)} linux ${r.linux ?? '-'}` +
        (r.differs ? `  (differs by design: ${r.differs})` : ''),
    )
    .join('\n');
  return { rows, mismatches, table };
}
