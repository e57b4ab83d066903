/**
 * What the engine is told: addresses from QubesDB/XenStore, limits, and the I/O edges
 * (a frame sink, a clock reading per tick, a log). Everything is plain data.
 */

import type { IcmpRateConfig } from './ratelimit.ts';

/** Offload metadata a Xen netif frame carries (Xen xen/include/public/io/netif.h, RELEASE-4.17.0). */
export interface FrameMeta {
  /** NETTXF_csum_blank / NETRXF_csum_blank: the TCP/UDP checksum holds only the pseudo-header sum. */
  csumBlank: boolean;
  /** NETTXF_data_validated / NETRXF_data_validated: the checksum was already checked. */
  dataValidated: boolean;
  /** 0 none, 1 XEN_NETIF_GSO_TYPE_TCPV4, 2 XEN_NETIF_GSO_TYPE_TCPV6. */
  gsoType: number;
  /** MSS of a GSO frame (the extra-info `size`), else 0. */
  gsoSize: number;
}

export function plainMeta(): FrameMeta {
  return { csumBlank: false, dataValidated: false, gsoType: 0, gsoSize: 0 };
}

/** Link 0 is the uplink (netfront to sys-net); clients get 1, 2, ... from addClient. */
export const UPLINK = 0;

/**
 * Where frames go. `buf[off, off+len)` is valid only during the call: forwarded frames are
 * the caller's own buffer rewritten in place, generated frames live in an engine buffer
 * that the next call reuses, so a sink that queues must copy.
 */
export interface FrameSink {
  send(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): void;
}

export interface UplinkConfig {
  mac: Uint8Array;
  /** Our uplink IPv4 (`/qubes-ip`), the source of all NATed IPv4 traffic. */
  ip4: Uint8Array;
  /** `/qubes-gateway`: sys-net's address. */
  gateway4: Uint8Array;
  /** `/qubes-ip6` when IPv6 is enabled. */
  ip6?: Uint8Array | undefined;
  gateway6?: Uint8Array | undefined;
  /** sys-net's MAC; Qubes backends use fe:ff:ff:ff:ff:ff (mirage falls back to it too). */
  gatewayMac?: Uint8Array | undefined;
  /** Uplink MTU (XenStore `mtu`, default 1500). */
  mtu?: number;
}

/**
 * Linux `qubes-setup-dnat-to-ns`: DNS (UDP and TCP port 53) to each `virtual` address
 * (`/qubes-netvm-primary-dns`, `/qubes-netvm-secondary-dns`, 10.139.1.1/.2, and IPv6 ones
 * when Qubes provides them) is DNATed to the `upstream` servers of the same family (our own
 * `/qubes-primary-dns`, `/qubes-secondary-dns`), paired cyclically. With no upstream
 * server of a family, DNS to that family's virtual addresses is dropped, as Linux does.
 */
export interface DnsConfig {
  virtual: Uint8Array[];
  upstream: Uint8Array[];
}

export interface EngineConfig {
  uplink: UplinkConfig;
  /** Our address as clients see it (`/qubes-netvm-gateway`); in Qubes 4 equal to uplink.ip4. */
  clientGateway4: Uint8Array;
  /** `/qubes-netvm-gateway6`. */
  clientGateway6?: Uint8Array | undefined;
  /** The MAC we use on client links (Linux vif backends: fe:ff:ff:ff:ff:ff). */
  clientGatewayMac?: Uint8Array | undefined;
  /** DNAT of the Qubes virtual DNS servers (see DnsConfig); absent: no DNAT. */
  dns?: DnsConfig;
  /** Most tracked connections (Linux nf_conntrack_max analogue). Default 16384. */
  conntrackMax?: number;
  /**
   * Most tracked connections one client may hold (default half of conntrackMax), so that a
   * client opening flows without end evicts its own flows rather than everyone's.
   */
  conntrackPerClient?: number;
  /** Answer rule drops with ICMP admin-prohibited (Linux default, true) or drop silently. */
  rejectWithIcmp?: boolean;
  /** Limits of the ICMP errors the firewall sends (default Linux's, ICMP_RATE); tests may lift them. */
  icmpRate?: Partial<IcmpRateConfig>;
  /**
   * UNIX time in ms, for ICMP timestamp replies (ms since midnight UT, as Linux's
   * inet_current_timestamp). Default Date.now.
   */
  wallClockMs?: () => number;
  /** Most fragment trains tracked per link. Default 64. */
  fragmentsPerLink?: number;
  /** Seed for port and id selection (deterministic tests). */
  seed?: number;
  /** Drop log lines per second (token bucket); default 10 with a burst of 20. */
  logPerSecond?: number;
  log?: (entry: DropLogEntry) => void;
}

export interface ClientConfig {
  /** The client's MAC (XenStore backend `mac`). */
  mac: Uint8Array;
  /** Real IPv4 from the backend `ip` key (the /qubes-firewall/<ip> key). */
  ip4: Uint8Array;
  /** IPv6 from the backend `ip` key, when IPv6 is enabled. */
  ip6?: Uint8Array | undefined;
  /** `/mapped-ip/<real-ip>/visible-ip`: the address the client uses on its link. */
  visibleIp4?: Uint8Array | undefined;
  /** `/mapped-ip/<real-ip>/visible-gateway`: the gateway address the client uses. */
  visibleGateway4?: Uint8Array | undefined;
  /** A name for logs and stats (the VM name or `vif<domid>.<n>`). */
  name?: string;
}

export interface DropLogEntry {
  link: number;
  client: string;
  reason: string;
  /** `proto src -> dst` of the dropped packet. */
  packet: string;
  /** Drops not logged since the previous line because of the rate limit. */
  suppressed: number;
}

/** The client's rules deciding a new flow (the debug log's "which rule decided"). */
export interface DecisionLogEntry {
  link: number;
  client: string;
  action: 'accept' | 'drop';
  /** The rule number (the NNNN of `/qubes-firewall/<ip>/NNNN`), or `policy`. */
  rule: number | 'policy';
  /** `proto src -> dst` of the flow's first packet. */
  packet: string;
  /** Decisions not logged since the previous line because of the rate limit. */
  suppressed: number;
}

/**
 * Linux nf_conntrack default timeouts, in ms.
 * TCP: net/netfilter/nf_conntrack_proto_tcp.c `tcp_timeouts[]` (SYN_SENT 2 min, SYN_RECV
 * 60 s, ESTABLISHED 5 days, FIN_WAIT 2 min, CLOSE_WAIT 60 s, LAST_ACK 30 s, TIME_WAIT
 * 2 min, CLOSE 10 s). UDP: nf_conntrack_proto_udp.c `udp_timeouts[]` (UNREPLIED 30 s,
 * REPLIED 120 s = nf_conntrack_udp_timeout / _stream). ICMP and ICMPv6:
 * nf_conntrack_proto_icmp.c / icmpv6.c 30 s. Other protocols: nf_conntrack_proto_generic.c
 * 600 s. The same values are the documented sysctl defaults in
 * Documentation/networking/nf_conntrack-sysctl.rst.
 */
export const TIMEOUTS_MS = {
  tcpSynSent: 120_000,
  tcpSynRecv: 60_000,
  tcpEstablished: 432_000_000,
  tcpFinWait: 120_000,
  tcpCloseWait: 60_000,
  tcpLastAck: 30_000,
  tcpTimeWait: 120_000,
  tcpClose: 10_000,
  udpUnreplied: 30_000,
  udpReplied: 120_000,
  icmp: 30_000,
  generic: 600_000,
  /** net.ipv4.ipfrag_time / net.ipv6.ip6frag_time: 30 s. */
  fragment: 30_000,
} as const;

/**
 * Linux rate limits for ICMP it originates (net/ipv4/icmp.c, net/ipv6/icmp.c,
 * Documentation/networking/ip-sysctl.rst): per destination one message per
 * icmp_ratelimit = 1000 ms with a burst of XRLIM_BURST_FACTOR = 6 (inet_peer_xrlim_allow),
 * for the types in icmp_ratemask 0x1818 (unreachable, source quench, time exceeded,
 * parameter problem) except fragmentation-needed ("Don't limit PMTU discovery");
 * ICMPv6 likewise 1000 ms with ratemask 0-1,3-127 (all errors except packet too big);
 * and globally icmp_msgs_per_sec = 1000 with icmp_msgs_burst = 50.
 */
export const ICMP_RATE = {
  perDestIntervalMs: 1000,
  perDestBurst: 6,
  globalPerSecond: 1000,
  globalBurst: 50,
} as const;

export const QUBES_GATEWAY_MAC: Uint8Array = new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
