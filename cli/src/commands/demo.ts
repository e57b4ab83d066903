import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  compileRuleEntries,
  FirewallEngine,
  type FrameMeta,
  plainMeta,
  V_DROPPED,
  V_FORWARDED,
  V_LOCAL,
  wire,
} from '@moat/firewall';
import { frames } from '@moat/firewall/testing';
import { LabError, runSmoke } from '@moat/lab';
import { decodeInWorker } from '@moat/viewer';
import type { Command } from 'commander';
import { CheckFailed, ExitCode } from '../errors.ts';
import type { Reporter } from '../output.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';
import { ensureDebianPackages } from '../system.ts';
import { labDebianPackages } from './lab.ts';
import { viewAndSave } from './viewer-lab.ts';

const ip = (text: string): Uint8Array => wire.parseIpv4Text(text)!;

/**
 * Part 1: sys-moat's packet engine on the host (sans-IO, the same code the VM will run):
 * a client qube with rules as dom0 writes them to QubesDB, and what happens to its packets.
 */
function firewallPart(reporter: Reporter): void {
  const out: { link: number; bytes: Uint8Array }[] = [];
  const engine = new FirewallEngine(
    {
      uplink: {
        mac: new Uint8Array([0, 0x16, 0x3e, 0x5e, 0x6c, 0]),
        ip4: ip('10.137.0.5'),
        gateway4: ip('10.137.0.1'),
      },
      clientGateway4: ip('10.137.0.5'),
      dns: { virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [ip('10.139.1.1')] },
      rejectWithIcmp: true,
    },
    {
      send: (link, buf, off, len, _meta: FrameMeta) => out.push({ link, bytes: buf.slice(off, off + len) }),
    },
  );
  const work = engine.addClient({
    name: 'work',
    mac: new Uint8Array([0, 0x16, 0x3e, 0x5e, 0x6c, 1]),
    ip4: ip('10.137.0.20'),
  });
  const other = engine.addClient({
    name: 'personal',
    mac: new Uint8Array([0, 0x16, 0x3e, 0x5e, 0x6c, 2]),
    ip4: ip('10.137.0.21'),
  });
  // What `qvm-firewall work add ...` leaves in sys-firewall's QubesDB under /qubes-firewall/10.137.0.20/
  const rules: [string, string][] = [
    ['policy', 'drop'],
    ['0000', 'action=accept specialtarget=dns'],
    ['0001', 'action=accept proto=tcp dst4=93.184.216.0/24 dstports=443-443'],
    ['0002', 'action=accept proto=icmp'],
  ];
  engine.setRuleSet(
    work,
    compileRuleEntries(rules, '10.137.0.20', { dnsServers: [ip('10.139.1.1'), ip('10.139.1.2')] }),
  );
  engine.setRuleSet(other, compileRuleEntries([['policy', 'accept']], '10.137.0.21'));
  engine.tick(0);
  reporter.log(
    `[firewall] rules for qube "work" (QubesDB): ${rules.map(([k, v]) => `${k}: ${v}`).join(' | ')}`,
  );

  const verdicts = {
    [V_DROPPED]: 'dropped',
    [V_FORWARDED]: 'forwarded',
    [V_LOCAL]: 'answered by the firewall',
  };
  const cases: { what: string; spec: Parameters<typeof frames.frame4>[0] }[] = [
    {
      what: 'work -> 93.184.216.34:443 TCP SYN',
      spec: { src: ip('10.137.0.20'), dst: ip('93.184.216.34'), proto: 6, sport: 40000, dport: 443 },
    },
    {
      what: 'work -> 93.184.216.34:80 TCP SYN',
      spec: { src: ip('10.137.0.20'), dst: ip('93.184.216.34'), proto: 6, sport: 40001, dport: 80 },
    },
    {
      what: 'work -> DNS 10.139.1.1:53 UDP',
      spec: { src: ip('10.137.0.20'), dst: ip('10.139.1.1'), proto: 17, sport: 5353, dport: 53 },
    },
    {
      what: 'work -> personal (another client)',
      spec: { src: ip('10.137.0.20'), dst: ip('10.137.0.21'), proto: 6, dport: 22 },
    },
    {
      what: 'work spoofing 10.137.0.99',
      spec: { src: ip('10.137.0.99'), dst: ip('93.184.216.34'), proto: 6, dport: 443 },
    },
    {
      what: 'work pings the firewall',
      spec: { src: ip('10.137.0.20'), dst: ip('10.137.0.5'), proto: 1, icmpType: 8 },
    },
  ];
  for (const { what, spec } of cases) {
    out.length = 0;
    const frame = frames.frame4(spec);
    const verdict = engine.receive(work, frame, 0, frame.length, plainMeta());
    const sent = out.map(({ link, bytes }) => {
      const to = link === 0 ? 'uplink' : link === work ? 'work' : 'personal';
      const icmp = bytes[23] === 1 ? `, ICMP type ${bytes[34]} code ${bytes[35]}` : '';
      return `to ${to} from ${wire.formatIpv4(bytes, 26)}${icmp}`;
    });
    reporter.log(`[firewall] ${what}: ${verdicts[verdict]}${sent.length ? `; sent ${sent.join(', ')}` : ''}`);
  }
  const stats = engine.stats();
  reporter.result('firewall engine (host, sans-IO)', {
    trackedConnections: stats.conntrack.size,
    links: stats.links.map(
      (l) => `${l.name}: ${l.accepted} accepted, ${l.dropped} dropped ${JSON.stringify(l.dropsByReason)}`,
    ),
  });
}

/** Part 2: moat-viewer's decoders: untrusted files decoded in a worker under limits and a deadline. */
async function viewerPart(reporter: Reporter, root: string): Promise<void> {
  const fixtures = join(root, 'viewer', 'fixtures');
  const files = [
    'png/pngsuite/basn6a08.png',
    'gif/gif-test-suite/animated_loop.gif',
    'jpeg/exif-orientation/Landscape_6.jpg',
    'bmp/image-rs/Info_8_Bit.bmp',
    'png/pngsuite/xc1n0g08.png',
    'png/libpng-crashers/huge_IDAT.png',
  ];
  for (const file of files) {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(join(fixtures, file));
    } catch {
      continue;
    }
    const result = await decodeInWorker(bytes);
    if (result.ok) {
      const { image } = result;
      reporter.log(
        `[viewer] ${file}: ${image.format} ${image.width}x${image.height}, ${image.frames.length} frame(s), orientation ${image.orientation}`,
      );
    } else {
      reporter.log(`[viewer] ${file}: refused: ${result.reason}`);
    }
  }
}

export const demoCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    program
      .command('demo')
      .description(
        'the main job today: the firewall engine and image decoders on the host, then real Xen in QEMU running our JS in dom0, a PV and a PVH domU, and an image opened in a moat-viewer VM (window saved as PNG)',
      )
      .option('--no-lab', 'skip the Xen-in-QEMU part')
      .action(
        handler(async (reporter, cmd) => {
          reporter.log(
            'moat demo: what exists today. sys-moat is not a VM yet: its engine runs on the host; then the lab boots, and an image opens in a moat-viewer VM.',
          );
          firewallPart(reporter);
          await viewerPart(reporter, ctx.root);
          if (cmd.opts<{ lab: boolean }>().lab) {
            await ensureDebianPackages(labDebianPackages, (line) => reporter.log(line));
            const progress = reporter.progress('lab', 5);
            try {
              const steps = await runSmoke({
                onStep: (step, index, total) => {
                  reporter.log(`[lab] ${step.name}: ${step.detail} (${(step.ms / 1000).toFixed(1)} s)`);
                  if (index < total) progress.update(index + 1, `after ${step.name}`);
                },
              });
              progress.done(`${steps.length} steps ok`);
            } catch (error) {
              if (error instanceof LabError) throw new CheckFailed(error.message, { step: error.step });
              throw error;
            }
            // moat-viewer as a Qubes user meets it: a file sent with qubes.OpenInVM, shown in a window.
            const sample = join(
              ctx.root,
              'viewer',
              'fixtures',
              'jpeg',
              'exif-orientation',
              'Landscape_6.jpg',
            );
            const png = join(ctx.root, 'dist', 'demo', 'moat-viewer-window.png');
            reporter.log(`[viewer] opening ${sample} in a moat-viewer VM in the lab (qubes.OpenInVM)`);
            await viewAndSave(reporter, { file: sample, png });
            reporter.log(`[viewer] the window as the user sees it is in ${png}`);
          }
          return ExitCode.ok;
        }),
      );
  },
};
