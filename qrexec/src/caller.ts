/**
 * The caller side of one data connection, used by the VM agent for its own outgoing calls
 * (QubesOS/qubes-core-qrexec @ b2822df6fc22 `agent/qrexec-client-vm.c`, which runs
 * `handle_data_client` of `agent/qrexec-agent-data.c`): HELLO, stdin out with a zero-length EOF, stdout/stderr in until the
 * exit code arrives.
 */
import type { Duplex, Readable } from 'node:stream';
import { QrexecProtocolError } from './errors.ts';
import { closeStream, FrameReader, FrameWriter } from './frames.ts';
import { dataHandshake, type Log } from './service.ts';
import { checkHeader, decodePayload, MsgType, maxDataChunk } from './wire.ts';

export type CallInput = Uint8Array | string | Readable;

export interface CallResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Default bound on what one call may return (stdout + stderr); a peer sending more ends the call. */
export const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024;

export async function sendInput(
  writer: FrameWriter,
  input: CallInput | undefined,
  chunk: number,
): Promise<void> {
  const send = async (bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length; off += chunk) {
      await writer.writeMessage(MsgType.DATA_STDIN, bytes.subarray(off, off + chunk));
    }
  };
  if (typeof input === 'string') await send(Buffer.from(input));
  else if (input instanceof Uint8Array) await send(input);
  else if (input)
    for await (const piece of input) await send(typeof piece === 'string' ? Buffer.from(piece) : piece);
  await writer.writeMessage(MsgType.DATA_STDIN, new Uint8Array(0));
}

export async function runCall(options: {
  stream: Duplex;
  connectDomain: number;
  connectPort: number;
  stdin?: CallInput;
  maxOutputBytes?: number;
  log: Log;
}): Promise<CallResult> {
  const { stream, connectDomain, connectPort, log } = options;
  const op = `outgoing data channel ${connectDomain}:${connectPort}`;
  const reader = new FrameReader(stream, op, connectDomain);
  const writer = new FrameWriter(stream, op, connectDomain);
  const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  let finished = false;
  try {
    const version = await dataHandshake(reader, writer, op, connectDomain);
    void sendInput(writer, options.stdin, maxDataChunk(version)).catch((e: unknown) => {
      // The service may exit without reading all input (the vchan closes): not our failure.
      if (!finished)
        log('info', `${op}: stdin not fully sent: ${e instanceof Error ? e.message : String(e)}`);
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let total = 0;
    let warned = false;
    for (;;) {
      const frame = await reader.read((h) => checkHeader(h, 'data', version));
      if (!frame) throw new QrexecProtocolError(op, 'early-eof', 'no exit code', connectDomain);
      const message = decodePayload(frame.type, frame.payload);
      if (!message.ok) throw new QrexecProtocolError(op, message.reason, message.detail ?? '', connectDomain);
      const m = message.value;
      if (m.kind === 'data-exit-code') {
        finished = true;
        return { exitCode: m.code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
      }
      if (m.kind === 'data-stdout' || m.kind === 'data-stdin' || m.kind === 'data-stderr') {
        if (m.kind === 'data-stdin' && !warned) {
          warned = true;
          log('warn', `${op}: service sent MSG_DATA_STDIN`);
        }
        total += m.data.length;
        if (total > limit)
          throw new QrexecProtocolError(op, 'output-too-large', `> ${limit} bytes`, connectDomain);
        (m.kind === 'data-stderr' ? stderr : stdout).push(Buffer.from(m.data));
      }
    }
  } finally {
    finished = true;
    closeStream(stream);
  }
}
