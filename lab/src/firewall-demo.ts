/**
 * `./moat demo`'s firewall part: sys-moat on real Xen between a Linux client qube and a Linux
 * netvm, wired as Qubes wires sys-firewall (the pattern of test/firewall-traffic.lab.test.ts),
 * its log at `vm-config.log-level debug` so its console names the rule that decided each new
 * flow. The client tries things; each try is reported with what the client saw and the lines
 * sys-moat printed about it. Then dom0 commits new rules for the client, as qubesd does on
 * `qvm-firewall`, and the client tries again. Everything reported comes from the lab's output.
 */
import type { VmImage } from '@moat/unikernel';
import { MoatFirewallVm, ruleCommit } from './firewall-vm.ts';
import type { GuestHandle } from './guest-run.ts';
import type { Lab } from './lab.ts';
import { qubesFirewallEntries } from './qubesdb-keys.ts';
import { type LinuxVm, qubesMac, startLinuxVm } from './topology.ts';
import { type LinuxCommand, NETVM_PORTS } from './topology-wire.ts';

const NETVM = { name: 'demo-netvm', ip: '10.137.0.2' };
const MOAT = { name: 'sys-moat', ip: '10.137.0.3' };
const CLIENT = { name: 'demo-work', ip: '10.137.0.20', mac: qubesMac(20) };
const WAIT = { timeoutMs: 900_000 };
/** A Linux domU's boot under emulation on a loaded machine (load 19: over 420 s). */
const BOOT_TIMEOUT_MS = 1_200_000;
/** How long a decision line may take to reach the host after the client's probe returned. */
const LINE_WAIT_MS = 20_000;

/** The client's rules before the change: the netvm's TCP echo and ping; the policy drops the rest. */
export const DEMO_RULES_BEFORE: ReadonlyMap<number, string> = new Map([
  [0, `action=accept proto=tcp dstports=${NETVM_PORTS.tcpEcho}-${NETVM_PORTS.tcpEcho}`],
  [1, 'action=accept proto=icmp'],
]);
/** After `qvm-firewall`: the sink port instead of the echo (so the open echo connection is cut). */
export const DEMO_RULES_AFTER: ReadonlyMap<number, string> = new Map([
  [0, `action=accept proto=tcp dstports=${NETVM_PORTS.sink}-${NETVM_PORTS.sink}`],
  [1, 'action=accept proto=icmp'],
]);

export interface FirewallDemoTry {
  readonly what: string;
  /** The client's probe result (outcome, reply, ...), as its guest reported it. */
  readonly client: Record<string, unknown>;
  /** sys-moat's console lines about this try (its decision with the deciding rule, drops). */
  readonly moat: readonly string[];
}

export interface FirewallDemoRun {
  readonly before: readonly FirewallDemoTry[];
  /** sys-moat's lines after dom0 committed the new rules. */
  readonly ruleChange: readonly string[];
  readonly after: readonly FirewallDemoTry[];
  /** Seconds from the start to each VM being up. */
  readonly timings: Record<string, number>;
}

/**
 * sys-moat's own log lines (the console also carries the kernel's and init's), less two kinds
 * the demo leaves out as noise: the Linux guests' IPv6 frames (router solicitations and the
 * like), dropped because these qubes have no `ipv6` feature, and the info-level copy of a drop
 * whose debug line, printed, names the rule.
 */
const moatLines = (lines: readonly string[]) =>
  lines
    .filter((l) => /^sys-moat (error|warn|info|debug): /.test(l))
    .filter((l) => !/^sys-moat info: drop \S+: (ipv6-disabled|rule): /.test(l))
    .map((l) => l.slice('sys-moat '.length));

const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The decision line sys-moat logs for the client's new flow to `to` (`port` for TCP/UDP). */
function decisionPattern(proto: 'tcp' | 'udp' | 'icmp', to: string, port?: number): RegExp {
  const src = `${reEscape(CLIENT.ip)}${port !== undefined ? ':\\d+' : ''}`;
  const dst = `${reEscape(to)}${port !== undefined ? `:${port}` : ''}`;
  return new RegExp(`sys-moat debug: (accept|drop) \\S+: ${proto} ${src} -> ${dst} by `);
}

/**
 * Runs the firewall part in `lab` (booted with the Linux image's addon) and reports each line
 * through `say`. Leaves nothing running: the three domUs are destroyed at the end.
 */
export async function runFirewallDemo(
  lab: Lab,
  images: { linux: VmImage; firewall: VmImage },
  say: (line: string) => void,
): Promise<FirewallDemoRun> {
  const t0 = performance.now();
  const since = () => Math.round((performance.now() - t0) / 100) / 10;
  const timings: Record<string, number> = {};
  const fw = new MoatFirewallVm(MOAT.name, MOAT.ip, {
    image: images.firewall,
    memoryMb: 192,
    // `qvm-features sys-moat vm-config.log-level debug`: each decision with its rule on the console
    vmConfig: { 'log-level': 'debug' },
    upTimeoutMs: WAIT.timeoutMs,
  });
  try {
    say(`starting a Linux netvm (${NETVM.ip}) and sys-moat (${MOAT.ip}, PV, 192 MB) as its client`);
    await startLinuxVm(lab, images.linux, {
      name: NETVM.name,
      args: { role: 'netvm', ip: NETVM.ip },
      upTimeoutMs: BOOT_TIMEOUT_MS,
    });
    timings.netvmUpS = since();
    say(`dom0 serves sys-moat's QubesDB as qubesd writes it; the client's rules:`);
    for (const [key, value] of qubesFirewallEntries(CLIENT.ip, DEMO_RULES_BEFORE))
      if (value) say(`  ${key} = ${value}`);
    await fw.start({
      lab,
      virtMode: 'pv',
      upstream: NETVM,
      clients: [{ ip: CLIENT.ip, rules: DEMO_RULES_BEFORE }],
    });
    const moat = fw.handle;
    timings.moatUplinkUpS = since();
    for (const line of moatLines(moat.snapshot().lines)) say(`sys-moat ${line}`);
    say(
      "(left out below: sys-moat's lines on the guests' IPv6 frames, which it drops as these qubes have no ipv6 feature)",
    );

    say(`starting a Linux client qube (${CLIENT.ip}) whose vif names sys-moat as its backend`);
    const mark = moat.lineCount;
    const client = await startClient(lab, images.linux, moat, say);
    await moat.consoleLine(new RegExp(`client ${reEscape(CLIENT.ip)} connected`), { ...WAIT, after: mark });
    await moat.consoleLine(new RegExp(`rules for ${reEscape(CLIENT.ip)} in force`), { ...WAIT, after: mark });
    timings.clientUpS = since();
    for (const line of moatLines(moat.linesFrom(mark))) say(`sys-moat ${line}`);

    const probe = (what: string, command: LinuxCommand, pattern?: RegExp) =>
      tryOnce(client, moat, say, what, command, pattern);
    const echo = NETVM_PORTS.tcpEcho;
    const sink = NETVM_PORTS.sink;
    const before = [
      await probe(
        `ping ${NETVM.ip}`,
        { op: 'ping', to: NETVM.ip, count: 1 },
        decisionPattern('icmp', NETVM.ip),
      ),
      await probe(
        `TCP to ${NETVM.ip}:${echo} (the netvm's echo, which answers with the source it saw); kept open`,
        { op: 'tcp', to: NETVM.ip, port: echo, readReply: true, hold: 'echo' },
        decisionPattern('tcp', NETVM.ip, echo),
      ),
      await probe(
        `TCP to ${NETVM.ip}:${sink}`,
        { op: 'tcp', to: NETVM.ip, port: sink },
        decisionPattern('tcp', NETVM.ip, sink),
      ),
    ];

    say('dom0 commits new rules for the client (what qubesd does on `qvm-firewall`):');
    const after = qubesFirewallEntries(CLIENT.ip, DEMO_RULES_AFTER);
    for (const [key, value] of after) if (value) say(`  ${key} = ${value}`);
    const changeMark = moat.lineCount;
    await fw.qubesdb.update({ domid: fw.domid, commit: ruleCommit(CLIENT.ip, DEMO_RULES_AFTER) });
    await moat.consoleLine(new RegExp(`rules for ${reEscape(CLIENT.ip)} in force`), {
      timeoutMs: 300_000,
      after: changeMark,
    });
    const ruleChange = moatLines(moat.linesFrom(changeMark));
    for (const line of ruleChange) say(`sys-moat ${line}`);

    const afterTries = [
      await probe(
        `a line on the TCP connection to ${NETVM.ip}:${echo} opened before the change`,
        { op: 'tcp-again', hold: 'echo' },
        decisionPattern('tcp', NETVM.ip, echo),
      ),
      await probe(
        `TCP to ${NETVM.ip}:${sink} again`,
        { op: 'tcp', to: NETVM.ip, port: sink },
        decisionPattern('tcp', NETVM.ip, sink),
      ),
      await probe(
        `TCP to ${NETVM.ip}:${echo} again`,
        { op: 'tcp', to: NETVM.ip, port: echo, readReply: true },
        decisionPattern('tcp', NETVM.ip, echo),
      ),
    ];
    return { before, ruleChange, after: afterTries, timings };
  } finally {
    await fw.stop();
    for (const name of [`${CLIENT.name}1`, `${CLIENT.name}2`, NETVM.name])
      await lab.exec(['xl', 'destroy', name]).catch(() => undefined);
  }
}

/**
 * libxl gives a backend 10 s (LIBXL_INIT_TIMEOUT) to reach InitWait; our netback in a TCG domU
 * on a loaded machine can take longer, so a second attempt is allowed (as the lab test does).
 */
async function startClient(
  lab: Lab,
  linux: VmImage,
  moat: GuestHandle,
  say: (line: string) => void,
): Promise<LinuxVm> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startLinuxVm(lab, linux, {
        name: `${CLIENT.name}${attempt}`,
        args: { role: 'client', ip: CLIENT.ip, gateway: MOAT.ip },
        vifs: [{ backend: MOAT.name, ip: CLIENT.ip, mac: CLIENT.mac }],
        upTimeoutMs: BOOT_TIMEOUT_MS,
      });
    } catch (error) {
      if (attempt >= 2) throw new Error(`${(error as Error).message}\nsys-moat's console:\n${moat.tail(40)}`);
      say(`the client's first xl create failed (${(error as Error).message.split('\n')[0]}); trying again`);
      await lab.exec(['xl', 'destroy', `${CLIENT.name}${attempt}`]).catch(() => undefined);
    }
  }
}

/** One try: the client's probe, then sys-moat's lines about it (waiting for its decision line). */
async function tryOnce(
  client: LinuxVm,
  moat: GuestHandle,
  say: (line: string) => void,
  what: string,
  command: LinuxCommand,
  decision: RegExp | undefined,
): Promise<FirewallDemoTry> {
  say(`client tries: ${what}`);
  const mark = moat.lineCount;
  const result = await client.command<Record<string, unknown>>(command, { timeoutMs: 180_000 });
  say(`  client saw: ${describeProbe(result)}`);
  if (decision) {
    // The console line travels apart from the probe's result; it may come a moment later.
    await moat.consoleLine(decision, { timeoutMs: LINE_WAIT_MS, after: mark }).catch(() => undefined);
  }
  const lines = moatLines(moat.linesFrom(mark));
  if (lines.length === 0) say('  sys-moat logged nothing about it');
  for (const line of lines) say(`  sys-moat ${line}`);
  return { what, client: result, moat: lines };
}

function describeProbe(r: Record<string, unknown>): string {
  const outcome = String(r.outcome);
  const words: Record<string, string> = {
    accepted: 'answered',
    icmp: 'an ICMP error came back (refused by the firewall)',
    refused: 'connection refused',
    silence: 'no answer',
  };
  const parts = [words[outcome] ?? outcome];
  if (typeof r.reply === 'string') parts.push(`the echo said ${JSON.stringify(r.reply)}`);
  if (typeof r.avgMs === 'number') parts.push(`round trip ${r.avgMs} ms`);
  if (typeof r.error === 'string') parts.push(`(${r.error})`);
  return parts.join('; ');
}
