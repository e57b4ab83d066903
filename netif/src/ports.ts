/**
 * One `onEvent` subscription per EventChannels, dispatching by port: with a hundred client
 * devices an event costs one map lookup, not a hundred listener calls. The subscription
 * ends when the last port is removed, so a closed service holds nothing.
 */
import type { EventChannels, Port } from '@moat/xen';

class PortDispatch {
  private readonly handlers = new Map<Port, () => void>();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly channels: EventChannels) {}

  add(port: Port, handler: () => void): void {
    this.handlers.set(port, handler);
    this.unsubscribe ??= this.channels.onEvent((p) => this.handlers.get(p)?.());
  }

  remove(port: Port): void {
    this.handlers.delete(port);
    if (this.handlers.size === 0 && this.unsubscribe) {
      this.unsubscribe();
      this.unsubscribe = undefined;
    }
  }
}

const dispatchers = new WeakMap<EventChannels, PortDispatch>();

/** Calls `handler` for every event on `port`; returns the function that stops it. */
export function onPort(channels: EventChannels, port: Port, handler: () => void): () => void {
  let d = dispatchers.get(channels);
  if (!d) {
    d = new PortDispatch(channels);
    dispatchers.set(channels, d);
  }
  const dispatch = d;
  dispatch.add(port, handler);
  return () => dispatch.remove(port);
}
