/**
 * One call to bring up a VM's qrexec agent with the built-in services, for a VM's main or a
 * plain node script in the lab:
 *
 *   const { agent, clock } = await startAgent({ transport: xenVchanTransport(openNativeDomain()) });
 *   agent.handle('qubes.OpenInVM', async (call) => { ... return 0; });
 */
import type { VchanTransport } from '@moat/vchan';
import { QrexecAgent } from './agent.ts';
import { type BuiltinOptions, registerBuiltinServices } from './builtins.ts';
import { AdjustableClock } from './clock.ts';
import type { Log } from './service.ts';

export interface StartAgentOptions extends Partial<BuiltinOptions> {
  transport: VchanTransport;
  daemonDomain?: number;
  sessionReady?: () => Promise<void>;
  connectTimeoutMs?: number;
  log?: Log;
  /** Wait until dom0 has connected and HELLO is done (default false: return once listening). */
  waitForDom0?: boolean;
}

export async function startAgent(
  options: StartAgentOptions,
): Promise<{ agent: QrexecAgent; clock: AdjustableClock }> {
  const clock = options.clock ?? new AdjustableClock();
  const agentOptions: ConstructorParameters<typeof QrexecAgent>[0] = { transport: options.transport };
  if (options.daemonDomain !== undefined) agentOptions.daemonDomain = options.daemonDomain;
  if (options.sessionReady) agentOptions.sessionReady = options.sessionReady;
  if (options.connectTimeoutMs !== undefined) agentOptions.connectTimeoutMs = options.connectTimeoutMs;
  if (options.log) agentOptions.log = options.log;
  const agent = new QrexecAgent(agentOptions);
  registerBuiltinServices(agent, { ...options, clock });
  await agent.start();
  if (options.waitForDom0) await agent.connected();
  return { agent, clock };
}
