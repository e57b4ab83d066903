import { describe, expect, it } from 'vitest';
import { ClientRules, type RulesClock } from './client-rules.ts';
import { a, reply } from './dns/test-server.ts';
import { type DnsRecord, decodeMessage, TYPE_A } from './dns/wire.ts';
import { UPLINK } from './engine/config.ts';
import { V_DROPPED, V_FORWARDED } from './engine/engine.ts';
import { frame4, frame6 } from './engine/frames.ts';
import {
  C1,
  C1_6,
  C1_MAC,
  type CaptureSink,
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
    rules.update('10.137.0.20', [
      ['/qubes-firewall/10.137.0.20/policy', 'drop'],
      ['/qubes-firewall/10.137.0.20/0000', 'action=accept proto=tcp dstports=80-80'],
    ]);
    const c1 = engine.addClient({ mac: C1_MAC, ip4: C1, ip6: C1_6 });
    const ok = tcp4(REMOTE, 80);
    expect(engine.receive(c1, ok, 0, ok.length, meta0())).toBe(V_FORWARDED);
    const no = tcp4(REMOTE, 81);
    expect(engine.receive(c1, no, 0, no.length, meta0())).toBe(V_DROPPED);
    // no IPv6 tree: IPv6 drops (Linux: no chain for the source, forward policy drop)
    const six = tcp6(REMOTE6, 80);
    expect(engine.receive(c1, six, 0, six.length, meta0())).toBe(V_DROPPED);
    rules.update('fd09:24ef:4179::a89:14', { policy: 'accept' });
    expect(engine.receive(c1, six, 0, six.length, meta0())).toBe(V_FORWARDED);
    rules.close();
  });

  it('resolves dsthost names through the engine uplink and follows the answer', () => {
    const { engine, sink, rules, tick } = setup();
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
    rules.close();
  });
});
