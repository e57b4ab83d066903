/**
 * What the VM's window loop needs from a view of one image (or of a refusal): its size, its
 * title, its pixels, and what input does to it. The full view (fit, zoom, pan, rotation,
 * animation, help) is the viewer core's; `StandInView` is the 1:1 stand-in the VM uses
 * until it lands.
 */
import type { GuiInputEvent } from '@moat/gui-agent';

export interface ViewSession {
  /** The window's size (the loop opens it at this size and reports user resizes). */
  readonly width: number;
  readonly height: number;
  /** `name - WxH - zoom%` (the GUI agent makes it safe for the daemon). */
  title(): string;
  /** The window's pixels: width × height 8-bit RGBA, opaque. */
  render(): Uint8Array;
  /** The window was resized to width × height. */
  resize(width: number, height: number): void;
  /** Applies one input event; true when the window must be drawn again. */
  handle(event: GuiInputEvent): boolean;
  /** Milliseconds until the next animation frame, undefined when nothing plays. */
  nextFrameInMs(): number | undefined;
  /** Moves the animation to its next frame (after `nextFrameInMs`). */
  advanceFrame(): void;
}
