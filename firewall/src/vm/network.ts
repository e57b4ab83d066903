/**
 * The firewall's network side, wired: the engine between the uplink and the client vifs, its
 * resolver for `dsthost` names (queries leave through the uplink from our own address), each
 * client's live rules, and QubesDB's addresses and `/connected-ips` followed. Wiring only: every
 * frame goes straight from a device to `engine.receive` and from the engine's sink to a device.
 *
 * Clients are independent: each vif's handshake runs on its own, so one that never finishes
 * holds nothing but its own slot. The uplink reconnects by itself when it goes down.
 */

import { ClientRules, systemClock } from '../client-rules.ts';
import type { ResolverStats } from '../dns/resolver.ts';
import { type DnsServer, dnsServersFromQubesDb, StubResolver } from '../dns/resolver.ts';
import {
  type DecisionLogEntry,
  type DropLogEntry,
  type FrameMeta,
  type FrameSink,
  UPLINK,
  type UplinkConfig,
} from '../engine/config.ts';
import { type EngineStats, FirewallEngine } from '../engine/engine.ts';
import { parseVifAddresses } from '../engine/links.ts';
import { formatIp } from '../wire/address.ts';
import type { ClientBackend, ClientLink, ClientVif, EthernetLink, UplinkDevice } from './devices.ts';
import type { VmLog } from './log.ts';
import {
  type NetworkConfig,
  type ReadKey,
  readConnectedIps,
  readMappedIp,
  readNetworkConfig,
  sameAddress,
} from './network-config.ts';
import { followRuleTrees, type RuleTrees } from './rule-trees.ts';
import type { VmSettings } from './settings.ts';

const ZERO_MAC = new Uint8Array(6);
const NO_ADDRESS = new Uint8Array(4);
/** Wait before retrying the uplink, doubled per failure up to the maximum. */
const UPLINK_RETRY_MS = 1000;
const UPLINK_RETRY_MAX_MS = 16_000;

export interface NetworkOptions {
  read: ReadKey;
  trees: RuleTrees;
  uplink: UplinkDevice;
  clients: ClientBackend;
  settings: VmSettings;
  log: VmLog;
  /** Monotonic milliseconds (engine timers, resolver). */
  now: () => number;
  /** UNIX seconds for rule `expire=`. */
  wallClockSeconds?: () => number;
}

interface ClientSlot {
  readonly vif: ClientVif;
  readonly abort: AbortController;
  /** The backend's ip key, once connected. */
  ip: string;
  state: 'connecting' | 'up';
  link?: number;
  eth?: ClientLink;
  /** Stops following the client's rule trees. */
  unfollow?: () => void;
}

export interface ClientStatus {
  name: string;
  domid: number;
  ip: string;
  state: ClientSlot['state'];
  link?: number;
}

export interface NetworkStats {
  role: 'none' | 'network';
  uplink: { state: 'none' | 'connecting' | 'up' | 'waiting'; connects: number; lastError?: string };
  clients: ClientStatus[];
  /** Frames the engine sent to a link whose device was not up (dropped). */
  framesWithoutDevice: number;
  engine: EngineStats | undefined;
  resolver: ResolverStats | undefined;
}

export class FirewallNetwork {
  private engine: FirewallEngine | undefined;
  private resolver: StubResolver | undefined;
  private rules: ClientRules | undefined;
  private config: NetworkConfig;
  private readonly slots = new Map<string, ClientSlot>();
  private readonly links = new Map<number, EthernetLink>();
  private uplinkLink: EthernetLink | undefined;
  private uplinkState: NetworkStats['uplink'] = { state: 'none', connects: 0 };
  private uplinkLoop: AbortController | undefined;
  private framesWithoutDevice = 0;
  private stopped = false;

  constructor(private readonly o: NetworkOptions) {
    this.config = readNetworkConfig(o.read);
  }

  async start(): Promise<void> {
    this.configure();
    await this.o.clients.start({ added: (vif) => this.addVif(vif), removed: (vif) => this.removeVif(vif) });
  }

  /** QubesDB's addresses changed (a new netvm, DNS servers): applied without dropping clients. */
  reconfigure(): void {
    if (this.stopped) return;
    const before = this.config;
    this.config = readNetworkConfig(this.o.read);
    const c = this.config;
    if (!this.engine) {
      if (c.clientGateway4) this.configure();
      return;
    }
    const up = c.uplink;
    if (
      up &&
      (!sameAddress(before.uplink?.ip4, up.ip4) || !sameAddress(before.uplink?.gateway4, up.gateway4))
    ) {
      const cut = this.engine.setUplink(this.uplinkConfig());
      this.o.log.info(`uplink now ${formatIp(up.ip4)} via ${formatIp(up.gateway4)} (${cut} connections cut)`);
    }
    // ClientRules follows the engine's DNS servers (engine.onConfigChange).
    this.engine.setDns(c.dns);
    this.resolver?.setServers(this.dnsServers());
    if (up && !this.uplinkLoop) this.followUplink();
    if (!up && this.uplinkLoop) this.dropUplink('QubesDB no longer names a netvm');
  }

  /** `/connected-ips` or `/connected-ips6` changed. */
  connectedIpsChanged(): void {
    if (!this.engine) return;
    const { ips4, ips6, bad } = readConnectedIps(this.o.read);
    for (const b of bad) this.o.log.warn(`connected-ips: not an address: ${b}`);
    this.engine.setConnectedIps(ips4, ips6);
  }

  /**
   * At log level debug, each new flow's rule decision is logged with the rule that decided it
   * (`/qubes-firewall/<ip>/NNNN` and its line, or the policy); rate-limited by the engine.
   */
  followLogLevel(): void {
    this.engine?.setDecisionLog(this.o.log.level === 'debug' ? (e) => this.logDecision(e) : undefined);
  }

  /** Timers: conntrack expiry, the resolver's retries and refreshes (rule `expire=` has its own timer). */
  tick(): void {
    this.engine?.tick(this.o.now());
  }

  stats(): NetworkStats {
    return {
      role: this.engine ? 'network' : 'none',
      uplink: { ...this.uplinkState },
      clients: [...this.slots.values()].map((s) => ({
        name: s.vif.name,
        domid: s.vif.domid,
        ip: s.ip,
        state: s.state,
        ...(s.link !== undefined ? { link: s.link } : {}),
      })),
      framesWithoutDevice: this.framesWithoutDevice,
      engine: this.engine?.stats(),
      resolver: this.resolver ? { ...this.resolver.stats } : undefined,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.uplinkLoop?.abort();
    await this.o.clients.stop().catch((e: Error) => this.o.log.warn(`client backend stop: ${e.message}`));
    for (const slot of [...this.slots.values()]) this.removeVif(slot.vif);
    this.rules?.close();
    await this.uplinkLink?.close().catch(() => undefined);
    this.uplinkLink = undefined;
  }

  // ------------------------------------------------------------------ engine and uplink

  /** Creates the engine once QubesDB says we provide network (`/qubes-netvm-gateway`). */
  private configure(): void {
    const c = this.config;
    if (this.engine || !c.clientGateway4) {
      if (!c.clientGateway4) this.o.log.info('no /qubes-netvm-gateway or /qubes-ip: serving no network');
      return;
    }
    const s = this.o.settings;
    const sink: FrameSink = { send: (link, buf, off, len, meta) => this.deliver(link, buf, off, len, meta) };
    const engine = new FirewallEngine(
      {
        uplink: this.uplinkConfig(),
        clientGateway4: c.clientGateway4,
        clientGateway6: c.clientGateway6,
        ...(c.dns ? { dns: c.dns } : {}),
        conntrackMax: s.conntrackMax,
        ...(s.conntrackPerClient !== undefined ? { conntrackPerClient: s.conntrackPerClient } : {}),
        fragmentsPerLink: s.fragmentsPerLink,
        rejectWithIcmp: s.rejectWithIcmp,
        log: (e) => this.logDrop(e),
      },
      sink,
    );
    this.engine = engine;
    this.followLogLevel();
    this.resolver = new StubResolver({
      servers: this.dnsServers(),
      now: this.o.now,
      attemptTimeoutMs: s.dnsTimeoutMs,
      portAvailable: (t, p) => engine.localPortAvailable(t, p),
      log: (line) => this.o.log.info(`dns: ${line}`),
    });
    engine.attachResolver(this.resolver);
    this.rules = new ClientRules({
      engine,
      resolver: this.resolver,
      clock: {
        nowMs: this.o.now,
        wallSeconds: this.o.wallClockSeconds ?? systemClock.wallSeconds,
        setTimer: systemClock.setTimer,
      },
      log: (line) => this.o.log.info(line),
      onApplied: (ip, status, cut) =>
        this.o.log.info(
          `rules for ${ip} in force${status.failClosedReason ? ` (fail closed: ${status.failClosedReason})` : ''}; ${cut} connection(s) they forbid cut`,
        ),
    });
    this.connectedIpsChanged();
    this.o.log.info(
      `serving clients as ${formatIp(c.clientGateway4)}; uplink ${c.uplink ? `${formatIp(c.uplink.ip4)} via ${formatIp(c.uplink.gateway4)}` : 'none (no netvm)'}`,
    );
    if (c.uplink) this.followUplink();
  }

  private dnsServers(): DnsServer[] {
    return dnsServersFromQubesDb(this.config.dnsServers.map((a) => formatIp(a)));
  }

  private uplinkConfig(): UplinkConfig {
    const c = this.config;
    const mac = this.uplinkLink?.mac ?? macFromText(this.o.read('/qubes-mac')) ?? ZERO_MAC;
    return {
      mac,
      ip4: c.uplink?.ip4 ?? c.clientGateway4 ?? NO_ADDRESS,
      gateway4: c.uplink?.gateway4 ?? NO_ADDRESS,
      ip6: c.uplink?.ip6,
      gateway6: c.uplink?.gateway6,
      ...(this.uplinkLink ? { mtu: this.uplinkLink.mtu } : {}),
    };
  }

  /** Connects the uplink and reconnects whenever it goes down, until stopped. */
  private followUplink(): void {
    const loop = new AbortController();
    this.uplinkLoop = loop;
    void (async () => {
      let wait = UPLINK_RETRY_MS;
      while (!loop.signal.aborted) {
        this.uplinkState.state = 'connecting';
        try {
          const link = await this.o.uplink.connect(loop.signal);
          if (loop.signal.aborted) {
            await link.close();
            return;
          }
          const down = new Promise<string>((resolve) => link.onDown(resolve));
          this.uplinkLink = link;
          this.uplinkState.connects += 1;
          this.uplinkState.state = 'up';
          this.engine?.setUplink(this.uplinkConfig());
          link.onFrame((buf, off, len, meta) => this.engine?.receive(UPLINK, buf, off, len, meta));
          this.engine?.solicitGateway();
          this.o.log.info(`uplink up (mac ${formatMac(link.mac)}, mtu ${link.mtu})`);
          wait = UPLINK_RETRY_MS;
          const reason = await Promise.race([down, aborted(loop.signal)]);
          if (this.uplinkLink === link) this.uplinkLink = undefined;
          this.o.log.warn(`uplink down: ${reason}`);
          if (loop.signal.aborted) await link.close().catch(() => undefined);
        } catch (error) {
          if (loop.signal.aborted) return;
          this.uplinkState.lastError = (error as Error).message;
          this.o.log.warn(`uplink: ${(error as Error).message}; retrying in ${wait} ms`);
        }
        this.uplinkState.state = 'waiting';
        await delay(wait, loop.signal);
        wait = Math.min(wait * 2, UPLINK_RETRY_MAX_MS);
      }
    })();
  }

  private dropUplink(reason: string): void {
    this.uplinkLoop?.abort();
    this.uplinkLoop = undefined;
    const link = this.uplinkLink;
    this.uplinkLink = undefined;
    this.uplinkState.state = 'none';
    this.o.log.info(`uplink closed: ${reason}`);
    void link?.close().catch(() => undefined);
  }

  private deliver(link: number, buf: Uint8Array, off: number, len: number, meta: FrameMeta): void {
    const device = link === UPLINK ? this.uplinkLink : this.links.get(link);
    if (device) device.send(buf, off, len, meta);
    else this.framesWithoutDevice += 1;
  }

  private logDecision(e: DecisionLogEntry): void {
    const ip = [...this.slots.values()].find((s) => s.link === e.link)?.ip.split(' ')[0];
    const key = e.rule === 'policy' ? 'policy' : String(e.rule).padStart(4, '0');
    const line = ip ? this.o.read(`/qubes-firewall/${ip}/${key}`) : undefined;
    const rule = e.rule === 'policy' ? 'the policy' : `rule ${key}`;
    const more = e.suppressed > 0 ? ` (${e.suppressed} more not logged)` : '';
    this.o.log.debug(
      `${e.action} ${e.client}: ${e.packet} by ${rule}${line !== undefined ? ` (${line})` : ''}${more}`,
    );
  }

  private logDrop(e: DropLogEntry): void {
    const more = e.suppressed > 0 ? ` (${e.suppressed} more not logged)` : '';
    this.o.log.info(`drop ${e.client}: ${e.reason}: ${e.packet}${more}`);
  }

  // ------------------------------------------------------------------ clients

  private addVif(vif: ClientVif): void {
    if (this.stopped) return;
    const key = `${vif.domid}/${vif.handle}`;
    if (this.slots.has(key)) this.removeVif(vif);
    const slot: ClientSlot = { vif, abort: new AbortController(), state: 'connecting', ip: '' };
    this.slots.set(key, slot);
    const engine = this.engine;
    if (!engine) {
      this.o.log.warn(`${vif.name}: not served: no network role (no /qubes-netvm-gateway)`);
      this.slots.delete(key);
      return;
    }
    this.o.log.info(`${vif.name}: appeared; connecting`);
    vif.connect(slot.abort.signal).then(
      (eth) => {
        if (slot.abort.signal.aborted || this.slots.get(key) !== slot) {
          void eth.close().catch(() => undefined);
          return;
        }
        slot.ip = eth.ip;
        const { ip4, ip6 } = parseVifAddresses(eth.ip);
        if (!ip4) {
          this.o.log.warn(
            `${vif.name}: not served: no IPv4 address in the backend's ip key (${eth.ip.slice(0, 64)})`,
          );
          this.removeVif(vif);
          void eth.close().catch(() => undefined);
          return;
        }
        const ip4Text = formatIp(ip4);
        const mapped = readMappedIp(this.o.read, ip4Text);
        const link = engine.addClient({
          mac: eth.clientMac,
          ip4,
          ip6,
          visibleIp4: mapped.visibleIp4,
          visibleGateway4: mapped.visibleGateway4,
          name: vif.name,
        });
        // No rule set (drop-all) until the first commit reaches ClientRules.
        const rules = this.rules;
        if (rules)
          slot.unfollow = followRuleTrees({
            trees: this.o.trees,
            sink: rules,
            ips: ip6 ? [ip4Text, formatIp(ip6)] : [ip4Text],
            log: (line) => this.o.log.warn(line),
          });
        slot.link = link;
        slot.eth = eth;
        slot.state = 'up';
        this.links.set(link, eth);
        eth.onFrame((buf, off, len, meta) => engine.receive(link, buf, off, len, meta));
        eth.onDown((reason) => {
          if (this.slots.get(key) === slot) {
            this.o.log.info(`${vif.name}: link down: ${reason}`);
            this.removeVif(vif);
          }
        });
        this.o.log.info(`${vif.name}: client ${eth.ip} connected as link ${link}`);
      },
      (error: Error) => {
        if (slot.abort.signal.aborted || this.slots.get(key) !== slot) return;
        // Forgotten, so attach/detach cycles of failing clients leave nothing behind.
        this.slots.delete(key);
        this.o.log.warn(`${vif.name}: handshake failed: ${error.message}`);
      },
    );
  }

  private removeVif(vif: ClientVif): void {
    const key = `${vif.domid}/${vif.handle}`;
    const slot = this.slots.get(key);
    if (!slot) return;
    this.slots.delete(key);
    slot.abort.abort(new Error(`${vif.name} removed`));
    slot.unfollow?.();
    if (slot.link !== undefined) {
      this.links.delete(slot.link);
      this.engine?.removeClient(slot.link);
    }
    void slot.eth?.close().catch((e: Error) => this.o.log.warn(`${vif.name}: close: ${e.message}`));
    this.o.log.info(`${vif.name}: client gone`);
  }
}

function macFromText(text: string | undefined): Uint8Array | undefined {
  const m = text?.trim().match(/^([0-9a-fA-F]{2})(?::([0-9a-fA-F]{2})){5}$/);
  if (!m || !text) return undefined;
  return Uint8Array.from(text.trim().split(':'), (h) => Number.parseInt(h, 16));
}

function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function aborted(signal: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve('stopped');
    signal.addEventListener('abort', () => resolve('stopped'), { once: true });
  });
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
