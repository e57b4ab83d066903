/**
 * What the host and the Linux guests (guests/linux.guest.ts) share: the guests' arguments,
 * the commands dom0 writes to `data/moat-cmd/<seq>`, the netvm's service ports, and the
 * byte pattern a stream carries.
 */

/**
 * The netvm's services (TCP and UDP echo report the source address they saw first; the sink
 * hashes what it is sent; the source sends the pattern a client asks for).
 */
export const NETVM_PORTS = { tcpEcho: 7, udpEcho: 7, sink: 9, source: 19, iperf3: 5201 } as const;

/** The vif hotplug script the netvm's `xl devd` runs (under /etc/xen/scripts there). */
export const VIF_SCRIPT = 'vif-moat';

/** The vif hotplug script of a bridge domU's `xl devd`: the vif joins its bridge. */
export const BRIDGE_VIF_SCRIPT = 'vif-moat-bridge';

/** How a probe ended: an answer, a refusal (RST / ICMP port unreachable), another ICMP error, or nothing. */
export type ProbeOutcome = 'accepted' | 'refused' | 'icmp' | 'silence';

/** A client's network as Qubes' setup-ip takes it from QubesDB. */
export interface ClientNetwork {
  readonly ip: string;
  readonly gateway?: string;
  readonly primaryDns?: string;
  readonly secondaryDns?: string;
  /** `/qubes-ip6` and `/qubes-gateway6` (Qubes' `ipv6` feature). */
  readonly ip6?: string;
  readonly gateway6?: string;
  /** The interface to configure (netfront names the first vif eth0). */
  readonly device?: string;
}

export interface LinuxGuestArgs extends Partial<ClientNetwork> {
  /**
   * bridge: a Linux domU between clients and a netvm, as a kernel-only baseline for our netif
   * domU: its clients' vifs (xen-netback, `xl devd`) and its own eth0 (xen-netfront, upstream)
   * in one Linux bridge, no address of its own. firewall: the Linux reference firewall
   * (linux-firewall/), netfront up and netback down.
   */
  readonly role: 'netvm' | 'client' | 'bridge' | 'firewall';
  /** netvm: names its DNS server answers (name -> IPv4). */
  readonly dns?: Record<string, string>;
  /** netvm: more addresses it owns (on lo), as upstream hosts (IPv4 or IPv6). */
  readonly extraAddresses?: readonly string[];
  /** netvm: ports of its TCP and UDP echo (default 7). */
  readonly tcpPorts?: readonly number[];
  readonly udpPorts?: readonly number[];
}

export type LinuxCommand =
  | {
      op: 'tcp';
      to: string;
      port: number;
      timeoutMs?: number;
      readReply?: boolean;
      /** Source address to send from (added to the interface for the probe: spoofing). */
      source?: string;
      /** Keep the connection open under this name after its echo (`tcp-again` uses it). */
      hold?: string;
    }
  /** A line over a held connection; accepted when it is echoed back. */
  | { op: 'tcp-again'; hold: string; timeoutMs?: number }
  | { op: 'udp'; to: string; port: number; payload?: string; timeoutMs?: number; source?: string }
  | { op: 'ping'; to: string; count?: number; timeoutMs?: number }
  | { op: 'dns'; name: string; server?: string; timeoutMs?: number }
  | { op: 'stream'; to: string; port?: number; bytes: number; seed: number }
  /** Asks the netvm's source for `bytes` of the pattern and hashes what arrives. */
  | { op: 'pull'; from: string; bytes: number; seed: number }
  /** waitSeconds: how long past `seconds` the run may take before it is killed (default 120). */
  | {
      op: 'iperf3';
      to: string;
      seconds?: number;
      reverse?: boolean;
      waitSeconds?: number;
      /** The server's port (default NETVM_PORTS.iperf3). */
      port?: number;
    }
  /** firewall: read QubesDB, bring the uplink up, load the rules and follow QubesDB. */
  | { op: 'firewall-start' }
  /** firewall: the uplink vif came back (netvm restarted): configure it again. */
  | { op: 'firewall-uplink' }
  /** firewall: wait until a client's rules were handled more than `after` times. */
  | { op: 'firewall-handled'; target: string; after: number; timeoutMs?: number }
  | { op: 'configure'; network: Partial<ClientNetwork> }
  | { op: 'vifs' }
  | { op: 'set-dns'; names: Record<string, string> }
  | { op: 'exec'; argv: string[]; timeoutMs?: number }
  | { op: 'qubesdb'; prefix?: string; timeoutMs?: number }
  | { op: 'poweroff' };

/** What dom0's QubesDB bundle (guests/qubesdb-dom0.guest.ts) serves: one database per VM. */
export interface QubesDbServeArgs {
  /** dom0 xenstore directory the host writes updates to (one per serving process). */
  readonly dir: string;
  readonly vms: readonly {
    readonly domid: number;
    readonly name: string;
    readonly entries: [string, string][];
  }[];
}

/** A run-time change to one VM's QubesDB (`commit`: what qubesd does to publish firewall rules). */
export interface QubesDbUpdate {
  readonly domid: number;
  readonly rm?: readonly string[];
  readonly write?: readonly [string, string][];
  readonly commit?: { readonly base: string; readonly entries: [string, string][] };
}

/** Ends dom0's QubesDB process (its VMs are gone). */
export interface QubesDbStop {
  readonly stop: true;
}

const BLOCK = 64 * 1024;
const blocks = new Map<number, Buffer>();

function block(seed: number): Buffer {
  let b = blocks.get(seed);
  if (!b) {
    b = Buffer.alloc(BLOCK);
    let x = (seed * 2654435761) >>> 0 || 1;
    for (let i = 0; i < BLOCK; i += 4) {
      // xorshift32: cheap and the same on every machine.
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b.writeUInt32LE(x, i);
    }
    blocks.set(seed, b);
  }
  return b;
}

/**
 * `length` bytes of the stream pattern at `offset` (offset a multiple of 64 KiB): the seed's
 * 64 KiB block with the block number in its first 8 bytes, so no two blocks are equal.
 */
export function patternChunk(seed: number, offset: number, length: number): Buffer {
  if (offset % BLOCK !== 0 || length > BLOCK) throw new RangeError('pattern chunks are whole 64 KiB blocks');
  const chunk = Buffer.from(block(seed).subarray(0, length));
  if (length >= 8) chunk.writeBigUInt64LE(BigInt(offset / BLOCK), 0);
  return chunk;
}

/** SHA-256 of the first `bytes` of the pattern (what the sink must report). */
export async function patternStreamSha256(seed: number, bytes: number): Promise<string> {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  for (let at = 0; at < bytes; at += BLOCK) hash.update(patternChunk(seed, at, Math.min(BLOCK, bytes - at)));
  return hash.digest('hex');
}

/**
 * `xenstore-write`'s value argument for `text` stored as is: the tool unescapes its argument
 * (unsanitise_value, xen tools/xenstore/xs_lib.c @ c447b7308b: `\"` becomes `"`, `\n` a
 * newline), so a JSON command holding a quote or a backslash reached the guest broken.
 * Doubling every backslash makes the round trip exact.
 */
export function xenstoreWriteArg(text: string): string {
  return text.replaceAll('\\', '\\\\');
}
