/**
 * @moat/qrexec: the qrexec VM agent (protocol 3) with services written in TypeScript, its
 * built-in Qubes services. The dom0 side for the lab is `@moat/qrexec/dom0`; the agent and dom0
 * entry points of `src/bin/` with the lab's test services are `@moat/qrexec/run`.
 */
export {
  type AgentOptions,
  type AgentStats,
  type OutgoingCall,
  QrexecAgent,
  type ServiceOptions,
} from './agent.ts';
export {
  BUILTIN_SERVICES,
  type BuiltinOptions,
  type FeatureRequestStore,
  registerBuiltinServices,
} from './builtins.ts';
export { type CallInput, type CallResult, DEFAULT_MAX_OUTPUT } from './caller.ts';
export { AdjustableClock, type Clock, formatTimestamp, parseTimestamp } from './clock.ts';
export { formatRpcCommandLine, parseRpcCommandLine, type RpcCommand } from './command.ts';
export { type ProtocolReason, QrexecProtocolError, QrexecRefusedError, QrexecStateError } from './errors.ts';
export type { Log, ServiceCall, ServiceHandler } from './service.ts';
export { type StartAgentOptions, startAgent } from './start.ts';
export * as wire from './wire.ts';
