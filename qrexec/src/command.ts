/**
 * The command line dom0 sends in MSG_EXEC_CMDLINE / MSG_JUST_EXEC:
 * `<user>:[nogui:]QUBESRPC <service>[+<arg>] <source>[ <target-type> <target>]`
 * (QubesOS/qubes-core-qrexec @ b2822df6fc22 `libqrexec/exec.c` `parse_qubes_rpc_command`).
 *
 * Only the RPC form is ever accepted here: the legacy form is a shell command line, and moat
 * VMs have no shell to run it with.
 */
import {
  MAX_SERVICE_FILE_NAME_LEN,
  MAX_SERVICE_NAME_LEN,
  NOGUI_CMD_PREFIX,
  RPC_REQUEST_COMMAND,
} from './wire.ts';

export interface RpcCommand {
  /** The user policy chose (`user`, `root`, ...); we run every service as ourselves. */
  user: string;
  /** `nogui:` prefix: the caller asked not to wait for a GUI session. */
  nogui: boolean;
  /** The service name, e.g. `qubes.OpenInVM`. */
  service: string;
  /** The argument after `+` (empty when there was none or it was empty). */
  argument: string;
  /** `service+arg`, with a trailing `+` when the call had no argument (as the C agent builds it). */
  descriptor: string;
  /** The calling domain's name (`dom0`, a VM name). */
  sourceDomain: string;
  /** The optional `<target-type> <target>` pair (only on calls whose target is dom0). */
  requestedTarget?: { type: string; target: string };
}

export type CommandParseReason =
  | 'no-colon'
  | 'not-rpc'
  | 'no-space-after-qubesrpc'
  | 'no-space-after-descriptor'
  | 'empty-descriptor'
  | 'descriptor-too-long'
  | 'service-name-too-long'
  | 'empty-service-name'
  | 'empty-source-domain';

export type ParsedCommand = { ok: true; value: RpcCommand } | { ok: false; reason: CommandParseReason };

const bad = (reason: CommandParseReason): ParsedCommand => ({ ok: false, reason });

export function parseRpcCommandLine(cmdline: string): ParsedCommand {
  const colon = cmdline.indexOf(':');
  if (colon < 0) return bad('no-colon');
  const user = cmdline.slice(0, colon);
  let rest = cmdline.slice(colon + 1);
  const nogui = rest.startsWith(NOGUI_CMD_PREFIX);
  if (nogui) rest = rest.slice(NOGUI_CMD_PREFIX.length);
  if (!rest.startsWith(RPC_REQUEST_COMMAND)) return bad('not-rpc');
  if (rest[RPC_REQUEST_COMMAND.length] !== ' ') return bad('no-space-after-qubesrpc');
  rest = rest.slice(RPC_REQUEST_COMMAND.length + 1);
  const end = rest.indexOf(' ');
  if (end < 0) return bad('no-space-after-descriptor');
  if (end === 0) return bad('empty-descriptor');
  if (end > MAX_SERVICE_NAME_LEN) return bad('descriptor-too-long');
  const rawDescriptor = rest.slice(0, end);
  const plus = rawDescriptor.indexOf('+');
  const service = plus < 0 ? rawDescriptor : rawDescriptor.slice(0, plus);
  if (service.length > MAX_SERVICE_FILE_NAME_LEN) return bad('service-name-too-long');
  if (service.length === 0) return bad('empty-service-name');
  const argument = plus < 0 ? '' : rawDescriptor.slice(plus + 1);
  const tokens = rest.slice(end + 1).split(' ');
  const sourceDomain = tokens[0] ?? '';
  if (sourceDomain.length === 0) return bad('empty-source-domain');
  const value: RpcCommand = {
    user,
    nogui,
    service,
    argument,
    descriptor: plus < 0 ? `${rawDescriptor}+` : rawDescriptor,
    sourceDomain,
  };
  if (tokens.length >= 3) value.requestedTarget = { type: tokens[1] ?? '', target: tokens[2] ?? '' };
  return { ok: true, value };
}

/** What dom0 sends for a call: `user:QUBESRPC service+arg source` (a bare `+` when no argument). */
export function formatRpcCommandLine(call: {
  user: string;
  service: string;
  argument?: string;
  sourceDomain: string;
  nogui?: boolean;
}): string {
  return `${call.user}:${call.nogui ? NOGUI_CMD_PREFIX : ''}${RPC_REQUEST_COMMAND} ${call.service}+${call.argument ?? ''} ${call.sourceDomain}`;
}
