/**
 * Runs a lab scenario (scenario.ts) on real Xen: boots the lab (or uses the one given), starts
 * the upstream netvm, the firewall VM if the scenario has one (firewall-vm.ts), and the
 * clients (each client's vif served by the firewall, or by the netvm with `firewall: none`,
 * as a qube whose netvm is sys-firewall or sys-net), then runs the steps in order and reports
 * one line per step.
 */
import type { VmImage } from '@moat/unikernel';
import { type FirewallVm, firewallVm, type MoatTemplateBoot, ruleCommit, vifIps } from './firewall-vm.ts';
import { bootLab, type Lab } from './lab.ts';
import { LAB_IP_COMMAND } from './linux-firewall/vif-script.ts';
import { buildLinuxImage, type LinuxGuestImage } from './linux-image.ts';
import { qubesDbEntries } from './qubesdb-keys.ts';
import type {
  Expectation,
  Scenario,
  ScenarioClient,
  ScenarioFirewall,
  ScenarioStep,
  StepReport,
} from './scenario.ts';
import { expectationFor, outcomeMeets } from './scenario.ts';
import {
  attachVif,
  detachVifs,
  type LinuxVm,
  netvmVif,
  type QubesDbService,
  qubesMac,
  serveQubesDb,
  startLinuxVm,
} from './topology.ts';
import type { LinuxCommand, ProbeOutcome } from './topology-wire.ts';

/** What a failed probe's report shows of its client's network. */
const CLIENT_DIAGNOSTICS = ['ip addr', 'ip route', 'ip neigh', 'cat /proc/net/dev']
  .map((c) => `echo "--- ${c}"; ${c.replace(/^ip /, `${LAB_IP_COMMAND} `)} 2>&1`)
  .join('; ');

export interface ScenarioRunOptions {
  /** A running lab to use (left running); otherwise one is booted and shut down. */
  readonly lab?: Lab;
  readonly image?: LinuxGuestImage;
  /** Prefix of the domain names, so several scenarios can share a lab one after another. */
  readonly namePrefix?: string;
  readonly onStep?: (report: StepReport) => void;
  readonly onConsoleLine?: (line: string) => void;
  /** Runs the scenario with this firewall instead of the file's `firewall` (`--firewall`). */
  readonly firewall?: ScenarioFirewall;
  /** sys-moat's image for `moat` (default: buildFirewallImage's). */
  readonly moatImage?: VmImage;
  /** Boots sys-moat from its template root image through PVH GRUB instead (`moat` only). */
  readonly moatTemplate?: MoatTemplateBoot;
}

export interface ScenarioRun {
  readonly scenario: string;
  readonly ok: boolean;
  readonly reports: readonly StepReport[];
  readonly timings: { readonly bootMs?: number; readonly upMs: number; readonly stepsMs: number };
}

interface ProbeData {
  outcome: ProbeOutcome;
  reply?: string;
  addresses?: string[];
  code?: string;
  error?: string;
  /** ping: nothing left the client (its output says why). */
  sentNothing?: string;
}

/** The source address an echo reported (`from <ip>:<port>`, the address IPv4 or IPv6). */
export function reportedSource(reply: string | undefined): string | undefined {
  return reply ? /^from (\d+\.\d+\.\d+\.\d+|[0-9a-f:]+):\d+(?:\s|$)/.exec(reply)?.[1] : undefined;
}

export function probeCommand(step: Extract<ScenarioStep, { kind: 'probe' }>): LinuxCommand {
  const timeout = step.timeoutMs ? { timeoutMs: step.timeoutMs } : {};
  const source = step.source ? { source: step.source } : {};
  switch (step.probe) {
    case 'tcp':
      if (step.on) return { op: 'tcp-again', hold: step.on, ...timeout };
      return {
        op: 'tcp',
        to: step.to ?? '',
        port: step.port ?? 0,
        readReply: true,
        ...source,
        ...(step.hold ? { hold: step.hold } : {}),
        ...timeout,
      };
    case 'udp':
      return { op: 'udp', to: step.to ?? '', port: step.port ?? 0, ...source, ...timeout };
    case 'iperf3':
      return {
        op: 'iperf3',
        to: step.to ?? '',
        seconds: step.seconds ?? 3,
        ...(step.reverse ? { reverse: true } : {}),
      };
    case 'ping':
      return { op: 'ping', to: step.to ?? '', count: 1, ...timeout };
    case 'dns':
      return { op: 'dns', name: step.name ?? '', ...timeout };
  }
}

function describeStep(step: ScenarioStep): string {
  switch (step.kind) {
    case 'probe':
      if (step.probe === 'dns') return `${step.from}: dns ${step.name}`;
      if (step.on) return `${step.from}: tcp again on "${step.on}"`;
      return (
        `${step.from}: ${step.probe}${step.reverse ? ' reverse' : ''} ${step.to}${step.port ? `:${step.port}` : ''}` +
        `${step.source ? ` from ${step.source}` : ''}${step.hold ? ` (held as "${step.on ?? step.hold}")` : ''}`
      );
    case 'set_rules':
      return `set_rules ${step.client} (${step.rules.size} rules)`;
    case 'attach':
    case 'detach':
      return `${step.kind} ${step.client}`;
    case 'restart':
      return 'restart upstream';
    case 'wait':
      return `wait ${step.ms} ms`;
    case 'repeat':
      return `repeat ${step.times}`;
  }
}

/** Whether a probe's data meets the step's expectation (and its checks of what came back). */
export function judgeProbe(
  step: Extract<ScenarioStep, { kind: 'probe' }>,
  data: ProbeData,
  firewall: ScenarioFirewall = 'none',
): { ok: boolean; result: string; why?: string } {
  const result = data.outcome;
  const expect: Expectation = expectationFor(step, firewall);
  // Silence from a probe that sent nothing proves nothing about the firewall.
  if (data.sentNothing !== undefined)
    return { ok: false, result: 'not sent', why: `the probe sent nothing: ${data.sentNothing}` };
  if (!outcomeMeets(result, expect)) return { ok: false, result, why: `expected ${expect}, got ${result}` };
  if (expect === 'allow' && step.upstreamSees) {
    const seen = reportedSource(data.reply);
    if (seen !== step.upstreamSees)
      return { ok: false, result, why: `upstream saw ${seen ?? 'nothing'}, expected ${step.upstreamSees}` };
  }
  if (expect === 'allow' && step.answer) {
    const got = [...(data.addresses ?? [])].sort();
    const want = [...step.answer].sort();
    if (got.join(',') !== want.join(','))
      return { ok: false, result, why: `answer ${got.join(',') || '(none)'}, expected ${want.join(',')}` };
  }
  return { ok: true, result };
}

export async function runScenario(
  scenario: Scenario,
  options: ScenarioRunOptions = {},
): Promise<ScenarioRun> {
  const prefix = options.namePrefix ?? '';
  // Before anything boots: a firewall kind the lab cannot start fails with its reason.
  const kind = options.firewall ?? scenario.firewall;
  const firewall: FirewallVm | undefined =
    kind === 'none'
      ? undefined
      : firewallVm(kind, `${prefix}firewall`, scenario.firewallIp, {
          ...(options.moatImage ? { moatImage: options.moatImage } : {}),
          ...(options.moatTemplate ? { moatTemplate: options.moatTemplate } : {}),
          ...(scenario.firewallIp6 ? { ip6: scenario.firewallIp6 } : {}),
        });
  const image = options.image ?? (await buildLinuxImage());
  const ownLab = !options.lab;
  const lab =
    options.lab ??
    (await bootLab({
      addon: image.addon,
      bootTimeoutMs: 1_200_000,
      ...(options.onConsoleLine ? { onConsoleLine: options.onConsoleLine } : {}),
    }));
  const upName = `${prefix}upstream`;
  const start = performance.now();
  const reports: StepReport[] = [];
  try {
    const upstreamArgs = {
      role: 'netvm' as const,
      ip: scenario.upstream.ip,
      ...(scenario.upstream.ip6 ? { ip6: scenario.upstream.ip6 } : {}),
      dns: scenario.upstream.dns,
      extraAddresses: scenario.upstream.extraAddresses,
      tcpPorts: scenario.upstream.tcpPorts,
      udpPorts: scenario.upstream.udpPorts,
    };
    const startUpstream = () =>
      startLinuxVm(lab, image.image, {
        name: upName,
        type: scenario.virtMode,
        args: upstreamArgs,
        // As the clients': a PVH netvm at load 22-25 had not reported `up` after 420 s.
        upTimeoutMs: 1_200_000,
      });
    let upstream = await startUpstream();
    // The clients' netvm: the firewall VM, or the upstream itself.
    const gateway = firewall ? firewall.ip : scenario.upstream.ip;
    // A client with an IPv6 address has a firewall (scenario.ts), whose IPv6 address is its gateway.
    const gateway6 = firewall?.ip6;
    const backend = firewall ? firewall.name : upName;
    const vifOf = (c: ScenarioClient, i: number) => netvmVif(backend, vifIps(c.ip, c.ip6), qubesMac(10 + i));
    const rules = new Map(scenario.clients.map((c) => [c.name, c.rules]));
    // Rules live where qubesd puts them: the QubesDB of the clients' netvm
    // (/qubes-firewall/<ip>/...). With `firewall: none` nothing enforces them; with a
    // firewall, the upstream holds the firewall VM's own (accept all, Qubes' default).
    const upstreamClients = firewall
      ? [
          {
            ip: firewall.ip,
            ...(firewall.ip6 ? { ip6: firewall.ip6 } : {}),
            rules: new Map([[0, 'action=accept']]),
          },
        ]
      : scenario.clients.map((c) => ({ ip: c.ip, rules: rules.get(c.name) ?? c.rules }));
    const upstreamEntries = () =>
      qubesDbEntries({
        name: upName,
        ip: scenario.upstream.ip,
        ...(scenario.upstream.ip6 ? { ip6: scenario.upstream.ip6 } : {}),
        providesNetwork: true,
        clients: upstreamClients,
      });
    const serveUpstreamDb = () =>
      serveQubesDb(lab, [{ domid: upstream.domid, name: upName, entries: upstreamEntries() }]);
    let upstreamDb: QubesDbService = await serveUpstreamDb();
    const firewallStarted = firewall
      ? await firewall.start({
          lab,
          image: image.image,
          virtMode: scenario.virtMode,
          upstream: {
            name: upName,
            ip: scenario.upstream.ip,
            ...(scenario.upstream.ip6 ? { ip6: scenario.upstream.ip6 } : {}),
          },
          clients: scenario.clients.map((c) => ({
            ip: c.ip,
            ...(c.ip6 ? { ip6: c.ip6 } : {}),
            rules: c.rules,
          })),
        })
      : undefined;
    const clients = new Map<
      string,
      { vm: LinuxVm; spec: ScenarioClient; index: number; attached: boolean }
    >();
    // The firewall serves each client once its vif connects (sys-moat: rules in force then).
    const serving = scenario.clients.map((c) => firewall?.serving?.(c.ip, c.ip6));
    for (const s of serving) s?.catch(() => undefined);
    const started = await Promise.all(
      scenario.clients.map((spec, index) =>
        startLinuxVm(lab, image.image, {
          name: `${prefix}${spec.name}`,
          type: scenario.virtMode,
          args: {
            role: 'client',
            ip: spec.ip,
            gateway,
            ...(spec.ip6 && gateway6 ? { ip6: spec.ip6, gateway6 } : {}),
          },
          vifs: [vifOf(spec, index)],
          // Several clients boot at once; under emulation on a loaded machine (load 14-17) one
          // of three took more than the default 420 s to report `up`.
          upTimeoutMs: 1_200_000,
        }).then((vm) => ({ vm, spec, index })),
      ),
    );
    for (const c of started) clients.set(c.spec.name, { ...c, attached: true });
    const servedClients = await Promise.all(serving);
    const clientsDb = await serveQubesDb(
      lab,
      started.map((c) => ({
        domid: c.vm.domid,
        name: c.vm.name,
        entries: qubesDbEntries({
          name: c.vm.name,
          ip: c.spec.ip,
          ...(c.spec.ip6 && gateway6 ? { ip6: c.spec.ip6, netvmIp6: gateway6 } : {}),
          mac: qubesMac(10 + c.index),
          netvmIp: gateway,
        }),
      })),
    );
    const upMs = Math.round(performance.now() - start);
    const stepsStart = performance.now();
    // Each VM reads its QubesDB as its agents would: a client its address and gateway, the
    // upstream its clients and their rules.
    const check = async (
      step: string,
      what: string,
      run: () => Promise<{ ok: boolean; detail: unknown }>,
    ) => {
      const t = performance.now();
      let outcome: { ok: boolean; detail: unknown };
      try {
        outcome = await run();
      } catch (error) {
        outcome = { ok: false, detail: { error: (error as Error).message } };
      }
      const report: StepReport = {
        step,
        what,
        result: outcome.ok ? 'synchronised' : 'wrong keys',
        ok: outcome.ok,
        ms: Math.round(performance.now() - t),
        detail: outcome.detail,
      };
      reports.push(report);
      options.onStep?.(report);
    };
    const readDb = (vm: LinuxVm, prefix: string) =>
      vm.command<{ entries: Record<string, string> }>({ op: 'qubesdb', prefix }).then((r) => r.entries);
    await check('0.0', 'upstream: QubesDB from dom0', async () => {
      const entries = await readDb(upstream, '/');
      const connected = upstreamClients.map((c) => c.ip).join(' ');
      const rulesIn = upstreamClients.every((c) => entries[`/qubes-firewall/${c.ip}/policy`] === 'drop');
      return {
        ok:
          entries['/connected-ips'] === connected &&
          entries['/qubes-netvm-gateway'] === scenario.upstream.ip &&
          rulesIn,
        detail: { connectedIps: entries['/connected-ips'], keys: Object.keys(entries).length },
      };
    });
    if (firewall) {
      const report: StepReport = {
        step: '0.f',
        what: `${firewall.kind} firewall: QubesDB, uplink, rules of every client`,
        result: 'enforcing',
        ok: true,
        ms: 0,
        detail: { started: firewallStarted, ...(firewall.serving ? { clients: servedClients } : {}) },
      };
      reports.push(report);
      options.onStep?.(report);
    }
    for (const c of started)
      await check(`0.${c.index + 1}`, `${c.spec.name}: QubesDB from dom0`, async () => {
        const entries = await readDb(c.vm, '/qubes-');
        const ip6 = c.spec.ip6 && gateway6 ? { ip6: c.spec.ip6, gateway6 } : undefined;
        return {
          ok:
            entries['/qubes-ip'] === c.spec.ip &&
            entries['/qubes-gateway'] === gateway &&
            entries['/qubes-ip6'] === ip6?.ip6 &&
            entries['/qubes-gateway6'] === ip6?.gateway6,
          detail: {
            ip: entries['/qubes-ip'],
            gateway: entries['/qubes-gateway'],
            dns: entries['/qubes-primary-dns'],
            ...(ip6 ? { ip6: entries['/qubes-ip6'], gateway6: entries['/qubes-gateway6'] } : {}),
          },
        };
      });

    const client = (name: string) => {
      const c = clients.get(name);
      if (!c) throw new Error(`no client ${name}`);
      return c;
    };
    const attach = async (name: string) => {
      const c = client(name);
      const served = firewall?.serving?.(c.spec.ip, c.spec.ip6);
      served?.catch(() => undefined);
      await attachVif(lab, c.vm.name, vifOf(c.spec, c.index));
      await c.vm.command({ op: 'configure', network: {} });
      await served;
      c.attached = true;
    };
    const detach = async (name: string) => {
      const c = client(name);
      await detachVifs(lab, c.vm.name);
      firewall?.unplugged?.(c.spec.ip);
      c.attached = false;
    };

    // A failed probe says why: the client's and the firewall's network as they are then (the
    // first few failures only; later ones are usually the same cause).
    let diagnosed = 0;
    const diagnose = async (from: string): Promise<Record<string, string> | undefined> => {
      if (++diagnosed > 3) return undefined;
      const c = client(from);
      const shown = (p: Promise<string>) => p.catch((e: Error) => `(failed: ${e.message})`);
      return {
        client: await shown(
          c.vm
            .command<{ out: string }>({ op: 'exec', argv: ['sh', '-c', CLIENT_DIAGNOSTICS] })
            .then((r) => r.out),
        ),
        dom0: await shown(lab.exec(['xl', 'network-list', c.vm.name]).then((r) => r.lines.join('\n'))),
        ...(firewall?.diagnose ? { firewall: await shown(firewall.diagnose()) } : {}),
      };
    };

    const runStep = async (step: ScenarioStep, id: string): Promise<void> => {
      const t = performance.now();
      const report = (r: Omit<StepReport, 'step' | 'what' | 'ms'>) => {
        const full: StepReport = {
          step: id,
          what: describeStep(step),
          ms: Math.round(performance.now() - t),
          ...r,
        };
        reports.push(full);
        options.onStep?.(full);
      };
      try {
        switch (step.kind) {
          case 'probe': {
            const data = await client(step.from).vm.command<ProbeData>(probeCommand(step), {
              timeoutMs: 180_000,
            });
            const judged = judgeProbe(step, data, kind);
            const expect = expectationFor(step, kind);
            const diagnostics = judged.ok ? undefined : await diagnose(step.from);
            // A failed probe shows what the firewall said (sys-moat logs its drops and why).
            const said = !judged.ok && firewall?.consoleTail ? { firewall: firewall.consoleTail(15) } : {};
            report({
              result: judged.result,
              expect,
              ok: judged.ok,
              detail: {
                ...data,
                // Where the Linux reference differs by design, the row says so and why.
                ...(step.linux
                  ? { differs: { expect: step.expect, expect_linux: step.linux.expect, why: step.linux.why } }
                  : {}),
                ...(judged.why ? { why: judged.why } : {}),
                ...(diagnostics ? { diagnostics } : {}),
                ...said,
              },
            });
            return;
          }
          case 'set_rules': {
            const spec = client(step.client).spec;
            rules.set(step.client, step.rules);
            if (firewall) {
              const applied = await firewall.rules(spec.ip, step.rules, spec.ip6);
              report({ result: 'in force', ok: true, detail: applied });
              return;
            }
            // As qubesd's reload_firewall_for_vm: remove the client's subtree, write the
            // rules, then the base key; then check the upstream's replica holds them.
            const { base, entries } = ruleCommit(spec.ip, step.rules);
            await upstreamDb.update({ domid: upstream.domid, commit: { base, entries } });
            const seen = await readDb(upstream, `${base}/`);
            const want = Object.fromEntries(entries.map(([k, v]) => [`${base}/${k}`, v]));
            const same = (a: Record<string, string>) => JSON.stringify(Object.entries(a).sort());
            const ok = same(seen) === same(want);
            report({
              result: ok ? 'set' : 'not in upstream QubesDB',
              ok,
              detail: { entries: seen, enforced: false },
            });
            return;
          }
          case 'attach':
            await attach(step.client);
            report({ result: 'attached', ok: true });
            return;
          case 'detach':
            await detach(step.client);
            report({ result: 'detached', ok: true });
            return;
          case 'restart': {
            // As when sys-net restarts: the VMs it serves lose their vifs, and get them back
            // once it runs again (qubesd re-attaches them).
            await lab.exec(['xl', 'destroy', upName], { timeoutMs: 120_000 });
            await upstream.handle.finished({ timeoutMs: 120_000 });
            await upstreamDb.stop().catch(() => undefined);
            const wereAttached = firewall
              ? []
              : [...clients.values()].filter((c) => c.attached).map((c) => c.spec.name);
            for (const name of wereAttached) await detach(name);
            if (firewall) await firewall.upstreamGone();
            upstream = await startUpstream();
            upstreamDb = await serveUpstreamDb();
            for (const name of wereAttached) await attach(name);
            if (firewall) await firewall.restart();
            report({ result: 'restarted', ok: true });
            return;
          }
          case 'wait':
            await new Promise((r) => setTimeout(r, step.ms));
            report({ result: 'waited', ok: true });
            return;
          case 'repeat':
            for (let i = 0; i < step.times; i++)
              for (const [j, inner] of step.steps.entries()) await runStep(inner, `${id}.${j + 1}#${i + 1}`);
            return;
        }
      } catch (error) {
        const said = firewall?.consoleTail ? { firewall: firewall.consoleTail(15) } : {};
        report({ result: 'error', ok: false, detail: { error: (error as Error).message, ...said } });
      }
    };
    for (const [i, step] of scenario.steps.entries()) await runStep(step, String(i + 1));
    for (const c of clients.values()) await c.vm.command({ op: 'poweroff' }).catch(() => undefined);
    await firewall?.stop().catch(() => undefined);
    await upstream.command({ op: 'poweroff' }).catch(() => undefined);
    await upstreamDb.stop().catch(() => undefined);
    await clientsDb.stop().catch(() => undefined);
    return {
      scenario: scenario.name,
      ok: reports.length > 0 && reports.every((r) => r.ok),
      reports,
      timings: {
        ...(ownLab ? { bootMs: lab.timings.bootMs } : {}),
        upMs,
        stepsMs: Math.round(performance.now() - stepsStart),
      },
    };
  } finally {
    if (ownLab) await lab.shutdown();
  }
}
