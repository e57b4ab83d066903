/**
 * The contract between the packet engine and the firewall's own DNS stub
 * resolver. The resolver is sans-IO: it hands the engine datagrams and TCP
 * segments as plain objects; the engine turns them into frames on the uplink
 * (from the firewall's uplink address) and hands back what arrives for them.
 */

/** A UDP datagram the resolver wants sent from the firewall's uplink address. */
export interface DnsDatagramOut {
  transport: 'udp';
  /** Server address, 4 or 16 bytes. */
  server: Uint8Array;
  serverPort: number;
  /** Our (random) source port. */
  localPort: number;
  payload: Uint8Array;
}

/** A TCP segment of the resolver's own TCP connection (truncated answers are retried over TCP). */
export interface DnsSegmentOut {
  transport: 'tcp';
  server: Uint8Array;
  serverPort: number;
  localPort: number;
  seq: number;
  ack: number;
  /** TCP flag bits as on the wire (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10). */
  flags: number;
  window: number;
  payload: Uint8Array;
}

export type DnsPacketOut = DnsDatagramOut | DnsSegmentOut;

/**
 * What the engine hands the resolver from the uplink (already parsed and checksum-checked): the
 * same fields as going out, `server`/`serverPort` now the source and `localPort` the destination.
 */
export type DnsPacketIn = DnsDatagramOut | DnsSegmentOut;

export interface DnsTransportEndpoint {
  /** Packets to send now; the engine drains this after every call into the resolver and on each tick. */
  takeOutgoing(): DnsPacketOut[];
  /**
   * A packet from the uplink addressed to the uplink address. Returns true when it belonged
   * to one of the resolver's queries or connections (the engine then drops it from the data
   * path), false when it did not (the engine processes it as usual).
   */
  deliver(packet: DnsPacketIn, nowMs: number): boolean;
  /** Timers: retransmissions, timeouts, TTL refresh. */
  tick(nowMs: number): void;
}
