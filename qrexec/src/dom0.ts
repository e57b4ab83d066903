/**
 * dom0's side of qrexec for the lab: what qrexec-daemon, qrexec-client and qrexec-policy-exec
 * do for one VM. Written from the C sources (QubesOS/qubes-core-qrexec @ b2822df6fc22
 * `daemon/qrexec-daemon.c`, `daemon/qrexec-daemon-common.c`, `daemon/qrexec-client.c`), not
 * from our agent, so that each checks the other.
 *
 * - control: vchan CLIENT to the VM's port 512; receive the agent's HELLO, reply (echoing the
 *   agent's version, as the C daemon does, unless `helloReply: 'own'`), then validate every
 *   agent message as `sanitize_message_from_agent` does;
 * - dom0 → VM calls: allocate a data port, be the data vchan SERVER, send MSG_EXEC_CMDLINE,
 *   send HELLO first, stream stdin, collect stdout/stderr/exit code;
 * - VM → dom0 calls: MSG_TRIGGER_SERVICE3 → policy callback → MSG_SERVICE_REFUSED, or
 *   MSG_SERVICE_CONNECT and dom0 serves the call as data vchan CLIENT (receives HELLO first).
 *
 * A misbehaving agent ends its control connection with a QrexecProtocolError (the C daemon
 * exits); the process is never taken down.
 */
import { createReadStream } from 'node:fs';
import type { Duplex, Readable } from 'node:stream';
import type { VchanTransport } from '@moat/vchan';
import { formatRpcCommandLine } from './command.ts';
import { QrexecProtocolError, QrexecStateError } from './errors.ts';
import { accepted, closeStream, FrameReader, FrameWriter, withdrawIfWaiting } from './frames.ts';
import {
  checkHeader,
  DATA_RING_SIZE,
  DOM0_PROTOCOL_VERSION,
  decodePayload,
  decodeTrigger,
  encodeMessage,
  MAX_CLIENTS,
  type Message,
  MIN_PROTOCOL_VERSION,
  MsgType,
  maxDataChunk,
  type RequestId,
  requestIdText,
  VCHAN_BASE_DATA_PORT,
  VCHAN_BASE_PORT,
} from './wire.ts';

export type Dom0Log = (level: 'info' | 'warn' | 'error', message: string) => void;

/** A VM's request to call a service (after dom0's validation and sanitising). */
export interface TriggerRequest {
  /** The calling VM's name and domain id. */
  source: string;
  sourceDomain: number;
  /** Requested target as sent (`dom0`, `@default`, `@dispvm`, a VM name, `uuid:…`). */
  target: string;
  /** Service name and argument, split at the first `+`. */
  service: string;
  argument: string;
  requestId: string;
}

/** A dom0 service implementation for VM → dom0 calls (like qubesd's handlers: whole input in, output out). */
export type Dom0Service = (call: {
  source: string;
  service: string;
  argument: string;
  stdin: Buffer;
}) => Promise<Dom0ServiceResult> | Dom0ServiceResult;

export interface Dom0ServiceResult {
  exitCode: number;
  stdout?: Uint8Array | string;
  stderr?: Uint8Array | string;
}

export type PolicyDecision =
  | { action: 'deny' }
  /** Target dom0: `service` answers the call. */
  | { action: 'allow'; service: Dom0Service }
  /** Target another VM, reached through its daemon; `user` as policy's `user=` (default `user`). */
  | { action: 'allow'; target: QrexecDaemon; user?: string };

/** The policy: decides a VM's call, as qrexec-policy-daemon does. Throwing counts as deny. */
export type TriggerPolicy = (request: TriggerRequest) => Promise<PolicyDecision> | PolicyDecision;

export type Stdin = Uint8Array | string | { path: string } | Readable;

export interface Dom0CallOptions {
  argument?: string;
  stdin?: Stdin;
  /** The user policy would choose; the agent sees it before the `:` (default `user`). */
  user?: string;
  /** Source domain name put in the command line (default `dom0`). */
  source?: string;
  /** MSG_JUST_EXEC instead of MSG_EXEC_CMDLINE: only the start status comes back. */
  justExec?: boolean;
  /** Send this command line verbatim instead of building `user:QUBESRPC service+arg source`. */
  commandLine?: string;
  maxOutputBytes?: number;
  timeoutMs?: number;
}

export interface Dom0CallResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  /** The data port used; `terminated` resolves when the agent sends MSG_CONNECTION_TERMINATED for it. */
  port: number;
  terminated: Promise<void>;
}

export interface Dom0DaemonOptions {
  /** dom0's vchans: `xenVchanTransport(domain)` in the lab's dom0 (`@moat/vchan`). */
  transport: VchanTransport;
  /** The VM's domain id and name. */
  domain: number;
  name: string;
  policy?: TriggerPolicy;
  /** `echo` (C qrexec-daemon's behaviour, the default) or `own` (reply with version 4). */
  helloReply?: 'echo' | 'own';
  /** How long to wait for the agent (`QREXEC_STARTUP_TIMEOUT`, default 60 s). */
  startupTimeoutMs?: number;
  log?: Dom0Log;
}

const defaultLog: Dom0Log = (level, message) => {
  if (level !== 'info') process.stderr.write(`qrexec-daemon ${level}: ${message}\n`);
};

const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024;
/** Bound on what a VM may send to a dom0 service in one call. */
const MAX_DOM0_SERVICE_INPUT = 16 * 1024 * 1024;

export class QrexecDaemon {
  /** Negotiated control version (min(agent, 4)). */
  version = 0;
  readonly counters = { triggers: 0, refused: 0, terminated: 0, protocolErrors: 0 };
  /** Why the control connection ended, if it did. */
  closedReason: Error | undefined;
  private stream: Duplex | undefined;
  private writer: FrameWriter | undefined;
  private readonly ports = new Map<number, { domain: number; terminated: () => void }>();
  private readonly log: Dom0Log;
  private controlQueue: Promise<void> = Promise.resolve();
  private readonly closedWaiters: Array<() => void> = [];
  private readonly calls = new Set<Promise<unknown>>();
  private closing = false;

  private constructor(private readonly options: Dom0DaemonOptions) {
    this.log = options.log ?? defaultLog;
  }

  /** Connects to the VM's agent (vchan client on port 512) and does the HELLO exchange. */
  static async connect(options: Dom0DaemonOptions): Promise<QrexecDaemon> {
    const daemon = new QrexecDaemon(options);
    await daemon.attach();
    return daemon;
  }

  get connected(): boolean {
    return this.stream !== undefined;
  }

  /** Data ports allocated and not yet released by MSG_CONNECTION_TERMINATED. */
  portsInUse(): number[] {
    return [...this.ports.keys()].sort((a, b) => a - b);
  }

  /** Resolves when the control connection has ended. */
  closed(): Promise<void> {
    if (!this.stream) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.stream) closeStream(this.stream);
    await this.closed();
    await Promise.allSettled([...this.calls]);
  }

  /** Calls a service in the VM, as `qrexec-client -d <vm> user:QUBESRPC service+arg dom0`. */
  async call(service: string, options: Dom0CallOptions = {}): Promise<Dom0CallResult> {
    const task = this.runCall(service, options);
    this.calls.add(task);
    try {
      return await task;
    } finally {
      this.calls.delete(task);
    }
  }

  private async attach(): Promise<void> {
    const { transport, domain } = this.options;
    const op = `qrexec-daemon control ${this.options.name}`;
    const stream = await transport.connect({
      peer: domain,
      port: VCHAN_BASE_PORT,
      timeoutMs: this.options.startupTimeoutMs ?? 60_000,
    });
    const reader = new FrameReader(stream, op, domain);
    const writer = new FrameWriter(stream, op, domain);
    try {
      // The agent sends HELLO first (handle_agent_hello): type must be HELLO, len 4.
      const frame = await reader.read((h) =>
        h.type === MsgType.HELLO
          ? checkHeader(h, 'control-from-agent', 0)
          : { ok: false, reason: 'unexpected-type', detail: `0x${h.type.toString(16)} before HELLO` },
      );
      if (!frame) throw new QrexecProtocolError(op, 'early-eof', 'before HELLO', domain);
      const hello = decodePayload(frame.type, frame.payload);
      if (!hello.ok || hello.value.kind !== 'hello')
        throw new QrexecProtocolError(op, 'bad-length', 'HELLO', domain);
      const agentVersion = hello.value.version;
      const version = Math.min(agentVersion, DOM0_PROTOCOL_VERSION);
      if (version < MIN_PROTOCOL_VERSION) {
        throw new QrexecProtocolError(op, 'bad-version', `agent version ${agentVersion}`, domain);
      }
      const reply = this.options.helloReply === 'own' ? DOM0_PROTOCOL_VERSION : agentVersion;
      await writer.write(encodeMessage({ kind: 'hello', version: reply }));
      this.version = version;
    } catch (e) {
      closeStream(stream);
      throw e;
    }
    this.stream = stream;
    this.writer = writer;
    void this.readAgent(stream, reader, op);
  }

  private async readAgent(stream: Duplex, reader: FrameReader, op: string): Promise<void> {
    const domain = this.options.domain;
    try {
      for (;;) {
        const frame = await reader.read((h) => checkHeader(h, 'control-from-agent', this.version));
        if (!frame)
          throw new QrexecProtocolError(op, 'early-eof', 'agent closed the control channel', domain);
        if (frame.type === MsgType.CONNECTION_TERMINATED) {
          const m = decodePayload(frame.type, frame.payload);
          if (!m.ok || m.value.kind !== 'connection-terminated')
            throw new QrexecProtocolError(op, 'bad-length', '', domain);
          this.release(m.value.connectDomain, m.value.connectPort, op);
        } else if (frame.type === MsgType.HELLO) {
          throw new QrexecProtocolError(op, 'unexpected-type', 'second HELLO', domain);
        } else {
          this.onTrigger(frame.type, frame.payload);
        }
      }
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      // EOF, or anything after we closed the channel ourselves, is an ending, not a fault.
      const ending = this.closing || (error instanceof QrexecProtocolError && error.reason === 'early-eof');
      if (!ending) this.counters.protocolErrors++;
      this.closedReason = error;
      this.log(ending ? 'info' : 'error', error.message);
    } finally {
      closeStream(stream);
      this.stream = undefined;
      this.writer = undefined;
      for (const wake of this.closedWaiters.splice(0)) wake();
    }
  }

  private release(connectDomain: number, port: number, op: string): void {
    // handle_connection_terminated: a port outside 513…768 is fatal; a port reserved for
    // another domain is left alone.
    if (port < VCHAN_BASE_DATA_PORT || port >= VCHAN_BASE_DATA_PORT + MAX_CLIENTS) {
      throw new QrexecProtocolError(
        op,
        'bad-port',
        `MSG_CONNECTION_TERMINATED port ${port}`,
        this.options.domain,
      );
    }
    const entry = this.ports.get(port);
    if (entry && entry.domain === connectDomain) {
      this.ports.delete(port);
      this.counters.terminated++;
      entry.terminated();
    }
  }

  /** allocate_vchan_port: dom0 peers use any free slot; VM peers alternate by domain id order. */
  private allocatePort(connectDomain: number): { port: number; terminated: Promise<void> } {
    const self = this.options.domain;
    const [start, step] = connectDomain === 0 ? [0, 1] : [connectDomain > self ? 1 : 0, 2];
    for (let i = start; i < MAX_CLIENTS; i += step) {
      const port = VCHAN_BASE_DATA_PORT + i;
      if (!this.ports.has(port)) {
        let terminated!: () => void;
        const done = new Promise<void>((resolve) => {
          terminated = resolve;
        });
        this.ports.set(port, { domain: connectDomain, terminated });
        return { port, terminated: done };
      }
    }
    throw new QrexecStateError('allocate vchan port', 'all data ports in use');
  }

  private send(message: Message): Promise<void> {
    const writer = this.writer;
    if (!writer) return Promise.reject(new QrexecStateError('qrexec-daemon send', 'agent not connected'));
    const next = this.controlQueue.then(() => writer.write(encodeMessage(message)));
    this.controlQueue = next.catch(() => undefined);
    return next;
  }

  // ---- dom0 → VM -------------------------------------------------------------------------------

  private async runCall(service: string, options: Dom0CallOptions): Promise<Dom0CallResult> {
    if (!this.writer)
      throw new QrexecStateError('qrexec call', `agent of ${this.options.name} not connected`);
    const vm = this.options.domain;
    const { port, terminated } = this.allocatePort(0);
    const cmdline =
      options.commandLine ??
      formatRpcCommandLine({
        user: options.user ?? 'user',
        service,
        argument: options.argument ?? '',
        sourceDomain: options.source ?? 'dom0',
      });
    const op = `qrexec-client ${this.options.name} ${port}`;
    const listener = await this.options.transport.listen({
      peer: vm,
      port,
      readMin: DATA_RING_SIZE,
      writeMin: DATA_RING_SIZE,
    });
    let timer: NodeJS.Timeout | undefined;
    let stream: Duplex | undefined;
    try {
      await this.send({
        kind: options.justExec ? 'just-exec' : 'exec-cmdline',
        connectDomain: 0,
        connectPort: port,
        cmdline,
      });
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new QrexecProtocolError(op, 'timeout', `${options.timeoutMs} ms`, vm)),
          options.timeoutMs ?? 120_000,
        );
      });
      timeout.catch(() => undefined);
      stream = await Promise.race([accepted(listener), timeout]);
      const result = await Promise.race([this.exchange(stream, op, options), timeout]);
      return { ...result, port, terminated };
    } finally {
      if (timer) clearTimeout(timer);
      withdrawIfWaiting(listener);
      if (stream) closeStream(stream);
    }
  }

  /** qrexec-client as data server and caller: HELLO first, then stdin out / output in. */
  private async exchange(
    stream: Duplex,
    op: string,
    options: Dom0CallOptions,
  ): Promise<{ exitCode: number; stdout: Buffer; stderr: Buffer }> {
    const vm = this.options.domain;
    const reader = new FrameReader(stream, op, vm);
    const writer = new FrameWriter(stream, op, vm);
    await writer.write(encodeMessage({ kind: 'hello', version: DOM0_PROTOCOL_VERSION }));
    const version = await readDataHello(reader, op, vm, 'agent');
    const chunk = maxDataChunk(version);
    let exited = false;
    const input = options.justExec ? undefined : options.stdin;
    const sending = (async () => {
      if (!options.justExec) {
        for await (const piece of stdinChunks(input, chunk)) {
          if (exited) return; // the service exited: stop reading local input (qrexec-client does)
          await writer.writeMessage(MsgType.DATA_STDIN, piece);
        }
      }
      if (!exited) await writer.write(encodeMessage({ kind: 'data-stdin', data: new Uint8Array(0) }));
    })();
    sending.catch((e: unknown) => {
      if (!exited)
        this.log('info', `${op}: stdin not fully sent: ${e instanceof Error ? e.message : String(e)}`);
    });
    const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let total = 0;
    for (;;) {
      const frame = await reader.read((h) => checkHeader(h, 'data', version));
      if (!frame) throw new QrexecProtocolError(op, 'early-eof', 'no exit code', vm);
      switch (frame.type) {
        case MsgType.DATA_STDOUT:
        case MsgType.DATA_STDERR:
          total += frame.payload.length;
          if (total > limit) throw new QrexecProtocolError(op, 'output-too-large', `> ${limit}`, vm);
          (frame.type === MsgType.DATA_STDOUT ? out : err).push(Buffer.from(frame.payload));
          break;
        case MsgType.DATA_EXIT_CODE: {
          exited = true;
          const view = new DataView(frame.payload.buffer, frame.payload.byteOffset, frame.payload.byteLength);
          // Shorter than 4 bytes: status 255 (handle_remote_data_v2).
          const exitCode = frame.payload.length >= 4 ? view.getInt32(0, true) : 255;
          return { exitCode, stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
        }
        default:
          // MSG_DATA_STDIN from the service: the C caller accepts it like STDOUT, with a warning.
          this.log('warn', `${op}: service sent MSG_DATA_STDIN`);
          out.push(Buffer.from(frame.payload));
      }
    }
  }

  // ---- VM → dom0 ---------------------------------------------------------------------------------

  private onTrigger(type: number, payload: Uint8Array): void {
    const op = `qrexec-daemon control ${this.options.name}`;
    const domain = this.options.domain;
    this.counters.triggers++;
    const decoded = decodeTrigger(type, payload);
    if (!decoded.ok) {
      if (!decoded.refuse) throw new QrexecProtocolError(op, decoded.reason, decoded.detail ?? '', domain);
      this.log('warn', `${op}: refusing trigger: ${decoded.reason} ${decoded.detail ?? ''}`);
      this.refuse(decoded.refuse);
      return;
    }
    const m = decoded.value;
    const plus = m.serviceName.indexOf('+');
    const request: TriggerRequest = {
      source: this.options.name,
      sourceDomain: domain,
      target: m.targetDomain,
      service: plus < 0 ? m.serviceName : m.serviceName.slice(0, plus),
      argument: plus < 0 ? '' : m.serviceName.slice(plus + 1),
      requestId: requestIdText(m.requestId),
    };
    const task = this.runTrigger(request, m.requestId).catch((e: unknown) =>
      this.log(
        'error',
        `${op}: ${request.service} from ${request.source}: ${e instanceof Error ? e.message : String(e)}`,
      ),
    );
    this.calls.add(task);
    task.finally(() => this.calls.delete(task));
  }

  private refuse(requestId: RequestId): void {
    this.counters.refused++;
    this.send({ kind: 'service-refused', requestId }).catch((e: unknown) =>
      this.log('warn', `cannot send MSG_SERVICE_REFUSED: ${e instanceof Error ? e.message : String(e)}`),
    );
  }

  private async runTrigger(request: TriggerRequest, requestId: RequestId): Promise<void> {
    let decision: PolicyDecision;
    try {
      decision = this.options.policy ? await this.options.policy(request) : { action: 'deny' };
    } catch (e) {
      this.log('warn', `policy failed for ${request.service}: ${e instanceof Error ? e.message : String(e)}`);
      decision = { action: 'deny' };
    }
    if (decision.action === 'deny') {
      this.refuse(requestId);
      return;
    }
    if ('target' in decision) {
      await this.connectVms(request, requestId, decision.target, decision.user ?? 'user');
      return;
    }
    // Target dom0: the caller's agent becomes data server for (0, P); dom0 connects to it.
    let allocated: { port: number; terminated: Promise<void> };
    try {
      allocated = this.allocatePort(0);
    } catch {
      this.refuse(requestId);
      return;
    }
    const { port } = allocated;
    await this.send({ kind: 'service-connect', connectDomain: 0, connectPort: port, requestId });
    const vm = this.options.domain;
    const op = `dom0 service ${request.service} for ${request.source} ${port}`;
    const stream = await this.options.transport.connect({ peer: vm, port, timeoutMs: 120_000 });
    try {
      await this.serveDom0(stream, op, request, decision.service);
    } finally {
      closeStream(stream);
    }
  }

  /**
   * VM → VM (`daemon/qrexec-daemon.c` `allocate_vchan_port`, qrexec-policy-exec): the TARGET's
   * daemon allocates P (odd/even by domain order) and sends its agent MSG_EXEC_CMDLINE{caller domid, P, "user:QUBESRPC svc+arg caller"}; the
   * caller's agent gets MSG_SERVICE_CONNECT{target domid, P, request id}, becomes data server
   * for (target, P), and the target's agent connects to it. dom0 carries no data.
   */
  private async connectVms(
    request: TriggerRequest,
    requestId: RequestId,
    target: QrexecDaemon,
    user: string,
  ): Promise<void> {
    const caller = this.options.domain;
    let port: number;
    try {
      if (!target.connected)
        throw new QrexecStateError('qrexec policy', `${target.options.name} not connected`);
      port = target.allocatePort(caller).port;
    } catch (e) {
      this.log(
        'warn',
        `cannot route ${request.service} to another VM: ${e instanceof Error ? e.message : String(e)}`,
      );
      this.refuse(requestId);
      return;
    }
    const cmdline = formatRpcCommandLine({
      user,
      service: request.service,
      argument: request.argument,
      sourceDomain: this.options.name,
    });
    await target.send({ kind: 'exec-cmdline', connectDomain: caller, connectPort: port, cmdline });
    await this.send({
      kind: 'service-connect',
      connectDomain: target.options.domain,
      connectPort: port,
      requestId,
    });
  }

  /** dom0 as data client and service: receive HELLO first, read stdin to EOF, answer. */
  private async serveDom0(
    stream: Duplex,
    op: string,
    request: TriggerRequest,
    service: Dom0Service,
  ): Promise<void> {
    const vm = this.options.domain;
    const reader = new FrameReader(stream, op, vm);
    const writer = new FrameWriter(stream, op, vm);
    const version = await readDataHello(reader, op, vm, 'caller');
    await writer.write(encodeMessage({ kind: 'hello', version: DOM0_PROTOCOL_VERSION }));
    const input: Buffer[] = [];
    let size = 0;
    for (;;) {
      const frame = await reader.read((h) => checkHeader(h, 'data', version));
      if (!frame) break; // caller closed without EOF: treat as end of input
      if (frame.type !== MsgType.DATA_STDIN && frame.type !== MsgType.DATA_STDOUT) continue;
      if (frame.payload.length === 0) break;
      size += frame.payload.length;
      if (size > MAX_DOM0_SERVICE_INPUT) throw new QrexecProtocolError(op, 'output-too-large', 'input', vm);
      input.push(Buffer.from(frame.payload));
    }
    let result: Dom0ServiceResult;
    try {
      result = await service({
        source: request.source,
        service: request.service,
        argument: request.argument,
        stdin: Buffer.concat(input),
      });
    } catch (e) {
      result = { exitCode: 1, stderr: `${e instanceof Error ? e.message : String(e)}\n` };
    }
    const chunk = maxDataChunk(version);
    const put = async (type: number, data: Uint8Array | string | undefined) => {
      const bytes = typeof data === 'string' ? Buffer.from(data) : (data ?? new Uint8Array(0));
      for (let off = 0; off < bytes.length; off += chunk) {
        await writer.writeMessage(type, bytes.subarray(off, off + chunk));
      }
      await writer.writeMessage(type, new Uint8Array(0));
    };
    await put(MsgType.DATA_STDOUT, result.stdout);
    await put(MsgType.DATA_STDERR, result.stderr);
    await writer.write(encodeMessage({ kind: 'data-exit-code', code: result.exitCode }));
  }
}

/** The peer's HELLO on a data channel; returns the version both sides then speak. */
async function readDataHello(
  reader: FrameReader,
  op: string,
  vm: number,
  peerRole: 'agent' | 'caller',
): Promise<number> {
  const hello = await reader.read((h) => checkHeader(h, 'data-hello', 0));
  if (!hello) throw new QrexecProtocolError(op, 'early-eof', 'before HELLO', vm);
  const peer = new DataView(hello.payload.buffer, hello.payload.byteOffset, 4).getUint32(0, true);
  const version = Math.min(peer, DOM0_PROTOCOL_VERSION);
  if (version < MIN_PROTOCOL_VERSION)
    throw new QrexecProtocolError(op, 'bad-version', `${peerRole} ${peer}`, vm);
  return version;
}

async function* stdinChunks(input: Stdin | undefined, chunk: number): AsyncGenerator<Uint8Array> {
  if (input === undefined) return;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const bytes = typeof input === 'string' ? Buffer.from(input) : input;
    for (let off = 0; off < bytes.length; off += chunk) yield bytes.subarray(off, off + chunk);
    return;
  }
  const source: Readable =
    'path' in input && typeof input.path === 'string' && !('read' in input)
      ? createReadStream(input.path, { highWaterMark: chunk })
      : (input as Readable);
  for await (const piece of source) {
    const bytes: Uint8Array = typeof piece === 'string' ? Buffer.from(piece) : piece;
    for (let off = 0; off < bytes.length; off += chunk) yield bytes.subarray(off, off + chunk);
  }
}
