/**
 * dom0's qrexec daemon for one sys-moat VM in the lab, calling `moat.FirewallStats` whenever the
 * host asks: it connects to the VM's agent (as qrexec-daemon does when the VM starts), reports
 * `connected`, then serves commands the host writes to its own xenstore directory (command-loop:
 * `stats` answers the VM's JSON document, `profile` a summary of `moat.CpuProfile+<ms>`, `close`
 * ends the process).
 */
import { QrexecDaemon } from '@moat/qrexec/dom0';
import { xenVchanTransport } from '@moat/vchan';
import { openNativeDomain } from '@moat/xen';
import { type CpuProfile, summarizeCpuProfile } from '../cpu-profile.ts';
import type { FirewallStatsCommand, FirewallStatsServeArgs } from '../firewall-life-wire.ts';
import { guestArgs } from '../guest.ts';
import { encodeMessage } from '../protocol.ts';
import { serveXenstoreCommands } from './command-loop.ts';

const emit = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const args = guestArgs() as unknown as FirewallStatsServeArgs;
  const start = performance.now();
  try {
    const qrexec = await QrexecDaemon.connect({
      transport: xenVchanTransport(openNativeDomain()),
      domain: args.peer,
      name: args.name,
      startupTimeoutMs: args.startupTimeoutMs,
      policy: () => ({ action: 'deny' }),
    });
    await serveXenstoreCommands(
      async (raw) => {
        const c = raw as FirewallStatsCommand;
        if (c.op === 'close') {
          await qrexec.close().catch(() => undefined);
          setTimeout(() => process.exit(0), 100);
          return { bye: true };
        }
        const t = performance.now();
        if (c.op === 'profile') {
          const r = await qrexec.call('moat.CpuProfile', { user: 'root', argument: String(c.ms) });
          if (r.exitCode !== 0) throw new Error(`moat.CpuProfile exit ${r.exitCode}: ${r.stderr.toString()}`);
          return summarizeCpuProfile(JSON.parse(r.stdout.toString('utf8')) as CpuProfile, c.top ?? 15);
        }
        const r = await qrexec.call('moat.FirewallStats', { user: 'root' });
        const text = r.stdout.toString('utf8');
        if (r.exitCode !== 0)
          throw new Error(`moat.FirewallStats exit ${r.exitCode}: ${r.stderr.toString()}`);
        return { ms: Math.round(performance.now() - t), doc: JSON.parse(text) as unknown };
      },
      { dir: args.dir },
    );
    emit(
      encodeMessage({
        kind: 'result',
        name: 'connected',
        ok: true,
        ms: Math.round(performance.now() - start),
      }),
    );
  } catch (error) {
    const e = error as Error;
    emit(encodeMessage({ kind: 'result', name: 'connected', ok: false, ms: 0, error: e.stack ?? e.message }));
    emit(encodeMessage({ kind: 'done', ok: false, results: 1 }));
    process.exit(1);
  }
}

void main();
