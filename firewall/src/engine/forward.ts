/**
 * Forwarding through the connection table: a client's packets out of the uplink (a first
 * packet through the rules and NAT, the rest along their flow), replies back to the client
 * that owns the flow, later fragments after their first.
 */
import { RULE_NO_TREE } from '../rules/types.ts';
import { read32, write32 } from '../wire/checksum.ts';
import { ETH_HEADER_LEN } from '../wire/ethernet.ts';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4.ts';
import type { FrameMeta } from './config.ts';
import { TIMEOUTS_MS } from './config.ts';
import { flowTimeout, K_PORTS, K_SRC, KEY_WORDS, tcpFirstState, tcpOpensFlow } from './conntrack.ts';
import { fitsUplinkMtu, toClient, toUplink } from './egress.ts';
import { fragmentKey, rememberFragments } from './fragments.ts';
import { rejectByRule, timeExceeded } from './icmp-error.ts';
import { type Iface, V_DROPPED, V_LOCAL, type Verdict } from './iface.ts';
import type { ClientLink, Link } from './links.ts';
import { dnsRedirect, pickNatPort, rewrite, startReplyTuple } from './nat.ts';
import { FRAG_FIRST, FRAG_LATER, ICMP_QUERY, type Packet } from './packet.ts';
import {
  R_BAD_CHECKSUM,
  R_CLIENT_TO_CLIENT,
  R_CONNTRACK_FULL,
  R_DNS_NO_UPSTREAM,
  R_FAIL_CLOSED,
  R_FRAG_UNTRACKED,
  R_ICMP_UNMATCHED,
  R_NAT_EXHAUSTED,
  R_RULE,
  R_TCP_INVALID,
  R_TTL,
  R_UNTRACKED_INBOUND,
} from './reasons.ts';
import { forwardRelatedIcmp } from './related.ts';
import { deliverToResolver } from './resolver-traffic.ts';

/**
 * A packet from client c (checked, to be routed) toward the uplink. One function with its
 * untracked case, as forwardFromUplink is: too big for V8 to inline into fromClient, it is
 * compiled on its own with the same callees inlined in every run (see fromClient).
 */
export function forwardFromClient(iface: Iface, p: Packet, c: ClientLink, meta: FrameMeta): Verdict {
  const ct = iface.conntrack;
  if (p.frag === FRAG_LATER) return laterFragment(iface, p, c, meta, 0);
  let e = ct.lookup(0, p.key, 0);
  if (e < 0) {
    // tracked flows never point at a client address (updateInternal cuts them when an
    // address becomes a client's), so an error toward one relates to nothing
    const toClient =
      p.family === 4 ? iface.internal4.has(read32(p.buf, p.dst) | 0) : iface.isClient6(p.buf, p.dst);
    if (p.isIcmpError)
      return toClient ? iface.drop(p, c, R_CLIENT_TO_CLIENT) : forwardRelatedIcmp(iface, p, c, meta, 0);
    e = newFlow(iface, p, c, toClient);
    if (e < 0) return V_DROPPED;
  } else if (p.proto === IPPROTO_TCP) {
    if (!ct.trackTcp(e, 0, p.tcpFlags, iface.now)) return iface.drop(p, c, R_TCP_INVALID);
  } else {
    ct.touch(e, iface.now, ct.timeoutOf(e));
  }
  if (p.frag === FRAG_FIRST) rememberFragments(iface, p, c, e);
  if (!fitsUplinkMtu(iface, p, c, meta)) return V_DROPPED;
  c.countRule(ct.rule[e]!, p.ipLen);
  rewrite(iface, p, e, 1, meta.csumBlank);
  p.decrementHopLimit();
  return toUplink(iface, p, c, meta);
}

/** A packet from the uplink to our address (checked): a reply along its flow, or not ours. */
export function forwardFromUplink(iface: Iface, p: Packet, meta: FrameMeta): Verdict {
  const up = iface.uplink;
  if (p.frag === FRAG_LATER) {
    if (p.hopLimit <= 1) return iface.drop(p, up, R_TTL);
    return laterFragment(iface, p, up, meta, 1);
  }
  if (!p.checksumOk(meta)) return iface.drop(p, up, R_BAD_CHECKSUM);
  const ct = iface.conntrack;
  const e = ct.lookup(1, p.key, 0);
  if (e < 0) {
    if (p.isIcmpError) return forwardRelatedIcmp(iface, p, up, meta, 1);
    if (iface.resolver && deliverToResolver(iface, p)) return V_LOCAL;
    return iface.drop(p, up, R_UNTRACKED_INBOUND);
  }
  const c = iface.clients[ct.link[e]!];
  if (!c) return iface.drop(p, up, R_UNTRACKED_INBOUND);
  if (p.hopLimit <= 1) return timeExceeded(iface, p, up);
  if (p.proto === IPPROTO_TCP) {
    if (!ct.trackTcp(e, 1, p.tcpFlags, iface.now)) return iface.drop(p, up, R_TCP_INVALID);
  } else {
    ct.markReplied(e, iface.now);
  }
  if (p.frag === FRAG_FIRST) rememberFragments(iface, p, up, e);
  c.countRule(ct.rule[e]!, p.ipLen);
  rewrite(iface, p, e, 0, meta.csumBlank);
  p.decrementHopLimit();
  return toClient(iface, p, c, meta);
}

/**
 * A first packet: rules, then a conntrack entry with a NAT mapping. Returns -1 when dropped.
 *
 * The order is Linux's: qubesagent/firewall.py's `qubes-firewall` forward chain (`ct state
 * established,related accept`, then the client's chain, whose drops are `reject`s) runs
 * before qubes-ipv4.nft's `qubes` forward chain (`ct state invalid drop`, then `oifgroup 2
 * drop`), so a packet the rules deny is rejected even when it is invalid to conntrack or
 * goes to another client, and one they accept is then dropped silently for those reasons.
 */
function newFlow(iface: Iface, p: Packet, c: ClientLink, toClient: boolean): number {
  const proto = p.proto;
  // DNAT of the virtual DNS servers (Linux dnat-dns chain, prerouting, before the rules)
  const redirect = dnsRedirect(iface, p);
  if (redirect === null) {
    iface.drop(p, c, R_DNS_NO_UPSTREAM);
    return -1;
  }
  startReplyTuple(iface, p, redirect);
  // rules see the destination after DNAT (the reply tuple's source), as Linux's forward chain does
  const k = p.key;
  const q = iface.query;
  q.family = p.family;
  q.proto = proto;
  for (let i = 0; i < 4; i++) write32(q.dst, i * 4, k[KEY_WORDS + K_SRC + i]!);
  q.dstPort = proto === IPPROTO_TCP || proto === IPPROTO_UDP ? p.dport : -1;
  q.icmpType = p.icmpType;
  q.icmpCode = p.icmpCode;
  const rs = c.ruleSet;
  if (!rs) {
    // no rules at all: Linux has no chain for the source, and the forward policy drops
    iface.drop(p, c, R_FAIL_CLOSED);
    return -1;
  }
  if (rs.failClosedReason !== undefined) {
    // firewall.py's drop-all tree is one `reject` rule
    rejectByRule(iface, p, c, R_FAIL_CLOSED);
    return -1;
  }
  const d = rs.evaluate(q, iface.decision);
  if (d.action !== 'accept') {
    if (d.rule === RULE_NO_TREE) {
      iface.drop(p, c, R_FAIL_CLOSED);
      return -1;
    }
    if (iface.decisionLog) iface.logDecision(p, c, 'drop', d.rule);
    c.countRule(c.ruleSlot(d.rule), p.ipLen);
    rejectByRule(iface, p, c, R_RULE);
    return -1;
  }
  if (iface.decisionLog) iface.logDecision(p, c, 'accept', d.rule);
  const slot = c.ruleSlot(d.rule);
  if (proto === IPPROTO_TCP && !tcpOpensFlow(p.tcpFlags)) {
    iface.drop(p, c, R_TCP_INVALID);
    return -1;
  }
  // only a query opens an ICMP flow: a reply, an unknown type or an error about no flow is
  // invalid to conntrack (nf_conntrack_proto_icmp.c icmp_new), and Linux drops it
  if (proto === p.icmpProto && p.icmpKind !== ICMP_QUERY) {
    iface.drop(p, c, R_ICMP_UNMATCHED);
    return -1;
  }
  // Linux `oifgroup 2 drop`: nothing new toward any client address
  if (toClient) {
    iface.drop(p, c, R_CLIENT_TO_CLIENT);
    return -1;
  }
  if (!pickNatPort(iface, p)) {
    iface.drop(p, c, R_NAT_EXHAUSTED);
    return -1;
  }
  const ct = iface.conntrack;
  // one client may hold only its share of the table: a flood costs that client's own flows
  if (ct.countOf(c.link) >= iface.perClientMax && !ct.evictOwn(c.link, iface.now)) {
    iface.drop(p, c, R_CONNTRACK_FULL);
    return -1;
  }
  const e = ct.allocate(iface.now);
  if (e < 0) {
    iface.drop(p, c, R_CONNTRACK_FULL);
    return -1;
  }
  // word by word: TypedArray#set costs a runtime call, several times these 20 stores
  const keys = ct.keys;
  const ko = ct.keyOffset(e, 0);
  for (let i = 0; i < KEY_WORDS * 2; i++) keys[ko + i] = k[i]!;
  const state = proto === IPPROTO_TCP ? tcpFirstState(p.tcpFlags) : 0;
  ct.insert(e, c.link, state, slot, iface.now, flowTimeout(proto, state, 0));
  return e;
}

/** A later fragment follows its first fragment's flow (first-fragment tracking). */
function laterFragment(iface: Iface, p: Packet, link: Link, meta: FrameMeta, dir: 0 | 1): Verdict {
  const key = fragmentKey(iface, p);
  const i = link.fragments.find(key, iface.now);
  const ct = iface.conntrack;
  if (i < 0) {
    // its first fragment has not come yet: hold a copy (bounded) until it does
    const len = ETH_HEADER_LEN + p.ipLen;
    if (link.held.hold(key, p.buf, p.eth, len, meta, iface.now, TIMEOUTS_MS.fragment)) return V_LOCAL;
    return iface.drop(p, link, R_FRAG_UNTRACKED);
  }
  const e = link.fragments.entry[i]!;
  if (e < 0 || ct.used[e] === 0 || ct.generation[e] !== link.fragments.generation[i])
    return iface.drop(p, link, R_FRAG_UNTRACKED);
  const c = iface.clients[ct.link[e]!];
  if (!c) return iface.drop(p, link, R_FRAG_UNTRACKED);
  if (dir === 0) {
    if (!fitsUplinkMtu(iface, p, link, meta)) return V_DROPPED;
    rewrite(iface, p, e, 1, meta.csumBlank);
    p.decrementHopLimit();
    return toUplink(iface, p, c, meta);
  }
  rewrite(iface, p, e, 0, meta.csumBlank);
  p.decrementHopLimit();
  return toClient(iface, p, c, meta);
}

/**
 * Re-evaluates flow e against client c's current rules: its counter slot, or -1 when the
 * rules now block it. An ICMP flow is a query, its type kept in the key.
 */
export function evaluateFlow(iface: Iface, c: ClientLink, e: number): number {
  const rs = c.ruleSet;
  if (!rs || rs.failClosedReason !== undefined) return -1;
  const ct = iface.conntrack;
  const q = iface.query;
  const fam = ct.family(e);
  const proto = ct.proto(e);
  q.family = fam;
  q.proto = proto;
  // the destination after DNAT is the reply tuple's source
  ct.address(e, 1, K_SRC, q.dst);
  const isIcmp = proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6;
  // the original tuple's destination port, or an ICMP query's type
  const dport = ct.keys[ct.keyOffset(e, 0) + K_PORTS]! & 0xffff;
  q.dstPort = proto === IPPROTO_TCP || proto === IPPROTO_UDP ? dport : -1;
  q.icmpType = isIcmp ? dport : -1;
  q.icmpCode = isIcmp ? 0 : -1;
  const d = rs.evaluate(q, iface.decision);
  return d.action === 'accept' ? c.ruleSlot(d.rule) : -1;
}
