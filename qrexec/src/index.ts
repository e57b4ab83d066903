/**
 * @moat/qrexec: the qrexec VM agent (protocol 3) with services written in TypeScript, its
 * built-in Qubes services, and the dom0 side (daemon + client + policy hook) for the lab.
 */
export {
  type AgentOptions,
  type AgentStats,
  type OutgoingCall,
  QrexecAgent,
  type ServiceOptions,
} from './agent.ts';
export { measureQrexec, type QrexecBenchReport } from './bench.ts';
export {
  BUILTIN_SERVICES,
  type BuiltinOptions,
  type FeatureRequestStore,
  registerBuiltinServices,
} from './builtins.ts';
export { type CallInput, type CallResult, DEFAULT_MAX_OUTPUT } from './caller.ts';
export { type AgentCheck, checkAgent } from './checks.ts';
export { AdjustableClock, type Clock, formatTimestamp, parseTimestamp } from './clock.ts';
export { formatRpcCommandLine, parseRpcCommandLine, type RpcCommand } from './command.ts';
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
export { type ProtocolReason, QrexecProtocolError, QrexecRefusedError, QrexecStateError } from './errors.ts';
export { registerTestServices, runAgentMain, runDom0Main } from './run.ts';
export type { Log, ServiceCall, ServiceHandler } from './service.ts';
export { type StartAgentOptions, startAgent } from './start.ts';
export * as wire from './wire.ts';
