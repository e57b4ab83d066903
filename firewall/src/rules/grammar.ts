/**
 * The QubesDB rule grammar, as dom0 writes it (qubes-core-admin qubes/firewall.py,
 * commit 1da75a67) and as the Linux sys-firewall reads it (qubes-core-agent-linux
 * qubesagent/firewall.py, commit a37fac9); docs/firewall-behaviour.md lists the sources.
 *
 * A rule is one QubesDB value of space-separated `key=value` options. Anything
 * the Linux agent would reject (unknown option, bad value, missing `policy`,
 * a non-4-digit key) is a parse failure here, and the caller turns the whole
 * set into drop-all (fail closed). Where Linux would crash or let nft fail
 * (duplicated `=`, `icmptype` with `proto=tcp`...) we also fail closed.
 */
import { parseIpText, parseIpv4Text, parseIpv6Text } from '../wire/address.ts';
import { maskPrefix } from './address.ts';
import type { RuleAction } from './types.ts';

export type RuleDestination =
  | { kind: 'prefix'; family: 4 | 6; address: Uint8Array; length: number }
  | { kind: 'host'; name: string };

export type RuleProto = 'tcp' | 'udp' | 'icmp';

/** One parsed `/qubes-firewall/<ip>/NNNN` entry (the repr; the hot path never sees it). */
export interface QubesRule {
  /** NNNN as a number. */
  number: number;
  action: RuleAction;
  dst?: RuleDestination;
  proto?: RuleProto;
  specialTarget?: 'dns';
  dstPorts?: { low: number; high: number };
  icmpType?: number;
  /** UNIX epoch seconds; dom0 omits expired rules itself, we treat an expired rule as absent too. */
  expire?: number;
  comment?: string;
  /** The line as read, for logs. */
  text: string;
}

/** A client's whole rule tree, sorted by rule number (gaps allowed). */
export interface ParsedRules {
  policy: RuleAction;
  rules: QubesRule[];
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** QubesDB caps a value at 3072 bytes (vm-interface.rst). */
export const MAX_RULE_LENGTH = 3072;
/** Four decimal digits: at most 10,000 rules per source (Linux requires exactly 4 digits). */
export const MAX_RULES = 10_000;

const SUPPORTED = new Set([
  'action',
  'dst4',
  'dst6',
  'dsthost',
  'proto',
  'specialtarget',
  'dstports',
  'icmptype',
  'expire',
  'comment',
]);

const HOSTNAME = /^[a-z0-9._-]+$/;

function fail<T>(reason: string): ParseResult<T> {
  return { ok: false, reason };
}

function parseDecimal(text: string, maxDigits: number): number | undefined {
  if (text.length === 0 || text.length > maxDigits || !/^[0-9]+$/.test(text)) return undefined;
  return Number(text);
}

function parsePrefix(value: string, family: 4 | 6): RuleDestination | undefined {
  const slash = value.indexOf('/');
  const addrText = slash < 0 ? value : value.slice(0, slash);
  const address = family === 4 ? parseIpv4Text(addrText) : parseIpv6Text(addrText);
  if (!address) return undefined;
  const max = family === 4 ? 32 : 128;
  let length = max;
  if (slash >= 0) {
    const len = parseDecimal(value.slice(slash + 1), 3);
    if (len === undefined || len > max) return undefined;
    length = len;
  }
  return { kind: 'prefix', family, address: maskPrefix(address, length), length };
}

function parseHost(value: string): RuleDestination | undefined {
  const name = value.toLowerCase();
  const literal = parseIpText(name);
  // getaddrinfo (Linux) resolves an address literal to itself.
  if (literal)
    return {
      kind: 'prefix',
      family: literal.length === 4 ? 4 : 6,
      address: literal,
      length: literal.length * 8,
    };
  if (!HOSTNAME.test(name)) return undefined;
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare.length === 0 || bare.length > 253) return undefined;
  for (const label of bare.split('.')) if (label.length === 0 || label.length > 63) return undefined;
  return { kind: 'host', name: bare };
}

/**
 * Parses one rule line. `family` is the family of the tree the line came from
 * (the `<ip>` of `/qubes-firewall/<ip>/`): a `dst4` rule in an IPv6 tree or a
 * `dst6` rule in an IPv4 tree is an error, as in Linux (dom0 never writes one).
 */
export function parseRuleLine(text: string, number: number, family?: 4 | 6): ParseResult<QubesRule> {
  if (text.length > MAX_RULE_LENGTH) return fail(`rule longer than ${MAX_RULE_LENGTH} bytes`);
  if (text.length === 0) return fail('empty rule');
  const options = new Map<string, string>();
  let rest = text;
  while (rest.length > 0) {
    let token: string;
    if (rest.startsWith('comment=')) {
      // the comment is free text (spaces allowed) and always placed last
      token = rest;
      rest = '';
    } else {
      const space = rest.indexOf(' ');
      token = space < 0 ? rest : rest.slice(0, space);
      rest = space < 0 ? '' : rest.slice(space + 1);
      if (space >= 0 && rest.length === 0) return fail('trailing space');
    }
    if (token.length === 0) return fail('empty option (repeated space)');
    const eq = token.indexOf('=');
    if (eq <= 0) return fail(`option without value: ${JSON.stringify(token)}`);
    const key = token.slice(0, eq);
    const value = token.slice(eq + 1);
    if (key !== 'comment' && value.includes('='))
      return fail(`more than one '=' in ${JSON.stringify(token)}`);
    if (!SUPPORTED.has(key)) return fail(`unsupported rule option: ${JSON.stringify(key)}`);
    if (options.has(key)) return fail(`duplicated option: ${key}`);
    options.set(key, value);
  }

  const action = options.get('action');
  if (action === undefined) return fail('rule lacks action');
  if (action !== 'accept' && action !== 'drop') return fail(`invalid action: ${JSON.stringify(action)}`);
  const rule: QubesRule = { number, action, text };

  const dstKeys = ['dst4', 'dst6', 'dsthost'].filter((k) => options.has(k));
  if (dstKeys.length > 1) return fail(`more than one of dst4/dst6/dsthost: ${dstKeys.join(', ')}`);
  const dst4 = options.get('dst4');
  const dst6 = options.get('dst6');
  const dsthost = options.get('dsthost');
  if (dst4 !== undefined) {
    if (family === 6) return fail('dst4 rule found for IPv6 address');
    const dst = parsePrefix(dst4, 4);
    if (!dst) return fail(`invalid dst4: ${JSON.stringify(dst4)}`);
    rule.dst = dst;
  } else if (dst6 !== undefined) {
    if (family === 4) return fail('dst6 rule found for IPv4 address');
    const dst = parsePrefix(dst6, 6);
    if (!dst) return fail(`invalid dst6: ${JSON.stringify(dst6)}`);
    rule.dst = dst;
  } else if (dsthost !== undefined) {
    const dst = parseHost(dsthost);
    if (!dst) return fail(`invalid dsthost: ${JSON.stringify(dsthost)}`);
    if (dst.kind === 'prefix' && family !== undefined && dst.family !== family)
      return fail(`dsthost address literal of the other family: ${dsthost}`);
    rule.dst = dst;
  }

  const proto = options.get('proto');
  if (proto !== undefined) {
    if (proto !== 'tcp' && proto !== 'udp' && proto !== 'icmp')
      return fail(`invalid proto: ${JSON.stringify(proto)}`);
    rule.proto = proto;
  }

  const special = options.get('specialtarget');
  if (special !== undefined) {
    // dom0 knows only `dns`; Linux would silently ignore another value, which could open a hole.
    if (special !== 'dns') return fail(`invalid specialtarget: ${JSON.stringify(special)}`);
    if (proto === 'icmp') return fail('specialtarget=dns with proto=icmp (DNS is TCP/UDP port 53)');
    rule.specialTarget = 'dns';
  }

  const ports = options.get('dstports');
  if (ports !== undefined) {
    if (proto === 'icmp') return fail('dstports with proto=icmp');
    const dash = ports.indexOf('-');
    const low = parseDecimal(dash < 0 ? ports : ports.slice(0, dash), 5);
    const high = dash < 0 ? low : parseDecimal(ports.slice(dash + 1), 5);
    if (low === undefined || high === undefined || low > high || high > 65535)
      return fail(`invalid dstports: ${JSON.stringify(ports)}`);
    rule.dstPorts = { low, high };
  }

  const icmp = options.get('icmptype');
  if (icmp !== undefined) {
    if (proto === 'tcp' || proto === 'udp') return fail(`icmptype with proto=${proto}`);
    if (ports !== undefined || special !== undefined)
      return fail('icmptype together with dstports/specialtarget');
    const type = parseDecimal(icmp, 3);
    if (type === undefined || type > 255) return fail(`invalid icmptype: ${JSON.stringify(icmp)}`);
    rule.icmpType = type;
  }

  const expire = options.get('expire');
  if (expire !== undefined) {
    const at = parseDecimal(expire, 12);
    if (at === undefined) return fail(`invalid expire: ${JSON.stringify(expire)}`);
    rule.expire = at;
  }
  const comment = options.get('comment');
  if (comment !== undefined) rule.comment = comment;
  return { ok: true, value: rule };
}

/** The address family of a `/qubes-firewall/<ip>` source, or undefined if `<ip>` is no address. */
export function sourceFamily(source: string): 4 | 6 | undefined {
  const addr = parseIpText(source);
  return addr ? (addr.length === 4 ? 4 : 6) : undefined;
}

/**
 * Parses a client's rule tree: the result of a QubesDB multiread of
 * `/qubes-firewall/<source>/`. Keys may be full paths or relative (`policy`,
 * `0003`); the base key `/qubes-firewall/<source>` itself (the empty "reload"
 * marker) is ignored. Rules are sorted by number; gaps are fine (dom0 leaves
 * them where it omits rules of the other family or expired rules).
 */
export function parseRuleEntries(
  entries: Iterable<readonly [string, string]> | Readonly<Record<string, string>>,
  source?: string,
): ParseResult<ParsedRules> {
  const family = source === undefined ? undefined : sourceFamily(source);
  if (source !== undefined && family === undefined) return fail(`source is not an IP address: ${source}`);
  const base = source === undefined ? undefined : `/qubes-firewall/${source}`;
  const list: Iterable<readonly [string, string]> =
    Symbol.iterator in entries
      ? (entries as Iterable<readonly [string, string]>)
      : Object.entries(entries as Readonly<Record<string, string>>);
  let policy: RuleAction | undefined;
  const rules: QubesRule[] = [];
  const seen = new Set<number>();
  for (const [path, value] of list) {
    let key = path;
    if (path.startsWith('/')) {
      if (base === undefined) {
        const parts = path.split('/');
        if (parts.length === 3 && parts[1] === 'qubes-firewall') continue;
        if (parts.length !== 4 || parts[1] !== 'qubes-firewall') return fail(`unexpected key: ${path}`);
        key = parts[3]!;
      } else {
        if (path === base) continue;
        if (!path.startsWith(`${base}/`)) return fail(`key outside ${base}/: ${path}`);
        key = path.slice(base.length + 1);
      }
    }
    if (key === 'policy') {
      if (value !== 'accept' && value !== 'drop') return fail(`invalid policy: ${JSON.stringify(value)}`);
      policy = value;
      continue;
    }
    if (key.length !== 4 || !/^[0-9]{4}$/.test(key))
      return fail(`unexpected non-rule found: ${key}=${value}`);
    const number = Number(key);
    if (seen.has(number)) return fail(`rule ${key} given twice`);
    seen.add(number);
    if (rules.length >= MAX_RULES) return fail('too many rules');
    const parsed = parseRuleLine(value, number, family);
    if (!parsed.ok) return fail(`rule ${key} (${JSON.stringify(value.slice(0, 200))}): ${parsed.reason}`);
    rules.push(parsed.value);
  }
  if (policy === undefined) return fail("no 'policy' defined");
  rules.sort((a, b) => a.number - b.number);
  return { ok: true, value: { policy, rules } };
}

/**
 * The client whose rules to reload for a QubesDB watch event, or undefined.
 * Dom0 writes `/qubes-firewall/<ip>` (empty) last, after the rule keys; writes to
 * `/qubes-firewall/<ip>/NNNN` are ignored until then (Linux: exactly two slashes).
 */
export function reloadSource(path: string): string | undefined {
  if (!path.startsWith('/qubes-firewall/')) return undefined;
  const rest = path.slice('/qubes-firewall/'.length);
  if (rest.length === 0 || rest.includes('/')) return undefined;
  return rest;
}

/** A client's entries out of a larger QubesDB snapshot (path → value). */
export function ruleEntriesFor(
  source: string,
  snapshot: Iterable<readonly [string, string]> | Readonly<Record<string, string>>,
): [string, string][] {
  const prefix = `/qubes-firewall/${source}/`;
  const list: Iterable<readonly [string, string]> =
    Symbol.iterator in snapshot
      ? (snapshot as Iterable<readonly [string, string]>)
      : Object.entries(snapshot as Readonly<Record<string, string>>);
  const out: [string, string][] = [];
  for (const [path, value] of list) if (path.startsWith(prefix)) out.push([path, value]);
  return out;
}
