import type { CommandModule } from '../program.ts';
import { buildCommand } from './build.ts';
import { bundleSizeCommand } from './bundle-size.ts';
import { demoCommand } from './demo.ts';
import { firewallCommand } from './firewall.ts';
import { labCommand } from './lab.ts';
import { labBenchCommand } from './lab-bench.ts';
import { netifBenchCommand } from './netif-bench.ts';
import { netifFuzzCommand } from './netif-fuzz.ts';
import { packageCommand } from './package.ts';
import { qrexecCommand } from './qrexec.ts';
import { qubesdbCommand } from './qubesdb.ts';
import { testCommand } from './test.ts';
import { viewerCommand } from './viewer.ts';
import { xenCommand } from './xen.ts';
import { xenstoreCommand } from './xenstore.ts';

/** Every command module; each package's issue adds its own here. */
export const commandModules: readonly CommandModule[] = [
  demoCommand,
  testCommand,
  xenCommand,
  viewerCommand,
  netifFuzzCommand,
  netifBenchCommand,
  firewallCommand,
  qubesdbCommand,
  qrexecCommand,
  xenstoreCommand,
  labCommand,
  labBenchCommand,
  bundleSizeCommand,
  packageCommand,
  buildCommand,
];
