import { describe, expect, it } from 'vitest';
import { ClientRules, type RulesClock } from './client-rules.ts';
import { a, aaaa, reply } from './dns/test-server.ts';
import { type DnsRecord, decodeMessage, TYPE_A, TYPE_AAAA } from './dns/wire.ts';
import { UPLINK } from './engine/config.ts';
import { V_DROPPED, V_FORWARDED, V_REJECTED } from './engine/engine.ts';
import { frame4, frame6 } from './engine/frames.ts';
import {
  C1,
  C1_6,
  C1_MAC,
  type CaptureSink,
  ip,
  makeEngine,
  meta0,
  NETVM_MAC,
  REMOTE,
  REMOTE6,
  UP_MAC,
  UP4,
  UPSTREAM_DNS,
} from './engine/test-helpers.ts';
import { read16 } from './wire/checksum.ts';

/** A clock the test moves by hand; timers run as it passes them. */
class ManualClock implements RulesClock {
  ms = 1000;
  wall = 1_700_000_000;
  private timers: { at: number; fn: () => void }[] = [];
  nowMs(): number {
    return this.ms;
  }
  wallSeconds(): number {
    return this.wall;
  }
  setTimer(ms: number, fn: () => void): () => void {
    const t = { at: this.ms + ms, fn };
    this.timers.push(t);
    return () => {
      this.timers = this.timers.filter((x) => x !== t);
    };
  }
  advance(ms: number): void {
    const end = this.ms + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((x, y) => x.at - y.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.wall += Math.floor((due.at - this.ms) / 1000);
      this.ms = due.at;
      due.fn();
    }
    this.wall += Math.floor((end - this.ms) / 1000);
    this.ms = end;
  }
}

/** The resolver's queries the engine sent upstream, answered by `zone` (name → records). */
function answerQueries(
  engine: ReturnType<typeof makeEngine>['engine'],
  sink: CaptureSink,
  zone: (name: string, type: number) => DnsRecord[] | 'nxdomain' | 'silent',
): number {
  let n = 0;
  for (const s of sink.take()) {
    const q = s.bytes;
    if (s.link !== UPLINK || read16(q, 12) !== 0x0800 || q[23] !== 17 || read16(q, 36) !== 53) continue;
    const payload = q.slice(42, 14 + read16(q, 16));
    const m = decodeMessage(payload);
    if (!m.ok) continue;
    const question = m.message.questions[0]!;
    const records = zone(question.name, question.type);
    if (records === 'silent') continue;
    const answer = records === 'nxdomain' ? reply(payload, [], { rcode: 3 }) : reply(payload, records);
    const f = frame4({
      src: UPSTREAM_DNS,
      dst: UP4,
      proto: 17,
      sport: 53,
      dport: read16(q, 34),
      payload: answer,
      srcMac: NETVM_MAC,
      dstMac: UP_MAC,
    });
    engine.receive(UPLINK, f, 0, f.length, meta0());
    n++;
  }
  return n;
}

/** The upstream answers nothing: the resolver's two rounds over one server (2 s each) time out. */
function silentDns(
  engine: ReturnType<typeof makeEngine>['engine'],
  sink: CaptureSink,
  tick: (ms: number) => void,
): void {
  for (let i = 0; i < 4; i++) {
    answerQueries(engine, sink, () => 'silent');
    tick(2000);
  }
}

function setup() {
  const { engine, sink } = makeEngine();
  const clock = new ManualClock();
  const logs: string[] = [];
  const rules = new ClientRules({ engine, clock, log: (l) => logs.push(l) });
  engine.tick(clock.ms);
  const tick = (ms: number) => {
    clock.advance(ms);
    engine.tick(clock.ms);
  };
  return { engine, sink, clock, rules, logs, tick };
}

const tcp4 = (dst: Uint8Array, dport = 80, sport = 40000) =>
  frame4({ src: C1, dst, proto: 6, sport, dport, tcpFlags: 0x02 });
const tcp6 = (dst: Uint8Array, dport = 80, sport = 40000) =>
  frame6({ src: C1_6, dst, proto: 6, sport, dport, tcpFlags: 0x02 });

describe('ClientRules: QubesDB rule entries to a live rule set', () => {
  it('applies a tree given before its vif exists, from full QubesDB paths or relative keys', () => {
    const { engine, rules } = setup();
    // a VM replica's multiread: a Map of full paths, the commit marker included
    rules.update(
      '10.137.0.20',
      new Map([
        ['/qubes-firewall/10.137.0.20', ''],
        ['/qubes-firewall/10.137.0.20/policy', 'drop'],
        ['/qubes-firewall/10.137.0.20/0000', 'action=accept proto=tcp dstports=80-80'],
      ]),
    );
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    const ok = tcp4(REMOTE, 80);
    expect(engine.receive(c1, ok, 0, ok.length, meta0())).toBe(V_FORWARDED);
    const no = tcp4(REMOTE, 81);
    expect(engine.receive(c1, no, 0, no.length, meta0())).toBe(V_REJECTED);
    // no IPv6 tree: IPv6 drops silently (Linux: no chain for the source, forward policy drop)
    const six = tcp6(REMOTE6, 80);
    expect(engine.receive(c1, six, 0, six.length, meta0())).toBe(V_DROPPED);
    rules.update('fd09:24ef:4179::a89:14', { policy: 'accept' });
    expect(engine.receive(c1, six, 0, six.length, meta0())).toBe(V_FORWARDED);
    rules.close();
  });

  it('resolves dsthost names through the engine uplink and follows the answer', () => {
    const { engine, sink, rules, logs, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', { policy: 'drop', '0000': 'action=accept dsthost=www.example.com' });
    tick(1);
    expect(rules.status('10.137.0.20')!.failClosedReason).toMatch(/waiting for DNS/);
    expect(answerQueries(engine, sink, (name, type) => (type === TYPE_A ? [a(name, [...REMOTE])] : []))).toBe(
      1,
    );
    const f = tcp4(REMOTE);
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_FORWARDED);
    expect(rules.status('10.137.0.20')).toMatchObject({ link: c1, failClosedReason: undefined });
    // the new rules are announced once they are in force, not while their name was asked
    expect(logs).toEqual([
      'waiting for DNS answers for www.example.com (10.137.0.20)',
      'New firewall rules for 10.137.0.20: 1 rules, policy drop',
    ]);
    rules.close();
  });
});

describe('ClientRules follows the engine', () => {
  it('follows new DNS servers (engine.setDns): specialtarget=dns and the resolver use them', () => {
    const { engine, sink, rules, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', { policy: 'drop', '0000': 'action=accept specialtarget=dns' });
    const dns = (sport: number) => frame4({ src: C1, dst: ip('10.139.1.1'), proto: 17, sport, dport: 53 });
    let f = dns(5000);
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_FORWARDED);
    const quad9 = ip('9.9.9.9');
    engine.setDns({ virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [quad9] });
    sink.take();
    f = dns(5001);
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_FORWARDED);
    expect([...sink.take()[0]!.bytes.subarray(30, 34)]).toEqual([9, 9, 9, 9]);
    rules.update('10.137.0.20', { policy: 'drop', '0000': 'action=accept dsthost=www.example' });
    tick(1);
    const asked = sink.take().filter((s) => s.link === UPLINK);
    expect(asked.map((s) => [...s.bytes.subarray(30, 34)])).toEqual([[9, 9, 9, 9]]);
    rules.close();
  });
});

describe('a client whose rules cannot be fully resolved gets drop-all, as firewall.py (class 3)', () => {
  const HOST = ip('198.51.100.7');

  it('blocks on a name that fails, even in a rule that matches nothing (specialtarget=dns, other ports)', () => {
    const { engine, sink, rules, logs, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', {
      policy: 'accept',
      '0000': 'action=accept',
      '0001': 'action=drop proto=udp dsthost=nope.test specialtarget=dns dstports=1000-9000',
    });
    tick(1);
    expect(answerQueries(engine, sink, () => 'nxdomain')).toBe(1);
    const f = tcp4(HOST);
    // Linux: `reject with icmp admin-prohibited` for everything
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_REJECTED);
    expect(rules.status('10.137.0.20')!.failClosedReason).toMatch(/nope.test: NXDOMAIN/);
    expect(logs.join('\n')).toMatch(/Failed to resolve dsthost for 10.137.0.20 .*blocking traffic/);
    rules.close();
  });

  it('asks a failed name again at once when the same tree is committed again (firewall.py resolves at every commit)', () => {
    const { engine, sink, rules, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    const tree = { policy: 'drop', '0000': 'action=accept dsthost=late.test' };
    rules.update('10.137.0.20', tree);
    tick(1);
    expect(answerQueries(engine, sink, () => 'nxdomain')).toBe(1);
    expect(rules.status('10.137.0.20')!.failClosedReason).toMatch(/NXDOMAIN/);
    tick(1000);
    expect(answerQueries(engine, sink, () => 'nxdomain')).toBe(0);
    rules.update('10.137.0.20', tree);
    tick(1);
    expect(answerQueries(engine, sink, (name) => [a(name, [...HOST])])).toBe(1);
    const f = tcp4(HOST);
    expect(engine.receive(c1, f, 0, f.length, meta0())).toBe(V_FORWARDED);
    rules.close();
  });

  it('blocks an IPv6 tree whose name has only an A record, and leaves the IPv4 tree alone', () => {
    const { engine, sink, rules, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    const tree = { policy: 'accept', '0000': 'action=drop proto=tcp dsthost=v4only.test dstports=25-25' };
    rules.update('10.137.0.20', tree);
    rules.update('fd09:24ef:4179::a89:14', tree);
    tick(1);
    const zone = (name: string, type: number) => (type === TYPE_A ? [a(name, [192, 0, 2, 25])] : []);
    expect(answerQueries(engine, sink, zone)).toBe(2);
    const v4 = tcp4(REMOTE);
    expect(engine.receive(c1, v4, 0, v4.length, meta0())).toBe(V_FORWARDED);
    const v6 = tcp6(REMOTE6);
    expect(engine.receive(c1, v6, 0, v6.length, meta0())).toBe(V_REJECTED);
    expect(rules.status('fd09:24ef:4179::a89:14')!.failClosedReason).toMatch(/v4only.test: no IPv6 address/);
    expect(rules.status('10.137.0.20')!.failClosedReason).toBeUndefined();
    rules.close();
  });
});

describe('ClientRules follows DNS', () => {
  const A1 = [203, 0, 113, 1];
  const A2 = [203, 0, 113, 2];
  const V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  const to = (addr: number[]) =>
    addr.length === 4 ? tcp4(Uint8Array.from(addr)) : tcp6(Uint8Array.from(addr));
  const verdict = (engine: ReturnType<typeof makeEngine>['engine'], link: number, addr: number[]) => {
    const f = to(addr);
    return engine.receive(link, f, 0, f.length, meta0());
  };
  const accept = { policy: 'drop', '0000': 'action=accept proto=tcp dsthost=www.example dstports=80-80' };

  it('re-resolves on TTL expiry, per family, and follows the new answers', () => {
    const { engine, sink, rules, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    rules.update('10.137.0.20', accept);
    rules.update('fd09:24ef:4179::a89:14', accept);
    tick(1);
    const asked: number[] = [];
    let v4 = A1;
    const zone = (name: string, type: number) => {
      asked.push(type);
      return type === TYPE_A ? [a(name, v4, 60)] : [aaaa(name, V6, 120)];
    };
    answerQueries(engine, sink, zone);
    expect(asked.sort()).toEqual([TYPE_A, TYPE_AAAA]);
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    expect(verdict(engine, c1, V6)).toBe(V_FORWARDED);
    // the A record's TTL runs out first: only it is asked again
    asked.length = 0;
    v4 = A2;
    tick(60_000);
    answerQueries(engine, sink, zone);
    expect(asked).toEqual([TYPE_A]);
    expect(verdict(engine, c1, A2)).toBe(V_FORWARDED);
    expect(verdict(engine, c1, A1)).toBe(V_REJECTED);
    expect(verdict(engine, c1, V6)).toBe(V_FORWARDED);
    asked.length = 0;
    tick(60_000);
    answerQueries(engine, sink, zone);
    expect(asked.sort()).toEqual([TYPE_A, TYPE_AAAA]);
    rules.close();
  });

  it('keeps the last answers through a failed refresh, retries with backoff and logs it', () => {
    const { engine, sink, rules, logs, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    // a drop rule: losing its addresses on a failed refresh would widen what passes
    rules.update('10.137.0.20', { policy: 'accept', '0000': 'action=drop dsthost=www.example' });
    tick(1);
    answerQueries(engine, sink, (name) => [a(name, A1, 30)]);
    expect(verdict(engine, c1, A1)).toBe(V_REJECTED);
    tick(30_000);
    silentDns(engine, sink, tick);
    expect(logs.at(-1)).toMatch(
      /refresh of www.example \(IPv4\) failed .*keeping the previous addresses, retrying in 30 s/,
    );
    expect(verdict(engine, c1, A1)).toBe(V_REJECTED);
    expect(rules.status('10.137.0.20')!.failClosedReason).toBeUndefined();
    tick(30_000);
    silentDns(engine, sink, tick);
    expect(logs.at(-1)).toMatch(/retrying in 60 s/);
    expect(verdict(engine, c1, A1)).toBe(V_REJECTED);
    // the answer comes back (after the 60 s wait)
    tick(30_000);
    expect(answerQueries(engine, sink, (name) => [a(name, A2, 30)])).toBe(0);
    tick(30_000);
    expect(answerQueries(engine, sink, (name) => [a(name, A2, 30)])).toBe(1);
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    expect(verdict(engine, c1, A2)).toBe(V_REJECTED);
    rules.close();
  });

  it('blocks the client when a name has not resolved since the last rules commit', () => {
    const { engine, sink, rules, logs, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', accept);
    tick(1);
    answerQueries(engine, sink, (name) => [a(name, A1, 30)]);
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    // the answer goes stale (its refresh fails): the rules keep it...
    tick(30_000);
    silentDns(engine, sink, tick);
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    // ...but a new commit asks again at once, keeps the previous set while it does...
    rules.update('10.137.0.20', { ...accept, '0001': 'action=accept proto=udp' });
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    // ...and blocks the client when that lookup fails too, stale addresses or not
    silentDns(engine, sink, tick);
    expect(verdict(engine, c1, A1)).toBe(V_REJECTED);
    expect(rules.status('10.137.0.20')!.failClosedReason).toMatch(
      /www.example: no answer since the rules changed/,
    );
    expect(logs.at(-1)).toMatch(/blocking traffic/);
    // the next answer (after the backoff's second wait, 60 s) restores the rules
    tick(60_000);
    answerQueries(engine, sink, (name) => [a(name, A1, 30)]);
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    rules.close();
  });

  it('uses a fresh cached answer at a commit without asking again, and ignores a commit that changed nothing', () => {
    const { engine, sink, rules, tick } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', accept);
    tick(1);
    answerQueries(engine, sink, (name) => [a(name, A1, 300)]);
    rules.update('10.137.0.20', accept);
    rules.update('10.137.0.20', { ...accept, '0001': 'action=accept proto=udp' });
    tick(1);
    expect(sink.take().filter((s) => s.link === UPLINK)).toEqual([]);
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    rules.close();
  });

  it('drops an `expire` rule when its time passes (a timer on the injected clock)', () => {
    const { engine, clock, rules } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', { policy: 'drop', '0000': `action=accept expire=${clock.wall + 60}` });
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    clock.advance(59_000);
    expect(verdict(engine, c1, A2)).toBe(V_FORWARDED);
    clock.advance(1000);
    // the flows the rule admitted are purged too, as after any rule change
    expect(engine.conntrack.size).toBe(0);
    expect(verdict(engine, c1, A1)).toBe(V_REJECTED);
    rules.close();
  });

  it('forgets a removed tree: that family of the client drops', () => {
    const { engine, rules } = setup();
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1 });
    rules.update('10.137.0.20', { policy: 'accept' });
    expect(verdict(engine, c1, A1)).toBe(V_FORWARDED);
    rules.remove('10.137.0.20');
    expect(engine.conntrack.size).toBe(0);
    expect(verdict(engine, c1, A1)).toBe(V_DROPPED);
    expect(rules.status('10.137.0.20')).toBeUndefined();
    rules.close();
  });
});
