/**
 * The qrexec agent as sys-moat runs it: the built-in services dom0 calls (qubes.WaitForSession,
 * PostInstall's feature requests through QubesDB, SetDateTime, ...), then the VM's own services,
 * then listening on the control vchan.
 */

import { AdjustableClock, QrexecAgent, registerBuiltinServices } from '@moat/qrexec';
import type { QubesDb } from '@moat/qubesdb';
import type { VchanTransport } from '@moat/vchan';
import type { VmLog } from './log.ts';

/** qubes.PostInstall's feature requests: a qrexec agent, nothing else of a Linux VM's. */
export const FEATURES = { qrexec: '1' } as const;

export function agentStarter(
  transport: VchanTransport,
  db: QubesDb,
  log: VmLog,
  options: { connectTimeoutMs?: number } = {},
): (register: (agent: QrexecAgent) => void) => Promise<QrexecAgent> {
  return async (register) => {
    const agent = new QrexecAgent({
      transport,
      log: (level, message) => log[level](`qrexec: ${message}`),
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
    });
    registerBuiltinServices(agent, { clock: new AdjustableClock(), features: { ...FEATURES }, qubesdb: db });
    register(agent);
    await agent.start();
    return agent;
  };
}
