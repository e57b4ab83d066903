/**
 * The GUI peer broke the protocol (or sent a value outside what it may send), and the
 * connection was ended. Qubes' daemon exits in these situations; we end the connection.
 */
export class GuiProtocolError extends Error {
  constructor(
    /** Who detected it: the agent (daemon misbehaved) or the lab daemon (agent misbehaved). */
    readonly side: 'agent' | 'daemon',
    /** Short machine-readable reason, e.g. `bad-length`, `unknown-window`, `dump-too-small`. */
    readonly reason: string,
    detail: string,
  ) {
    super(`gui ${side}: ${reason}: ${detail}`);
    this.name = 'GuiProtocolError';
  }
}

/** A call into the agent's API that cannot be carried out (bad size, closed window). */
export class GuiError extends Error {
  constructor(
    readonly operation: string,
    readonly code: string,
    detail: string,
  ) {
    super(`gui ${operation}: ${code}: ${detail}`);
    this.name = 'GuiError';
  }
}
