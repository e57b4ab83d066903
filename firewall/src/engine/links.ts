/**
 * The engine's links: the uplink (link 0, netfront to the netvm) and one per client vif.
 * Each has its counters and fragment state, our MAC and addresses on it (what frames the
 * firewall originates there carry) and the peer those frames go to.
 */
import type { RuleSet } from '../rules/types.ts';
import { parseIpv4Text, parseIpv6Text } from '../wire/address.ts';
import { read32 } from '../wire/checksum.ts';
import { QUBES_GATEWAY_MAC, UPLINK, type UplinkConfig } from './config.ts';
import { FragmentHold, FragmentTable, HELD_FRAGMENT_BYTES, HELD_FRAGMENTS } from './fragment-table.ts';
import { DROP_REASON_COUNT } from './reasons.ts';

export const C_RX_PACKETS = 0;
export const C_RX_BYTES = 1;
export const C_TX_PACKETS = 2;
export const C_TX_BYTES = 3;
export const C_ACCEPTED = 4;
export const C_DROPPED = 5;
export const C_DROP_BASE = 6;
export const COUNTER_SLOTS = C_DROP_BASE + DROP_REASON_COUNT;

export abstract class Link {
  readonly counters = new Float64Array(COUNTER_SLOTS);
  readonly fragments: FragmentTable;
  readonly held: FragmentHold;
  /** Our MAC on this link. */
  ownMac: Uint8Array;
  /** Where frames the firewall originates on this link go (the client, or the netvm). */
  peerMac: Uint8Array;
  /** Our address as the source of ICMPv4 errors sent on this link. */
  own4: Uint8Array;
  /** Our address as the source of ICMPv6 errors sent on this link (undefined: no IPv6). */
  own6: Uint8Array | undefined;

  constructor(
    readonly link: number,
    readonly name: string,
    fragmentTrains: number,
    heldFragments: number,
    addresses: { ownMac: Uint8Array; peerMac: Uint8Array; own4: Uint8Array; own6: Uint8Array | undefined },
  ) {
    this.fragments = new FragmentTable(fragmentTrains);
    this.held = new FragmentHold(heldFragments, HELD_FRAGMENT_BYTES);
    this.ownMac = addresses.ownMac;
    this.peerMac = addresses.peerMac;
    this.own4 = addresses.own4;
    this.own6 = addresses.own6;
  }
}

/** The uplink: our netfront, its addresses from QubesDB, the netvm's MAC (learned by ARP/ND). */
export class Uplink extends Link {
  /** Our uplink IPv4 as a uint32 (the source of all NATed IPv4 traffic). */
  ip4 = 0;
  gateway4 = new Uint8Array(4);
  gateway6: Uint8Array | undefined;
  mtu = 1500;

  constructor(config: UplinkConfig, fragmentTrains: number) {
    const mac = config.mac.slice(0, 6);
    super(UPLINK, 'uplink', fragmentTrains, HELD_FRAGMENTS * 4, {
      ownMac: mac,
      peerMac: mac,
      own4: config.ip4.slice(0, 4),
      own6: undefined,
    });
    this.configure(config);
  }

  /** Takes a (new) uplink configuration: the netvm changed or restarted. */
  configure(up: UplinkConfig): void {
    this.ownMac = up.mac.slice(0, 6);
    this.peerMac = (up.gatewayMac ?? QUBES_GATEWAY_MAC).slice(0, 6);
    this.own4 = up.ip4.slice(0, 4);
    this.ip4 = read32(up.ip4, 0);
    this.gateway4 = up.gateway4.slice(0, 4);
    this.own6 = up.ip6?.slice(0, 16);
    this.gateway6 = up.gateway6?.slice(0, 16);
    this.mtu = Math.max(68, Math.min(up.mtu ?? 1500, 65535));
  }

  /** Our uplink IPv6 address (`/qubes-ip6`), or undefined when IPv6 is off. */
  get ip6(): Uint8Array | undefined {
    return this.own6;
  }
}

/** One client vif: its addresses, rules and rule counters. */
export class ClientLink extends Link {
  /** The address the client uses on its link (visible IP), as a uint32. */
  readonly ip4: number;
  readonly realIp4: Uint8Array;
  readonly ip4Bytes: Uint8Array;
  /** The gateway address the client uses (visible gateway or the firewall's), as a uint32. */
  readonly gateway4: number;
  readonly ip6: Uint8Array | undefined;
  ruleSet: RuleSet | undefined = undefined;
  /** packets, bytes per rule in evaluation order, then the policy. */
  ruleCounters = new Float64Array(2);
  ruleIndex = new Map<number, number>();

  constructor(
    link: number,
    name: string,
    config: {
      mac: Uint8Array;
      realIp4: Uint8Array;
      visibleIp4: Uint8Array;
      gateway4: Uint8Array;
      ip6: Uint8Array | undefined;
      /** Ours: the MAC, and the IPv6 address ICMPv6 errors come from. */
      gatewayMac: Uint8Array;
      gateway6: Uint8Array;
    },
    fragmentTrains: number,
  ) {
    super(link, name, fragmentTrains, HELD_FRAGMENTS, {
      ownMac: config.gatewayMac,
      peerMac: config.mac.slice(0, 6),
      own4: config.gateway4.slice(0, 4),
      own6: config.gateway6,
    });
    this.realIp4 = config.realIp4.slice(0, 4);
    this.ip4Bytes = config.visibleIp4.slice(0, 4);
    this.ip4 = read32(config.visibleIp4, 0);
    this.gateway4 = read32(config.gateway4, 0);
    this.ip6 = config.ip6?.slice(0, 16);
  }

  /** The client's MAC. */
  get mac(): Uint8Array {
    return this.peerMac;
  }

  setRuleSet(ruleSet: RuleSet | undefined): void {
    this.ruleSet = ruleSet;
    const numbers = ruleSet?.ruleNumbers ?? [];
    this.ruleIndex = new Map(numbers.map((n, i) => [n, i]));
    this.ruleCounters = new Float64Array((numbers.length + 1) * 2);
  }

  /** The counter slot for a decision's rule number (-1 = policy). */
  ruleSlot(rule: number): number {
    return rule < 0 ? this.ruleIndex.size : (this.ruleIndex.get(rule) ?? this.ruleIndex.size);
  }

  /** Counts a packet of `bytes` against the rule in counter slot `slot`. */
  countRule(slot: number, bytes: number): void {
    this.ruleCounters[slot * 2]! += 1;
    this.ruleCounters[slot * 2 + 1]! += bytes;
  }
}

/**
 * The addresses in a vif's XenStore backend `ip` key: space-separated, the first IPv4 and
 * the first IPv6 are the client's (as vif-route-qubes reads them). Unparseable tokens are
 * skipped; a key without an IPv4 address gives none.
 */
export function parseVifAddresses(text: string): {
  ip4: Uint8Array | undefined;
  ip6: Uint8Array | undefined;
} {
  let ip4: Uint8Array | undefined;
  let ip6: Uint8Array | undefined;
  for (const token of text.slice(0, 1024).split(/\s+/)) {
    if (!token) continue;
    if (!ip4 && token.includes('.') && !token.includes(':')) ip4 = parseIpv4Text(token);
    else if (!ip6 && token.includes(':')) ip6 = parseIpv6Text(token);
  }
  return { ip4, ip6 };
}
