/**
 * The service side of one data connection in the VM agent (QubesOS/qubes-core-qrexec @ b2822df6fc22:
 * `agent/qrexec-agent-data.c` `handle_new_process_common`, `libqrexec/remote.c`,
 * `libqrexec/process_io.c`): HELLO, then
 * stdin in, stdout/stderr out with zero-length EOFs, then the exit code, then close.
 */
import type { Duplex, Readable } from 'node:stream';
import { PassThrough, Writable } from 'node:stream';
import type { RpcCommand } from './command.ts';
import { QrexecProtocolError } from './errors.ts';
import { closeStream, FrameReader, FrameWriter } from './frames.ts';
import {
  AGENT_PROTOCOL_VERSION,
  checkHeader,
  decodePayload,
  encodeMessage,
  type Header,
  type Message,
  MIN_PROTOCOL_VERSION,
  MsgType,
  maxDataChunk,
} from './wire.ts';

/** What a TypeScript service gets for one call. */
export interface ServiceCall {
  service: string;
  /** The argument after `+` ('' when none). */
  argument: string;
  /** `service+arg` (trailing `+` when no argument), as QREXEC_SERVICE_FULL_NAME. */
  descriptor: string;
  /** The caller's name (`dom0`, a VM name), as QREXEC_REMOTE_DOMAIN. */
  sourceDomain: string;
  /** Domain id of the caller's data endpoint (0 for dom0). */
  connectDomain: number;
  /** The user policy chose; informational (there is only one user in a moat VM). */
  user: string;
  /** The caller's input; ends at the caller's EOF (or if the caller goes away). */
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  /** Aborted when the connection fails; long-running services should stop then. */
  signal: AbortSignal;
}

/** Returns the exit code (undefined = 0). A thrown error becomes exit code 1 with a stderr line. */
export type ServiceHandler = (call: ServiceCall) => Promise<number | undefined> | number | undefined;

export type Log = (level: 'info' | 'warn' | 'error', message: string) => void;

export interface ServiceSessionOptions {
  stream: Duplex;
  connectDomain: number;
  connectPort: number;
  log: Log;
}

const dataOp = (domain: number, port: number) => `data channel ${domain}:${port}`;

/** HELLO on a data channel: the service side sends first, then reads (handle_handshake). */
export async function dataHandshake(
  reader: FrameReader,
  writer: FrameWriter,
  operation: string,
  peer: number,
): Promise<number> {
  await writer.write(encodeMessage({ kind: 'hello', version: AGENT_PROTOCOL_VERSION }));
  const frame = await reader.read((h) => checkHeader(h, 'data-hello', 0));
  if (!frame) throw new QrexecProtocolError(operation, 'early-eof', 'before HELLO', peer);
  const hello = decodePayload(frame.type, frame.payload);
  if (!hello.ok || hello.value.kind !== 'hello')
    throw new QrexecProtocolError(operation, 'bad-length', 'HELLO', peer);
  const version = Math.min(hello.value.version, AGENT_PROTOCOL_VERSION);
  if (version < MIN_PROTOCOL_VERSION) {
    throw new QrexecProtocolError(operation, 'bad-version', `peer version ${hello.value.version}`, peer);
  }
  return version;
}

/** The frame reader and writer of an accepted data stream, and its name for errors. */
function openDataChannel(options: ServiceSessionOptions): {
  op: string;
  reader: FrameReader;
  writer: FrameWriter;
} {
  const { stream, connectDomain, connectPort } = options;
  const op = dataOp(connectDomain, connectPort);
  return {
    op,
    reader: new FrameReader(stream, op, connectDomain),
    writer: new FrameWriter(stream, op, connectDomain),
  };
}

/** HELLO, then `messages`, then close: a call that runs no service on the channel. */
async function answerOnDataChannel(
  options: ServiceSessionOptions,
  messages: readonly Message[],
): Promise<void> {
  const { op, reader, writer } = openDataChannel(options);
  try {
    await dataHandshake(reader, writer, op, options.connectDomain);
    for (const m of messages) await writer.write(encodeMessage(m));
  } finally {
    closeStream(options.stream);
  }
}

/** Refuses a call on an open data channel: STDOUT EOF, STDERR EOF, EXIT_CODE, close (as the C agent). */
export function refuseOnDataChannel(options: ServiceSessionOptions, exitCode: number): Promise<void> {
  return answerOnDataChannel(options, [
    { kind: 'data-stdout', data: new Uint8Array(0) },
    { kind: 'data-stderr', data: new Uint8Array(0) },
    { kind: 'data-exit-code', code: exitCode },
  ]);
}

/** MSG_JUST_EXEC: HELLO, report whether the service started (0) and close; the service runs detached. */
export function justExecOnDataChannel(options: ServiceSessionOptions, exitCode: number): Promise<void> {
  return answerOnDataChannel(options, [{ kind: 'data-exit-code', code: exitCode }]);
}

/** What the handler of `command` gets, with the streams it reads and writes. */
export function serviceCall(
  command: RpcCommand,
  connectDomain: number,
  io: Pick<ServiceCall, 'stdin' | 'stdout' | 'stderr' | 'signal'>,
): ServiceCall {
  return {
    service: command.service,
    argument: command.argument,
    descriptor: command.descriptor,
    sourceDomain: command.sourceDomain,
    connectDomain,
    user: command.user,
    ...io,
  };
}

/** Output stream of a service: chunks become MSG_DATA_STDOUT/STDERR, end becomes the zero-length EOF. */
function outputStream(writer: FrameWriter, kind: 'data-stdout' | 'data-stderr', chunk: number): Writable {
  const type = kind === 'data-stdout' ? MsgType.DATA_STDOUT : MsgType.DATA_STDERR;
  return new Writable({
    highWaterMark: chunk,
    write(data: Buffer, _enc, callback) {
      (async () => {
        for (let off = 0; off < data.length; off += chunk) {
          await writer.writeMessage(type, data.subarray(off, off + chunk));
        }
      })().then(() => callback(), callback);
    },
    final(callback) {
      writer.writeMessage(type, new Uint8Array(0)).then(() => callback(), callback);
    },
  });
}

function finished(stream: Writable): Promise<void> {
  if (stream.writableFinished) return Promise.resolve();
  return new Promise((resolve, reject) => {
    stream.once('finish', resolve);
    stream.once('error', reject);
    stream.end();
  });
}

/**
 * Runs `handler` for `command` over an accepted data stream. Resolves with the exit code sent,
 * rejects with QrexecProtocolError if the connection failed (the handler's signal is aborted).
 */
export async function serveCall(
  options: ServiceSessionOptions,
  command: RpcCommand,
  handler: ServiceHandler,
): Promise<number> {
  const { stream, connectDomain, log } = options;
  const { op, reader, writer } = openDataChannel(options);
  const abort = new AbortController();
  let done = false;
  let stdin: PassThrough | undefined;
  try {
    const version = await dataHandshake(reader, writer, op, connectDomain);
    const chunk = maxDataChunk(version);
    const input = new PassThrough({ highWaterMark: chunk });
    stdin = input;
    const stdout = outputStream(writer, 'data-stdout', chunk);
    const stderr = outputStream(writer, 'data-stderr', chunk);
    for (const s of [stdout, stderr]) s.on('error', (e) => abort.abort(e));
    // A lost connection ends the service's streams too ('close' wakes writers waiting for 'drain').
    abort.signal.addEventListener(
      'abort',
      () => {
        stdout.destroy();
        stderr.destroy();
        input.destroy();
      },
      { once: true },
    );

    const check = (h: Header) => checkHeader(h, 'data', version);
    const pumpStdin = async (): Promise<void> => {
      let warned = false;
      for (;;) {
        const frame = await reader.read(check);
        if (input.destroyed) return;
        if (!frame) {
          if (!input.writableEnded) input.end(); // caller went away: EOF for the service
          return;
        }
        if (frame.type === MsgType.DATA_STDIN || frame.type === MsgType.DATA_STDOUT) {
          if (frame.type === MsgType.DATA_STDOUT && !warned) {
            warned = true;
            log('warn', `${op}: client sent MSG_DATA_STDOUT`);
          }
          if (input.writableEnded) continue; // after EOF: discard, as the C agent does
          if (frame.payload.length === 0) input.end();
          else if (!input.write(frame.payload)) {
            await new Promise<void>((resolve) => {
              const go = () => {
                input.off('drain', go);
                input.off('close', go);
                resolve();
              };
              input.on('drain', go);
              input.on('close', go);
            });
          }
        } else {
          // MSG_DATA_STDERR / MSG_DATA_EXIT_CODE from the caller: logged and ignored (remote.c).
          log('warn', `${op}: client sent message 0x${frame.type.toString(16)}, ignored`);
        }
      }
    };
    const pump = pumpStdin().catch((e: unknown) => {
      if (done) return; // we closed the stream ourselves after the exit code
      abort.abort(e);
      input.destroy();
    });
    pump.catch(() => undefined);

    let exitCode: number;
    // If the connection fails we stop waiting for the service (it sees `signal` aborted and its
    // streams destroyed) so that MSG_CONNECTION_TERMINATED goes out at once.
    const connectionLost = new Promise<never>((_, reject) => {
      if (abort.signal.aborted) reject(abort.signal.reason);
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
    });
    connectionLost.catch(() => undefined);
    try {
      const running = Promise.resolve().then(() =>
        handler(serviceCall(command, connectDomain, { stdin: input, stdout, stderr, signal: abort.signal })),
      );
      running.catch((e: unknown) => {
        if (abort.signal.aborted)
          log('info', `${op}: service ended after the connection failed: ${String(e)}`);
      });
      const result = await Promise.race([running, connectionLost]);
      exitCode = result ?? 0;
    } catch (e) {
      if (abort.signal.aborted) throw abort.signal.reason;
      const message = e instanceof Error ? e.message : String(e);
      log('error', `${op}: service ${command.descriptor} failed: ${message}`);
      if (!stderr.writableEnded) stderr.write(`${command.service}: ${message}\n`);
      exitCode = 1;
    }
    if (abort.signal.aborted) throw abort.signal.reason;
    await finished(stdout);
    await finished(stderr);
    await writer.write(encodeMessage({ kind: 'data-exit-code', code: exitCode }));
    done = true;
    return exitCode;
  } catch (e) {
    abort.abort(e);
    throw e instanceof QrexecProtocolError
      ? e
      : new QrexecProtocolError(
          op,
          'transport-error',
          e instanceof Error ? e.message : String(e),
          connectDomain,
        );
  } finally {
    done = true;
    stdin?.destroy(); // releases a stdin writer waiting for a handler that stopped reading
    closeStream(stream);
  }
}
