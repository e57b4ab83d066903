/**
 * The agent's reading side, sans-IO: bytes from the daemon in, the handshake and then
 * validated messages out. Follows the C agent (gui-agent/vmside.c `handshake`,
 * `handle_message`) but checks more: every known message must have exactly its struct's
 * length, and bodies are bounded before they are buffered.
 */
import { ByteQueue } from './byte-queue.ts';
import { GuiProtocolError } from './errors.ts';
import {
  decodeBody,
  decodeHeader,
  decodeVersion,
  decodeXconf,
  FIXED_BODY_SIZE,
  formatVersion,
  type GuiMessage,
  HEADER_SIZE,
  type Header,
  MAX_CLIPBOARD_BUFFER_SIZE,
  MAX_CLIPBOARD_SIZE,
  MIN_CLIPBOARD_4X,
  MIN_NEGOTIATED_MINOR,
  Msg,
  msgName,
  PROTOCOL_MAJOR,
  VERSION_SIZE,
  versionMajor,
  versionMinor,
  XCONF_SIZE,
  type Xconf,
} from './wire.ts';

/** Types a daemon sends to an agent; anything else is skipped by its `untrusted_len`, as the C agent does. */
const FROM_DAEMON: ReadonlySet<number> = new Set([
  Msg.KEYPRESS,
  Msg.BUTTON,
  Msg.MOTION,
  Msg.CROSSING,
  Msg.FOCUS,
  Msg.RESIZE,
  Msg.DESTROY,
  Msg.MAP,
  Msg.CONFIGURE,
  Msg.CLOSE,
  Msg.EXECUTE,
  Msg.CLIPBOARD_REQ,
  Msg.CLIPBOARD_DATA,
  Msg.KEYMAP_NOTIFY,
  Msg.WINDOW_FLAGS,
  Msg.WINDOW_DUMP_ACK,
]);

/** The largest body a daemon sends (a 1.8 paste); unknown messages beyond it are an error. */
export const MAX_DAEMON_BODY = MAX_CLIPBOARD_BUFFER_SIZE + 1;

export type InboundItem =
  | { kind: 'handshake'; version: number; xconf: Xconf }
  | { kind: 'message'; message: GuiMessage }
  /** A message the agent does not act on, skipped by length (a future type, or one only agents send). */
  | { kind: 'skipped'; header: Header };

export class DaemonStreamParser {
  readonly #queue = new ByteQueue();
  #version: number | undefined;
  #header: Header | undefined;
  #failed: GuiProtocolError | undefined;

  constructor(readonly ownVersion: number) {}

  /** The negotiated version once the handshake is through. */
  get version(): number | undefined {
    return this.#version;
  }

  push(chunk: Uint8Array): void {
    this.#queue.push(chunk);
  }

  /** The next complete item, undefined when more bytes are needed; throws GuiProtocolError (then always). */
  next(): InboundItem | undefined {
    if (this.#failed) throw this.#failed;
    try {
      return this.#next();
    } catch (error) {
      if (error instanceof GuiProtocolError) this.#failed = error;
      throw error;
    }
  }

  #next(): InboundItem | undefined {
    if (this.#version === undefined) {
      if (this.#queue.length < VERSION_SIZE + XCONF_SIZE) return undefined;
      const version = decodeVersion(this.#queue.take(VERSION_SIZE));
      checkNegotiated(version, this.ownVersion);
      const xconf = decodeXconf(this.#queue.take(XCONF_SIZE));
      checkXconf(xconf);
      this.#version = version;
      return { kind: 'handshake', version, xconf };
    }
    if (!this.#header) {
      if (this.#queue.length < HEADER_SIZE) return undefined;
      const header = decodeHeader(this.#queue.take(HEADER_SIZE));
      checkHeader(header, this.#version);
      this.#header = header;
    }
    const header = this.#header;
    if (this.#queue.length < header.untrustedLength) return undefined;
    this.#header = undefined;
    const body = this.#queue.take(header.untrustedLength);
    if (!FROM_DAEMON.has(header.type)) return { kind: 'skipped', header };
    const decoded = decodeBody(header.type, header.window, body);
    if (!decoded.ok) throw new GuiProtocolError('agent', 'bad-message', decoded.reason);
    return { kind: 'message', message: decoded.message };
  }
}

/** The C agent's rule: major 1, minor ≥ 4, not above what we offered. */
export function checkNegotiated(version: number, ownVersion: number): void {
  if (
    version > ownVersion ||
    versionMajor(version) !== PROTOCOL_MAJOR ||
    versionMinor(version) < MIN_NEGOTIATED_MINOR
  ) {
    throw new GuiProtocolError(
      'agent',
      'bad-version',
      `the daemon answered version ${formatVersion(version)} to our ${formatVersion(ownVersion)} (needs 1.${MIN_NEGOTIATED_MINOR} to ${formatVersion(ownVersion)})`,
    );
  }
}

function checkXconf(xconf: Xconf): void {
  // Informative only, but an application may size windows from it: keep it within what a window may be.
  if (xconf.w === 0 || xconf.h === 0 || xconf.w > 65535 || xconf.h > 65535 || xconf.depth > 32) {
    throw new GuiProtocolError('agent', 'bad-xconf', `root ${xconf.w}x${xconf.h} depth ${xconf.depth}`);
  }
}

function checkHeader(header: Header, version: number): void {
  const fixed = FIXED_BODY_SIZE.get(header.type);
  if (FROM_DAEMON.has(header.type) && fixed !== undefined && header.untrustedLength !== fixed) {
    throw new GuiProtocolError(
      'agent',
      'bad-length',
      `${msgName(header.type)} claims ${header.untrustedLength} bytes, its struct has ${fixed}`,
    );
  }
  const limit =
    header.type === Msg.CLIPBOARD_DATA && version < MIN_CLIPBOARD_4X ? MAX_CLIPBOARD_SIZE : MAX_DAEMON_BODY;
  if (header.untrustedLength > limit) {
    throw new GuiProtocolError(
      'agent',
      'too-long',
      `${msgName(header.type)} claims ${header.untrustedLength} bytes, above ${limit}`,
    );
  }
}
