/**
 * Why a frame was dropped. Numeric codes index the counter arrays; names appear in
 * stats and logs. `silent` reasons are never answered with ICMP.
 */
export const DROP_REASONS = [
  'malformed', // 0: failed a wire check (truncated, bad lengths, bad options)
  'bad-checksum',
  'unsupported-ethertype',
  'unknown-link',
  'spoofed-source', // a client sent a source address that is not its own
  'spoofed-from-uplink', // the uplink sent a client's or our own address as source
  'not-for-us', // wrong destination MAC or an address we do not route
  'client-to-client', // new connection to another client (Linux `oifgroup 2 drop`)
  'untracked-inbound', // from the uplink without a tracked connection
  'rule', // the client's rules (or the policy) said drop
  'fail-closed', // the client has no rule set or one that failed to load
  'to-firewall', // addressed to the firewall and not a ping
  'ttl-exceeded',
  'too-big',
  'fragment-untracked', // a later fragment whose first fragment was not seen (or expired)
  'fragment-table-full',
  'conntrack-full', // table full and only live established flows to evict
  'nat-ports-exhausted',
  'tcp-invalid', // a TCP packet conntrack calls invalid (e.g. RST or SYN+ACK opening a flow)
  'ipv6-disabled',
  'dns-no-upstream', // a query to the virtual DNS servers with no upstream server to send it to
  'arp-ignored', // ARP replies, gratuitous ARP and requests we do not answer
  'nd-ignored', // router advertisements, redirects and unsupported ND
  'icmp-unmatched', // an ICMP error whose embedded packet matches no flow
  'no-uplink', // no uplink address configured yet
] as const;

export type DropReasonName = (typeof DROP_REASONS)[number];

export const R_MALFORMED = 0;
export const R_BAD_CHECKSUM = 1;
export const R_UNSUPPORTED_ETHERTYPE = 2;
export const R_UNKNOWN_LINK = 3;
export const R_SPOOFED = 4;
export const R_SPOOFED_UPLINK = 5;
export const R_NOT_FOR_US = 6;
export const R_CLIENT_TO_CLIENT = 7;
export const R_UNTRACKED_INBOUND = 8;
export const R_RULE = 9;
export const R_FAIL_CLOSED = 10;
export const R_TO_FIREWALL = 11;
export const R_TTL = 12;
export const R_TOO_BIG = 13;
export const R_FRAG_UNTRACKED = 14;
export const R_FRAG_FULL = 15;
export const R_CONNTRACK_FULL = 16;
export const R_NAT_EXHAUSTED = 17;
export const R_TCP_INVALID = 18;
export const R_IPV6_DISABLED = 19;
export const R_DNS_NO_UPSTREAM = 20;
export const R_ARP_IGNORED = 21;
export const R_ND_IGNORED = 22;
export const R_ICMP_UNMATCHED = 23;
export const R_NO_UPLINK = 24;

export const DROP_REASON_COUNT = DROP_REASONS.length;
