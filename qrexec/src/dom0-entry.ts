/**
 * `@moat/qrexec/dom0`: dom0's side for the lab and host tests (qrexec-daemon, qrexec-client and
 * the policy hook for one VM), and the checks it runs against an agent.
 */
export { type AgentCheck, checkAgent } from './checks.ts';
export {
  type Dom0CallOptions,
  type Dom0CallResult,
  type Dom0DaemonOptions,
  type Dom0Service,
  type Dom0ServiceResult,
  type PolicyDecision,
  QrexecDaemon,
  type Stdin,
  type TriggerPolicy,
  type TriggerRequest,
} from './dom0.ts';
