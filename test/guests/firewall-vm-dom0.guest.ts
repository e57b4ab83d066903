/**
 * dom0's side of test/firewall-vm.lab.test.ts: our qrexec daemon calls what dom0 calls on a
 * freshly installed template (qvm-template-postprocess: qubes.PostInstall, which makes the VM call
 * qubes.FeaturesRequest back; qubes.WaitForSession), then moat.FirewallStats, and a service a
 * moat VM refuses (qubes.VMShell: no shell).
 */
import { guestArgs, guestMain } from '@moat/lab/guest';
import { QrexecDaemon } from '@moat/qrexec/dom0';
import { xenVchanTransport } from '@moat/vchan';
import { openNativeDomain } from '@moat/xen';

interface Args {
  peer: number;
  name: string;
}

const args = guestArgs() as unknown as Args;
let qrexec: QrexecDaemon | undefined;
const requests: string[] = [];

async function call(service: string, stdin?: string) {
  if (!qrexec) throw new Error('qrexec is not connected');
  const t = performance.now();
  const r = await qrexec.call(service, {
    user: 'root',
    ...(stdin !== undefined ? { stdin: Buffer.from(stdin) } : {}),
  });
  return {
    exitCode: r.exitCode,
    stdout: r.stdout.toString('utf8').slice(0, 60_000),
    stderr: r.stderr.toString('utf8').slice(0, 2000),
    ms: Math.round(performance.now() - t),
  };
}

guestMain({
  'qrexec connected': async () => {
    qrexec = await QrexecDaemon.connect({
      transport: xenVchanTransport(openNativeDomain()),
      domain: args.peer,
      name: args.name,
      startupTimeoutMs: 300_000,
      policy: (request) => {
        requests.push(request.service);
        return request.service === 'qubes.FeaturesRequest'
          ? { action: 'allow', service: () => ({ exitCode: 0 }) }
          : { action: 'deny' };
      },
    });
    return { version: qrexec.version };
  },
  'qubes.PostInstall': async () => ({ ...(await call('qubes.PostInstall')), vmCalled: [...requests] }),
  'qubes.WaitForSession': () => call('qubes.WaitForSession', 'user\n'),
  'moat.FirewallStats': () => call('moat.FirewallStats'),
  'qubes.VMShell': () => call('qubes.VMShell', 'echo hi\n'),
  close: async () => {
    await qrexec?.close();
    return {};
  },
});
