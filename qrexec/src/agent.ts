/**
 * The qrexec agent of a moat VM (protocol 3, against a dom0 that speaks 4): control vchan
 * server on port 512 for dom0, HELLO, MSG_EXEC_CMDLINE / MSG_JUST_EXEC / MSG_SERVICE_CONNECT /
 * MSG_SERVICE_REFUSED, a data vchan client per call, MSG_CONNECTION_TERMINATED after each,
 * and VM-initiated calls with MSG_TRIGGER_SERVICE3 (QubesOS/qubes-core-qrexec @ b2822df6fc22
 * `agent/qrexec-agent.c`, `agent/qrexec-agent-data.c`).
 *
 * Services are TypeScript functions registered with `handle()`. No shell, no process is ever
 * spawned: a command line that is not `QUBESRPC <service>[+arg] <source>` is refused.
 */
import { type Duplex, PassThrough, Writable } from 'node:stream';
import type { VchanStream, VchanTransport } from '@moat/vchan';
import { type CallInput, type CallResult, runCall } from './caller.ts';
import { parseRpcCommandLine, type RpcCommand } from './command.ts';
import { QrexecProtocolError, QrexecRefusedError, QrexecStateError } from './errors.ts';
import { accepted, closeStream, FrameReader, FrameWriter, withdrawIfWaiting } from './frames.ts';
import {
  justExecOnDataChannel,
  type Log,
  refuseOnDataChannel,
  type ServiceHandler,
  type ServiceSessionOptions,
  serveCall,
  serviceCall,
} from './service.ts';
import {
  AGENT_PROTOCOL_VERSION,
  CONTROL_RING_SIZE,
  checkHeader,
  DATA_RING_SIZE,
  decodePayload,
  EXIT_PROBLEM,
  EXIT_REQUEST_REFUSED,
  EXIT_SERVICE_NOT_FOUND,
  encodeMessage,
  type Message,
  MIN_PROTOCOL_VERSION,
  MsgType,
  type RequestId,
  requestIdFromText,
  requestIdText,
  VCHAN_BASE_PORT,
} from './wire.ts';

export interface ServiceOptions {
  /**
   * Wait for the GUI session before serving (Qubes' `wait-for-session=1` in the service's
   * rpc-config, e.g. qubes.OpenInVM); skipped when dom0 sent the `nogui:` prefix.
   */
  waitForSession?: boolean;
}

export interface AgentOptions {
  /** How to reach dom0 and other VMs: `xenVchanTransport(domain)` in a VM (`@moat/vchan`). */
  transport: VchanTransport;
  /** The domain running qrexec-daemon (0; a GUI/admin domain in split setups). */
  daemonDomain?: number;
  /** Resolves when the GUI session is up (qubes.WaitForSession); default: at once (no GUI). */
  sessionReady?: () => Promise<void>;
  /** How long to wait for a caller's data vchan (Linux: 120 s `connection_timeout`). */
  connectTimeoutMs?: number;
  /** Recreate the control server after dom0 disconnects or misbehaves (as a restarted agent would). */
  restart?: boolean;
  log?: Log;
}

export interface AgentStats {
  calls: number;
  refused: number;
  connectionErrors: number;
  controlErrors: number;
  outgoingCalls: number;
}

export interface OutgoingCall {
  /** Service argument (sent as `service+argument`). */
  argument?: string;
  stdin?: CallInput;
  maxOutputBytes?: number;
}

interface PendingTrigger {
  target: string;
  service: string;
  resolve: (connect: { connectDomain: number; connectPort: number }) => void;
  reject: (e: Error) => void;
}

const defaultLog: Log = (level, message) => {
  if (level !== 'info') process.stderr.write(`qrexec-agent ${level}: ${message}\n`);
};

export class QrexecAgent {
  readonly stats: AgentStats = {
    calls: 0,
    refused: 0,
    connectionErrors: 0,
    controlErrors: 0,
    outgoingCalls: 0,
  };
  private readonly services = new Map<string, { handler: ServiceHandler; options: ServiceOptions }>();
  private readonly transport: VchanTransport;
  private readonly daemonDomain: number;
  private readonly log: Log;
  private readonly connectTimeoutMs: number;
  private readonly sessionReady: () => Promise<void>;
  private readonly restart: boolean;
  /** The control server while it waits for dom0. */
  private listener: VchanStream | undefined;
  private control: { stream: Duplex; writer: FrameWriter } | undefined;
  private readonly pending = new Map<string, PendingTrigger>();
  private readonly sessions = new Set<Promise<void>>();
  private nextRequest = 1;
  private stopped = false;
  private connectedWaiters: Array<() => void> = [];
  private controlQueue: Promise<void> = Promise.resolve();

  constructor(options: AgentOptions) {
    this.transport = options.transport;
    this.daemonDomain = options.daemonDomain ?? 0;
    this.log = options.log ?? defaultLog;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 120_000;
    this.sessionReady = options.sessionReady ?? (() => Promise.resolve());
    this.restart = options.restart ?? true;
  }

  /** Registers a service, e.g. `agent.handle('qubes.OpenInVM', async (call) => 0)`. */
  handle(service: string, handler: ServiceHandler, options: ServiceOptions = {}): this {
    this.services.set(service, { handler, options });
    return this;
  }

  /** The registered service names. */
  serviceNames(): string[] {
    return [...this.services.keys()].sort();
  }

  /** Waits until the GUI session is up (what qubes.WaitForSession reports). */
  waitForSession(): Promise<void> {
    return this.sessionReady();
  }

  /** Advertises the control channel (port 512) for dom0; resolves once dom0 may connect. */
  async start(): Promise<void> {
    if (this.stopped) throw new QrexecStateError('agent start', 'agent stopped');
    await this.listenControl();
  }

  /** Resolves once dom0 has connected and the HELLO exchange is done. */
  connected(): Promise<void> {
    if (this.control) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  get isConnected(): boolean {
    return this.control !== undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    withdrawIfWaiting(this.listener);
    if (this.control) closeStream(this.control.stream);
    this.control = undefined;
    for (const p of this.pending.values()) p.reject(new QrexecStateError('agent', 'stopped'));
    this.pending.clear();
    await Promise.allSettled([...this.sessions]);
  }

  /**
   * Calls `service` in `target` (`dom0`, `@default`, `@dispvm`, a VM name) through dom0's
   * policy, like `qrexec-client-vm target service+arg`. Rejects with QrexecRefusedError when
   * dom0 refuses (qrexec-client-vm would exit 126).
   */
  async call(target: string, service: string, options: OutgoingCall = {}): Promise<CallResult> {
    const control = this.control;
    if (!control) throw new QrexecStateError('qrexec call', 'not connected to dom0');
    const ident = `MOAT${this.nextRequest++}`;
    const serviceName = options.argument === undefined ? service : `${service}+${options.argument}`;
    this.stats.outgoingCalls++;
    const connect = new Promise<{ connectDomain: number; connectPort: number }>((resolve, reject) => {
      this.pending.set(ident, { target, service: serviceName, resolve, reject });
    });
    try {
      await this.sendControl({
        kind: 'trigger-service3',
        targetDomain: target,
        requestId: requestIdFromText(ident),
        serviceName,
      });
    } catch (e) {
      this.pending.delete(ident);
      throw e;
    }
    const { connectDomain, connectPort } = await connect;
    // We are the data-vchan server for (target domain, port); the service side connects to us.
    let listener: VchanStream | undefined;
    try {
      listener = await this.transport.listen({
        peer: connectDomain,
        port: connectPort,
        readMin: DATA_RING_SIZE,
        writeMin: DATA_RING_SIZE,
      });
      const waiting = listener;
      const stream = await withTimeout(accepted(waiting), this.connectTimeoutMs, () => {
        withdrawIfWaiting(waiting);
        return new QrexecProtocolError(
          'outgoing call',
          'timeout',
          `no connection on ${connectDomain}:${connectPort}`,
        );
      });
      const callOptions: Parameters<typeof runCall>[0] = {
        stream,
        connectDomain,
        connectPort,
        log: this.log,
      };
      if (options.stdin !== undefined) callOptions.stdin = options.stdin;
      if (options.maxOutputBytes !== undefined) callOptions.maxOutputBytes = options.maxOutputBytes;
      return await runCall(callOptions);
    } finally {
      withdrawIfWaiting(listener);
      this.terminated(connectDomain, connectPort);
    }
  }

  // ---- control channel --------------------------------------------------------------------------

  private async listenControl(): Promise<void> {
    const listener = await this.transport.listen({
      peer: this.daemonDomain,
      port: VCHAN_BASE_PORT,
      readMin: CONTROL_RING_SIZE,
      writeMin: CONTROL_RING_SIZE,
    });
    this.listener = listener;
    accepted(listener).then(
      (stream) => this.track(this.runControl(stream)),
      (e: unknown) => {
        if (!this.stopped)
          this.log('error', `control listen failed: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
  }

  private async runControl(stream: Duplex): Promise<void> {
    const op = 'agent control channel';
    const reader = new FrameReader(stream, op, this.daemonDomain);
    const writer = new FrameWriter(stream, op, this.daemonDomain);
    try {
      // The agent speaks first (handle_handshake); qrexec-daemon replies (echoing our version).
      await writer.write(encodeMessage({ kind: 'hello', version: AGENT_PROTOCOL_VERSION }));
      const frame = await reader.read((h) =>
        h.type === MsgType.HELLO
          ? checkHeader(h, 'control-from-daemon', 0)
          : { ok: false, reason: 'unexpected-type' },
      );
      if (!frame) throw new QrexecProtocolError(op, 'early-eof', 'before HELLO', this.daemonDomain);
      const hello = decodePayload(frame.type, frame.payload);
      if (!hello.ok || hello.value.kind !== 'hello') throw new QrexecProtocolError(op, 'bad-length', 'HELLO');
      const version = Math.min(hello.value.version, AGENT_PROTOCOL_VERSION);
      if (version < MIN_PROTOCOL_VERSION) {
        throw new QrexecProtocolError(
          op,
          'bad-version',
          `dom0 version ${hello.value.version}`,
          this.daemonDomain,
        );
      }
      this.control = { stream, writer };
      for (const wake of this.connectedWaiters.splice(0)) wake();
      for (;;) {
        const next = await reader.read((h) => checkHeader(h, 'control-from-daemon', version));
        if (!next) {
          this.log('info', `${op}: dom0 closed the control channel`);
          break;
        }
        const decoded = decodePayload(next.type, next.payload);
        if (!decoded.ok)
          throw new QrexecProtocolError(op, decoded.reason, decoded.detail ?? '', this.daemonDomain);
        this.dispatch(decoded.value);
      }
    } catch (e) {
      if (!this.stopped) {
        this.stats.controlErrors++;
        this.log('error', `${e instanceof Error ? e.message : String(e)}; closing the control channel`);
      }
    } finally {
      if (this.control?.stream === stream) this.control = undefined;
      closeStream(stream);
      for (const p of this.pending.values())
        p.reject(new QrexecStateError('qrexec call', 'control channel closed'));
      this.pending.clear();
      if (!this.stopped && this.restart) {
        await this.listenControl().catch((e: unknown) =>
          this.log('error', `control re-listen failed: ${e instanceof Error ? e.message : String(e)}`),
        );
      }
    }
  }

  private dispatch(message: Message): void {
    switch (message.kind) {
      case 'exec-cmdline':
      case 'just-exec':
        this.track(this.runIncoming(message));
        return;
      case 'service-connect': {
        const p = this.takePending(message.requestId, 'MSG_SERVICE_CONNECT');
        p?.resolve({ connectDomain: message.connectDomain, connectPort: message.connectPort });
        return;
      }
      case 'service-refused': {
        const p = this.takePending(message.requestId, 'MSG_SERVICE_REFUSED');
        p?.reject(new QrexecRefusedError(p.target, p.service));
        return;
      }
      default:
        // checkHeader admits only the four types above after HELLO.
        this.log('warn', `unexpected ${message.kind} on the control channel, ignored`);
    }
  }

  /** The outgoing call dom0 answers with `what`, no longer pending; undefined (and a warning) for a request we never made. */
  private takePending(requestId: RequestId, what: string): PendingTrigger | undefined {
    const ident = requestIdText(requestId);
    const p = this.pending.get(ident);
    if (!p) {
      this.log('warn', `${what} for unknown request ${JSON.stringify(ident)}, ignored`);
      return undefined;
    }
    this.pending.delete(ident);
    return p;
  }

  private sendControl(message: Message): Promise<void> {
    const control = this.control;
    if (!control) return Promise.reject(new QrexecStateError('qrexec control', 'not connected'));
    // One message at a time: a header and its payload must not interleave with another.
    const next = this.controlQueue.then(() => control.writer.write(encodeMessage(message)));
    this.controlQueue = next.catch(() => undefined);
    return next;
  }

  /** MSG_CONNECTION_TERMINATED: lets dom0 reuse the port, and kill a disposable after its last call. */
  private terminated(connectDomain: number, connectPort: number): void {
    this.sendControl({ kind: 'connection-terminated', connectDomain, connectPort }).catch((e: unknown) =>
      this.log(
        'warn',
        `cannot send MSG_CONNECTION_TERMINATED: ${e instanceof Error ? e.message : String(e)}`,
      ),
    );
  }

  private track(session: Promise<void>): void {
    const tracked = session.catch((e: unknown) =>
      this.log('error', e instanceof Error ? e.message : String(e)),
    );
    this.sessions.add(tracked);
    tracked.finally(() => this.sessions.delete(tracked));
  }

  // ---- incoming calls ------------------------------------------------------------------------------

  private async runIncoming(
    message: Extract<Message, { kind: 'exec-cmdline' | 'just-exec' }>,
  ): Promise<void> {
    const { connectDomain, connectPort, cmdline } = message;
    const parsed = parseRpcCommandLine(cmdline);
    const entry = parsed.ok ? this.services.get(parsed.value.service) : undefined;
    if (parsed.ok && entry?.options.waitForSession && !parsed.value.nogui) await this.sessionReady();
    let stream: Duplex;
    try {
      stream = await this.transport.connect({
        peer: connectDomain,
        port: connectPort,
        timeoutMs: this.connectTimeoutMs,
      });
    } catch (e) {
      this.stats.connectionErrors++;
      this.log(
        'error',
        `data vchan ${connectDomain}:${connectPort}: ${e instanceof Error ? e.message : String(e)}`,
      );
      this.terminated(connectDomain, connectPort);
      return;
    }
    const session: ServiceSessionOptions = { stream, connectDomain, connectPort, log: this.log };
    try {
      const refusal = refusalCode(parsed, entry !== undefined);
      if (refusal !== undefined) {
        this.stats.refused++;
        this.log('warn', `refused ${JSON.stringify(cmdline)}: exit ${refusal}`);
        if (message.kind === 'just-exec') await justExecOnDataChannel(session, refusal);
        else await refuseOnDataChannel(session, refusal);
        return;
      }
      const command = (parsed as { ok: true; value: RpcCommand }).value;
      this.stats.calls++;
      if (message.kind === 'just-exec') {
        // Started detached: stdin empty, output discarded; dom0 only learns that it started.
        await justExecOnDataChannel(session, 0);
        this.track(runDetached(entry!.handler, command, connectDomain));
        return;
      }
      const code = await serveCall(session, command, entry!.handler);
      this.log('info', `${command.descriptor} from ${command.sourceDomain} exited ${code}`);
    } catch (e) {
      this.stats.connectionErrors++;
      throw e;
    } finally {
      this.terminated(connectDomain, connectPort);
    }
  }
}

/**
 * Exit code for a call we do not run, or undefined to run it. Unknown services get 127 like a
 * missing /etc/qubes-rpc file; a non-RPC (shell) command line gets 126 (refused: there is no
 * shell to run it); a command line that does not parse gets 125 like the C agent (`cmd == NULL`).
 */
function refusalCode(parsed: ReturnType<typeof parseRpcCommandLine>, known: boolean): number | undefined {
  if (!parsed.ok) return parsed.reason === 'not-rpc' ? EXIT_REQUEST_REFUSED : EXIT_PROBLEM;
  return known ? undefined : EXIT_SERVICE_NOT_FOUND;
}

async function runDetached(
  handler: ServiceHandler,
  command: RpcCommand,
  connectDomain: number,
): Promise<void> {
  const stdin = new PassThrough();
  stdin.end();
  const sink = () =>
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    });
  await handler(
    serviceCall(command, connectDomain, {
      stdin,
      stdout: sink(),
      stderr: sink(),
      signal: new AbortController().signal,
    }),
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
