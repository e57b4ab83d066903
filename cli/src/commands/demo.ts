import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLASS_IN,
  ClientRules,
  decodeMessage,
  emptyHeader,
  encodeMessage,
  FirewallEngine,
  type FrameMeta,
  plainMeta,
  TYPE_A,
  UPLINK,
  V_DROPPED,
  V_FORWARDED,
  V_LOCAL,
  V_REJECTED,
  wire,
} from '@moat/firewall';
import { frames } from '@moat/firewall/testing';
import {
  bootLab,
  buildGuestAddon,
  buildLinuxImage,
  buildViewerImage,
  type FirewallDemoTry,
  openInViewer,
  runFirewallDemo,
} from '@moat/lab';
import { buildFirewallImage } from '@moat/unikernel';
import { decodeInWorker } from '@moat/viewer';
import type { Command } from 'commander';
import { CheckFailed, ExitCode } from '../errors.ts';
import type { Reporter } from '../output.ts';
import { type CliContext, type CommandModule, handler } from '../program.ts';
import { ensureDebianPackages } from '../system.ts';
import { labDebianPackages } from './lab.ts';
import { labFailure } from './lab-bench.ts';
import { writeShotPng } from './viewer-lab.ts';

const ip = (text: string): Uint8Array => wire.parseIpv4Text(text)!;

/**
 * `--no-lab`: sys-moat's packet engine on the host (sans-IO, the same code the VM runs):
 * a client qube with rules as dom0 writes them to QubesDB, given to the library's entry
 * point (ClientRules) as the VM will give them; its `dsthost` name is resolved by the
 * firewall's own resolver through the uplink, answered here by a stand-in upstream DNS.
 */
function firewallPart(reporter: Reporter): void {
  const out: { link: number; bytes: Uint8Array }[] = [];
  const upstreamDns = ip('10.139.1.1');
  const engine = new FirewallEngine(
    {
      uplink: {
        mac: new Uint8Array([0, 0x16, 0x3e, 0x5e, 0x6c, 0]),
        ip4: ip('10.137.0.5'),
        gateway4: ip('10.137.0.1'),
      },
      clientGateway4: ip('10.137.0.5'),
      dns: { virtual: [ip('10.139.1.1'), ip('10.139.1.2')], upstream: [upstreamDns] },
      rejectWithIcmp: true,
    },
    {
      send: (link, buf, off, len, _meta: FrameMeta) => out.push({ link, bytes: buf.slice(off, off + len) }),
    },
  );
  const now = 0;
  const clock = {
    nowMs: () => now,
    wallSeconds: () => Math.floor(Date.now() / 1000),
    setTimer: () => () => {},
  };
  const logs: string[] = [];
  const rules = new ClientRules({ engine, clock, log: (line) => logs.push(line) });
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
  const entries: [string, string][] = [
    ['/qubes-firewall/10.137.0.20/policy', 'drop'],
    ['/qubes-firewall/10.137.0.20/0000', 'action=accept specialtarget=dns'],
    ['/qubes-firewall/10.137.0.20/0001', 'action=accept proto=tcp dst4=93.184.216.0/24 dstports=443-443'],
    ['/qubes-firewall/10.137.0.20/0002', 'action=accept proto=tcp dsthost=updates.example dstports=443-443'],
    ['/qubes-firewall/10.137.0.20/0003', 'action=accept proto=icmp'],
  ];
  rules.update('10.137.0.20', entries);
  rules.update('10.137.0.21', [['policy', 'accept']]);
  engine.tick(now);
  answerDns(engine, out, upstreamDns, ip('198.51.100.80'));
  reporter.log(
    `[firewall] rules for qube "work" (QubesDB): ${entries.map(([k, v]) => `${k.split('/').at(-1)}: ${v}`).join(' | ')}`,
  );
  for (const line of logs) reporter.log(`[firewall] ${line}`);
  reporter.log(
    `[firewall] updates.example resolved through the uplink: ${[...(rules.status('10.137.0.20')?.resolvedHosts.get('updates.example') ?? [])].map((a) => wire.formatIpv4(a, 0)).join(', ')}`,
  );

  const verdicts = {
    [V_DROPPED]: 'dropped',
    [V_REJECTED]: 'rejected',
    [V_FORWARDED]: 'forwarded',
    [V_LOCAL]: 'answered by the firewall',
  };
  const cases: { what: string; spec: Parameters<typeof frames.frame4>[0] }[] = [
    {
      what: 'work -> 93.184.216.34:443 TCP SYN',
      spec: { src: ip('10.137.0.20'), dst: ip('93.184.216.34'), proto: 6, sport: 40000, dport: 443 },
    },
    {
      what: 'work -> updates.example (198.51.100.80):443 TCP SYN',
      spec: { src: ip('10.137.0.20'), dst: ip('198.51.100.80'), proto: 6, sport: 40002, dport: 443 },
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
      const to =
        link === 0 ? 'uplink' : link === work ? 'work' : link === other ? 'personal' : `link ${link}`;
      const icmp = bytes[23] === 1 ? `, ICMP type ${bytes[34]} code ${bytes[35]}` : '';
      return `to ${to} from ${wire.formatIpv4(bytes, 26)}${icmp}`;
    });
    reporter.log(`[firewall] ${what}: ${verdicts[verdict]}${sent.length ? `; sent ${sent.join(', ')}` : ''}`);
  }
  const stats = engine.stats();
  rules.close();
  reporter.result('firewall engine (host, sans-IO)', {
    trackedConnections: stats.conntrack.size,
    links: stats.links.map(
      (l) => `${l.name}: ${l.accepted} accepted, ${l.dropped} dropped ${JSON.stringify(l.dropsByReason)}`,
    ),
  });
}

/** The stand-in upstream DNS: answers each A query the firewall sent on the uplink with `address`. */
function answerDns(
  engine: FirewallEngine,
  out: { link: number; bytes: Uint8Array }[],
  server: Uint8Array,
  address: Uint8Array,
): void {
  const queries = out.splice(0).filter(({ link, bytes }) => link === UPLINK && bytes[23] === 17);
  for (const { bytes } of queries) {
    const payload = bytes.slice(42, 14 + ((bytes[16]! << 8) | bytes[17]!));
    const query = decodeMessage(payload);
    if (!query.ok) continue;
    const answer = encodeMessage({
      header: { ...emptyHeader(query.message.header.id), qr: true, rd: true, ra: true },
      questions: query.message.questions,
      answers: query.message.questions.map((q) => ({
        name: q.name,
        type: TYPE_A,
        class: CLASS_IN,
        ttl: 300,
        data: { kind: 'a' as const, address },
      })),
      authorities: [],
      additionals: [],
    });
    const reply = frames.frame4({
      src: server,
      dst: bytes.slice(26, 30),
      proto: 17,
      sport: 53,
      dport: (bytes[34]! << 8) | bytes[35]!,
      payload: answer,
      srcMac: bytes.slice(0, 6),
      dstMac: bytes.slice(6, 12),
    });
    engine.receive(UPLINK, reply, 0, reply.length, plainMeta());
  }
}

/** moat-viewer's decoders on the host: untrusted files decoded in a worker under limits and a deadline. */
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

/**
 * The lab part: one boot of real Xen in QEMU for both VMs. sys-moat between a Linux client and a
 * Linux netvm (lab/src/firewall-demo.ts: every line printed comes from the client's probes and
 * sys-moat's console), then moat-viewer opening a photo sent with qubes.OpenInVM.
 */
async function labPart(reporter: Reporter, root: string): Promise<void> {
  const progress = reporter.progress('lab', 4);
  progress.update(1, 'building the images (Xen addon, Linux guest, sys-moat, moat-viewer)');
  const addon = await buildGuestAddon();
  const linux = await buildLinuxImage();
  const firewall = await buildFirewallImage();
  const viewer = await buildViewerImage(addon);
  progress.update(2, 'booting Xen in QEMU');
  const lab = await bootLab({ addon, bootTimeoutMs: 1_200_000 }).catch(labFailure);
  try {
    reporter.log(`[lab] Xen 4.17 booted in QEMU in ${(lab.timings.bootMs / 1000).toFixed(1)} s`);
    progress.update(3, 'sys-moat between a Linux client and a Linux netvm');
    const run = await runFirewallDemo(lab, { linux: linux.image, firewall: firewall.image }, (line) =>
      reporter.log(`[sys-moat demo] ${line}`),
    ).catch(labFailure);
    const outcome = (t: FirewallDemoTry) => String(t.client.outcome);
    reporter.result('sys-moat in the lab (Linux client -> sys-moat -> Linux netvm; emulated)', {
      before: run.before.map((t) => `${t.what}: ${outcome(t)}`),
      afterRuleChange: run.after.map((t) => `${t.what}: ${outcome(t)}`),
      secondsToNetvm: run.timings.netvmUpS,
      secondsToSysMoatUplink: run.timings.moatUplinkUpS,
      secondsToClient: run.timings.clientUpS,
    });

    progress.update(4, 'moat-viewer: a photo sent with qubes.OpenInVM');
    // moat-viewer as a Qubes user meets it: a file sent with qubes.OpenInVM, shown in a window.
    const sample = join(root, 'viewer', 'fixtures', 'jpeg', 'exif-orientation', 'Landscape_6.jpg');
    const png = join(root, 'dist', 'demo', 'moat-viewer-window.png');
    reporter.log(`[viewer] opening ${sample} in a moat-viewer VM in the lab (qubes.OpenInVM)`);
    const { outcomes, memory } = await openInViewer(lab, viewer, {
      vmName: 'moat-viewer-demo',
      memoryMb: 400,
      requests: [{ file: sample }],
    }).catch(labFailure);
    const shot = outcomes[0]?.shots.at(-1);
    if (!shot) throw new CheckFailed('moat-viewer showed no window');
    await writeShotPng(shot, png);
    reporter.result('moat-viewer window (lab)', {
      title: shot.title,
      size: `${shot.width}x${shot.height}`,
      png,
      callToFirstFrameMs: outcomes[0]!.result.firstFrameMs,
      vmMemory: memory[0]
        ? `node rss ${memory[0].rssMiB} MiB, VM used ${memory[0].usedMiB} of ${memory[0].totalMiB} MiB`
        : 'n/a',
    });
    reporter.log(`[viewer] the window as the user sees it is in ${png}`);
    progress.done('sys-moat and moat-viewer ran in the lab');
  } finally {
    await lab.shutdown();
  }
}

export const demoCommand: CommandModule = {
  register(program: Command, ctx: CliContext) {
    program
      .command('demo')
      .description(
        'the main job: in one boot of real Xen in QEMU, sys-moat between a Linux client qube and a Linux netvm (what the client tries, what sys-moat decided and by which rule, a rule change at run time), then a photo opened in a moat-viewer VM (window saved as PNG); the image decoders run on the host first',
      )
      .option('--no-lab', "skip Xen in QEMU: run sys-moat's packet engine on the host instead")
      .action(
        handler(async (reporter, cmd) => {
          await viewerPart(reporter, ctx.root);
          if (!cmd.opts<{ lab: boolean }>().lab) {
            reporter.log(
              "moat demo --no-lab: sys-moat's packet engine on the host (sans-IO, the code the VM runs), no Xen.",
            );
            firewallPart(reporter);
            return ExitCode.ok;
          }
          await ensureDebianPackages(labDebianPackages, (line) => reporter.log(line));
          await labPart(reporter, ctx.root);
          return ExitCode.ok;
        }),
      );
  },
};
