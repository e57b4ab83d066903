export { buildGuestAddon, GUEST_ADDON_PATH, type GuestAddon } from './addon.ts';
export { bundleEntry } from './bundle.ts';
export type { AgentCommand, AgentEvent } from './control.ts';
export { buildDom0Image, type Dom0Image } from './dom0-image.ts';
export { LabError, LabTimeout } from './errors.ts';
export {
  DEMO_RULES_AFTER,
  DEMO_RULES_BEFORE,
  type FirewallDemoRun,
  type FirewallDemoTry,
  runFirewallDemo,
} from './firewall-demo.ts';
export {
  type ClientVifSpec,
  clientVifPlan,
  type MemorySweepOptions,
  type MemorySweepPoint,
  type MemorySweepReport,
  memorySweep,
  pingEachVif,
  plugClientVifs,
  SWEEP_RULES,
  startSilentFrontend,
  startVifClients,
  unplugClientVifs,
  type VifClient,
  type VifPing,
} from './firewall-life.ts';
export {
  type FirewallContext,
  type FirewallVm,
  firewallQubesDbEntries,
  firewallVm,
  MoatFirewallVm,
  type MoatTemplateBoot,
  type MoatVmOptions,
  moatRulesLine,
} from './firewall-vm.ts';
export { guestImage } from './guest-image.ts';
export { expectGuestOk, GuestHandle, type GuestRun } from './guest-run.ts';
export {
  bootLab,
  type DomUOptions,
  type Lab,
  type LabOptions,
  type LabTimings,
  type VifSpec,
  vifSpecParts,
} from './lab.ts';
export { buildLinuxImage, LINUX_GUEST, type LinuxGuestImage, linuxUserlandPins } from './linux-image.ts';
export {
  type MoatMemoryBreakdown,
  type MoatStats,
  type MoatStatsDoc,
  memoryBreakdown,
  moatStats,
} from './moat-stats.ts';
export { encodeMessage, type GuestMessage, type GuestResult, LINE_PREFIX, parseLine } from './protocol.ts';
export { fetchPvhGrub, type PvhGrubBoot, pvhGrubBoot } from './pvh-grub.ts';
export { qemuArgs } from './qemu.ts';
export { type QubesVmSpec, qubesDbEntries, qubesFirewallEntries } from './qubesdb-keys.ts';
export {
  compareRuns,
  type Expectation,
  expectationFor,
  outcomeMeets,
  parseScenario,
  SCENARIO_FIREWALLS,
  SCENARIO_VERSION,
  type Scenario,
  type ScenarioFirewall,
  type ScenarioStep,
  type StepReport,
} from './scenario.ts';
export { judgeProbe, runScenario, type ScenarioRun, type ScenarioRunOptions } from './scenario-run.ts';
export { type LabSession, labSession } from './shared-lab.ts';
export { checkSmokeRun, runSmoke, SMOKE_GUEST, type SmokeStep, smokeExpectedSum } from './smoke.ts';
export {
  attachVif,
  bridgeVif,
  type CommandVm,
  type CommandVmOptions,
  detachVif,
  detachVifs,
  hotplugRetries,
  type LinuxVm,
  type LinuxVmOptions,
  listVifs,
  memAvailableMiB,
  meminfoAvailableMiB,
  netvmVif,
  type QubesDbService,
  qubesMac,
  serveQubesDb,
  startCommandVm,
  startLinuxVm,
  xenstoreCount,
} from './topology.ts';
export { type LinuxCommand, type LinuxGuestArgs, NETVM_PORTS, type ProbeOutcome } from './topology-wire.ts';
export {
  buildVchanGuest,
  domainId,
  interopPlan,
  startVchanRun,
  VCHAN_GUEST,
  type VchanGuest,
  type VchanPlan,
  type VchanRun,
} from './vchan-lab.ts';
export { patternSha256, type VchanTask } from './vchan-roles.ts';
export {
  buildViewerImage,
  startViewerRun,
  VIEWER_WORKER_PATH,
  type ViewerRun,
  type ViewerRunOptions,
} from './viewer-lab.ts';
export {
  benchViewer,
  openInViewer,
  parseMemoryLines,
  type ViewerBench,
  type ViewerMemory,
  type ViewOutcome,
  type ViewRequest,
  viewInLab,
  withViewerLab,
} from './viewer-view.ts';
export type { ViewerDestroyResult, ViewerOpenResult, ViewerRgbaResult } from './viewer-wire.ts';
export { buildPenaltyWorkload, xenGuestFiles } from './xen-guest-files.ts';
