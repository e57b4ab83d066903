/**
 * The firewall's own DNS: the wire codec (wire.ts), the stub resolver that
 * resolves dsthost names through the upstream servers from QubesDB
 * (resolver.ts, a DnsTransportEndpoint and a rules HostResolver), and its tiny
 * TCP client for truncated answers (tcp.ts). Sans-IO throughout.
 */
export {
  cryptoRandom,
  type DnsServer,
  dnsServersFromQubesDb,
  type RandomSource,
  type ResolverStats,
  StubResolver,
  type StubResolverOptions,
} from './resolver.ts';
export {
  DnsTcpConnection,
  type DnsTcpOptions,
  type DnsTcpResult,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
} from './tcp.ts';
export type {
  DnsDatagramOut,
  DnsPacketIn,
  DnsPacketOut,
  DnsSegmentOut,
  DnsTransportEndpoint,
} from './types.ts';
export {
  CLASS_IN,
  canonicalName,
  type DecodeResult,
  DNS_PORT,
  DnsEncodeError,
  type DnsHeader,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
  type DnsRecordData,
  decodeMessage,
  emptyHeader,
  encodeMessage,
  encodeQuery,
  HEADER_SIZE,
  labelToText,
  MAX_LABEL_LENGTH,
  MAX_MESSAGE,
  MAX_NAME_WIRE_LENGTH,
  MAX_POINTER_JUMPS,
  MAX_UDP_MESSAGE,
  namesEqual,
  nameToLabels,
  OPCODE_QUERY,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  TYPE_NS,
  TYPE_OPT,
  TYPE_SOA,
} from './wire.ts';
