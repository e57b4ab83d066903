/** Token buckets for firewall-originated ICMP (Linux semantics, see ICMP_RATE) and drop logs. */
import { ICMP_RATE } from './config.ts';

export class TokenBucket {
  private tokens: number;
  private last = Number.NEGATIVE_INFINITY;
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }
  allow(now: number): boolean {
    if (this.last !== Number.NEGATIVE_INFINITY) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    }
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Per-destination slots, overwritten on hash collision (Linux inet_peer entries are also bounded). */
const PEER_SLOTS = 256;

/** The limits of IcmpRateLimiter (EngineConfig.icmpRate); Linux's defaults are ICMP_RATE. */
export interface IcmpRateConfig {
  /** Per destination: one message per this many ms (icmp_ratelimit). */
  perDestIntervalMs: number;
  /** Per destination: messages sent back to back before the interval applies. */
  perDestBurst: number;
  /** All destinations: messages per second (icmp_msgs_per_sec) and burst (icmp_msgs_burst). */
  globalPerSecond: number;
  globalBurst: number;
}

export class IcmpRateLimiter {
  private readonly global: TokenBucket;
  /** Per destination: ms of credit one message costs, and the most credit (interval × burst). */
  private readonly interval: number;
  private readonly cap: number;
  private readonly peerKey = new Int32Array(PEER_SLOTS);
  private readonly peerTokens = new Float64Array(PEER_SLOTS);
  private readonly peerLast = new Float64Array(PEER_SLOTS);
  private readonly peerUsed = new Uint8Array(PEER_SLOTS);
  limited = 0;

  constructor(config: Partial<IcmpRateConfig> = {}) {
    const rate = { ...ICMP_RATE, ...config };
    this.global = new TokenBucket(rate.globalPerSecond, rate.globalBurst);
    this.interval = rate.perDestIntervalMs;
    this.cap = rate.perDestIntervalMs * rate.perDestBurst;
  }

  /**
   * Whether an ICMP message to the destination hashed as `dest` may be sent now.
   * `rateLimited` false (echo replies, fragmentation needed, packet too big) skips both
   * buckets, as Linux's ratemask does.
   */
  allow(now: number, dest: number, rateLimited: boolean): boolean {
    if (!rateLimited) return true;
    const slot = (dest >>> 0) % PEER_SLOTS;
    const cap = this.cap;
    const interval = this.interval;
    if (this.peerUsed[slot] === 0 || this.peerKey[slot] !== (dest | 0)) {
      this.peerUsed[slot] = 1;
      this.peerKey[slot] = dest | 0;
      this.peerTokens[slot] = cap;
      this.peerLast[slot] = now;
    }
    let tokens = Math.min(cap, this.peerTokens[slot]! + (now - this.peerLast[slot]!));
    this.peerLast[slot] = now;
    if (tokens < interval || !this.global.allow(now)) {
      this.peerTokens[slot] = tokens;
      this.limited++;
      return false;
    }
    tokens -= interval;
    this.peerTokens[slot] = tokens;
    return true;
  }
}
