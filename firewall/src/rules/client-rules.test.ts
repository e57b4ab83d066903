import { describe, expect, it } from 'vitest';
import { parseIpText as parseIp } from '../wire/address.ts';
import { dnsInfoEntries, type HostAnswer, type HostResolver, SourceRules } from './client-rules.ts';
import type { FlowQuery, RuleDecision } from './types.ts';

/** A resolver driven by the test. */
class FakeResolver implements HostResolver {
  answers = new Map<string, HostAnswer>();
  retained = new Map<string, number>();
  private listeners = new Set<(name: string, family: 4 | 6) => void>();
  retain(name: string, family: 4 | 6): void {
    const k = `${family}:${name}`;
    this.retained.set(k, (this.retained.get(k) ?? 0) + 1);
  }
  release(name: string, family: 4 | 6): void {
    const k = `${family}:${name}`;
    const n = (this.retained.get(k) ?? 0) - 1;
    if (n <= 0) this.retained.delete(k);
    else this.retained.set(k, n);
  }
  answer(name: string, family: 4 | 6): HostAnswer {
    return this.answers.get(`${family}:${name}`) ?? { state: 'pending' };
  }
  subscribe(listener: (name: string, family: 4 | 6) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  set(name: string, answer: HostAnswer, family: 4 | 6 = 4): void {
    this.answers.set(`${family}:${name}`, answer);
    for (const l of this.listeners) l(name, family);
  }
}

const DNS = [parseIp('10.139.1.1')!, parseIp('10.139.1.2')!];
function tcp(dst: string, port: number): FlowQuery {
  return { family: 4, proto: 6, dst: parseIp(dst)!, dstPort: port, icmpType: -1, icmpCode: -1 };
}
const out = (): RuleDecision => ({ action: 'drop', rule: -2 });

/** Client 10.137.0.9's rules over a fresh FakeResolver, with its log lines collected. */
function clientWithResolver(): { resolver: FakeResolver; logs: string[]; rules: SourceRules } {
  const resolver = new FakeResolver();
  const logs: string[] = [];
  const rules = new SourceRules({
    source: '10.137.0.9',
    dnsServers: DNS,
    resolver,
    log: (l) => logs.push(l),
  });
  return { resolver, logs, rules };
}

describe('SourceRules', () => {
  it('resolves dsthost names, then swaps in the compiled set', () => {
    const { resolver, rules } = clientWithResolver();
    const swaps: string[] = [];
    rules.onChange((cur) => swaps.push(cur.failClosedReason ?? 'rules'));
    rules.update({
      policy: 'drop',
      '0000': 'action=accept dsthost=www.example proto=tcp',
      '0001': 'action=drop',
    });
    expect(resolver.retained.get('4:www.example')).toBe(1);
    expect(rules.current.failClosedReason).toMatch(/waiting for DNS answers for www.example/);
    resolver.set('www.example', { state: 'resolved', addresses: [parseIp('93.184.216.34')!] });
    expect(rules.current.failClosedReason).toBeUndefined();
    expect(rules.current.evaluate(tcp('93.184.216.34', 443), out())).toEqual({ action: 'accept', rule: 0 });
    expect(rules.current.evaluate(tcp('93.184.216.35', 443), out())).toEqual({ action: 'drop', rule: 1 });
    expect(swaps).toEqual([expect.stringMatching(/waiting/), 'rules']);
  });

  it('follows new DNS answers, keeping old addresses until one arrives', () => {
    const resolver = new FakeResolver();
    resolver.set('www.example', { state: 'resolved', addresses: [parseIp('1.1.1.1')!] });
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS, resolver });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=www.example' });
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out()).action).toBe('accept');
    // a refresh in flight changes nothing; the new answer replaces the addresses
    resolver.set('www.example', { state: 'resolved', addresses: [parseIp('2.2.2.2')!] });
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out()).action).toBe('drop');
    expect(rules.current.evaluate(tcp('2.2.2.2', 1), out()).action).toBe('accept');
  });

  it('blocks the client when a dsthost cannot be resolved, and logs why', () => {
    const { resolver, logs, rules } = clientWithResolver();
    rules.update({ policy: 'drop', '0000': 'action=drop dsthost=ads.example', '0001': 'action=accept' });
    resolver.set('ads.example', { state: 'failed', reason: 'NXDOMAIN' });
    expect(rules.current.failClosedReason).toMatch(
      /Failed to resolve dsthost for 10.137.0.9 \(ads.example: NXDOMAIN\)/,
    );
    expect(rules.current.evaluate(tcp('1.1.1.1', 80), out()).action).toBe('drop');
    expect(logs.at(-1)).toMatch(/blocking traffic/);
    // an answer later (the resolver retries) restores the rules
    resolver.set('ads.example', { state: 'resolved', addresses: [parseIp('6.6.6.6')!] });
    expect(rules.current.evaluate(tcp('1.1.1.1', 80), out())).toEqual({ action: 'accept', rule: 1 });
    expect(rules.current.evaluate(tcp('6.6.6.6', 80), out())).toEqual({ action: 'drop', rule: 0 });
  });

  it('keeps the previous set while a new tree resolves, and releases names no longer used', () => {
    const { resolver, rules } = clientWithResolver();
    resolver.set('a.example', { state: 'resolved', addresses: [parseIp('1.1.1.1')!] });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=a.example' });
    const first = rules.current;
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=b.example' });
    expect(rules.current).toBe(first);
    expect(resolver.retained.has('4:a.example')).toBe(false);
    expect(resolver.retained.get('4:b.example')).toBe(1);
    resolver.set('b.example', { state: 'resolved', addresses: [parseIp('2.2.2.2')!] });
    expect(rules.current.evaluate(tcp('2.2.2.2', 1), out()).action).toBe('accept');
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out()).action).toBe('drop');
  });

  it('blocks the client on a tree that fails to parse', () => {
    const logs: string[] = [];
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS, log: (l) => logs.push(l) });
    rules.update({ policy: 'drop', '0000': 'action=accept' });
    expect(rules.current.failClosedReason).toBeUndefined();
    rules.update({ '0000': 'action=accept' });
    expect(rules.current.failClosedReason).toMatch(/no 'policy'/);
    expect(logs).toEqual([
      'New firewall rules for 10.137.0.9: 1 rules, policy drop',
      expect.stringMatching(/Failed to parse rules for 10.137.0.9 \(no 'policy' defined\), blocking/),
    ]);
  });

  it('ends every commit in one log line, even a second commit that blocks for the same reason', () => {
    const logs: string[] = [];
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS, log: (l) => logs.push(l) });
    rules.update({ '0000': 'action=accept' });
    rules.update({ '0000': 'action=drop' });
    expect(logs).toEqual([
      expect.stringMatching(/Failed to parse rules for 10.137.0.9 \(no 'policy' defined\), blocking/),
      expect.stringMatching(/Failed to parse rules for 10.137.0.9 \(no 'policy' defined\), blocking/),
    ]);
  });

  it('drops a client whose rules were never read', () => {
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS });
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out())).toEqual({ action: 'drop', rule: -1 });
  });

  it('rebuilds when an expire passes', () => {
    let now = 100;
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS, wallClockSeconds: () => now });
    rules.update({ policy: 'drop', '0000': 'action=accept dst4=0.0.0.0/0 expire=160' });
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out()).action).toBe('accept');
    now = 159;
    rules.tick();
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out()).action).toBe('accept');
    now = 160;
    rules.tick();
    expect(rules.current.evaluate(tcp('1.1.1.1', 1), out())).toEqual({ action: 'drop', rule: -1 });
  });

  it('fails closed for dsthost rules when no resolver is given', () => {
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=a.example' });
    expect(rules.current.failClosedReason).toMatch(/no resolver/);
  });

  it('exports the resolved addresses as Linux does under /dns/<source>/<host>', () => {
    const resolver = new FakeResolver();
    resolver.set('www.example', { state: 'resolved', addresses: [parseIp('1.1.1.1')!, parseIp('1.0.0.1')!] });
    const rules = new SourceRules({ source: '10.137.0.9', dnsServers: DNS, resolver });
    rules.update({ policy: 'drop', '0000': 'action=accept dsthost=www.example' });
    const long = `${'x'.repeat(60)}.example`;
    const hosts = new Map([...rules.resolvedHosts, [long, [parseIp('2001:db8::1')!]]]);
    expect(dnsInfoEntries('10.137.0.9', hosts)).toEqual({
      entries: [['/dns/10.137.0.9/www.example', "{'1.1.1.1/32', '1.0.0.1/32'}"]],
      tooLong: [long],
    });
  });
});
