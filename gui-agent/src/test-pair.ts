/** Host test setup: our agent in a sim domU and the lab daemon in sim dom0, over unix-socket vchan. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { type SimDomain, SimHypervisor } from '@moat/xen/sim';
import { GuiAgent, type GuiAgentOptions } from './agent.ts';
import { GuiDaemon, type GuiDaemonOptions } from './daemon/daemon.ts';
import { scenarioPattern } from './lab/scenario.ts';

export interface GuiPair {
  agent: GuiAgent;
  daemon: GuiDaemon;
  hv: SimHypervisor;
  vm: SimDomain;
  directory: string;
  close(): Promise<void>;
}

export async function guiPair(
  options: {
    agent?: Partial<GuiAgentOptions>;
    daemon?: Partial<GuiDaemonOptions>;
    gntallocLimit?: number;
  } = {},
): Promise<GuiPair> {
  const directory = mkdtempSync(join(tmpdir(), 'gui-'));
  const hv = new SimHypervisor({ gntallocLimit: options.gntallocLimit ?? 4096 });
  const vm = hv.createDomain({ name: 'viewer' });
  const agentStarted = GuiAgent.start({
    transport: socketVchanTransport({ directory, localDomain: vm.domid }),
    guiDomain: 0,
    grants: vm.grantSharer,
    ...options.agent,
  });
  const daemon = await GuiDaemon.connect({
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    vmDomain: vm.domid,
    grants: hv.dom0.grantMapper,
    timeoutMs: 10_000,
    ...options.daemon,
  });
  const agent = await agentStarted;
  return {
    agent,
    daemon,
    hv,
    vm,
    directory,
    async close() {
      agent.close();
      daemon.disconnect();
      await Promise.all([agent.ended, daemon.ended]);
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A w × h RGBA test pattern (the lab scenario's). */
export const testPattern = scenarioPattern;

export async function nextEvent<T>(iterator: AsyncIterator<T>, timeoutMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no event within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const result = await Promise.race([iterator.next(), timeout]);
    if (result.done) throw new Error('the event iterator ended');
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}
