/**
 * @moat/gui-agent: the VM side of the Qubes GUI protocol. `GuiAgent.start` connects to the GUI
 * daemon; `openWindow({ title, width, height })` gives a window with `draw`, `setTitle`,
 * `resize`, `close` and an async iterator of input events. The lab daemon is on the
 * `@moat/gui-agent/daemon` subpath.
 */
export {
  GuiAgent,
  type GuiAgentOptions,
  type GuiAgentStats,
  type GuiLog,
  type GuiSettingsSource,
  guiDomainFrom,
  startGuiAgent,
} from './agent.ts';
export { GuiError, GuiProtocolError } from './errors.ts';
export { GNTALLOC_LIMIT_PATH, raiseGntallocLimit } from './gntalloc-limit.ts';
export { type KeyMeaning, type Keymap, keymapFor, Modifier, parseLayoutSetting } from './keymap.ts';
export { MAX_MONITORS, type Monitor, parseMonitorLayout } from './monitors.ts';
export { SET_MONITOR_LAYOUT_SERVICE, setMonitorLayoutService } from './service.ts';
export { encodeClassField, encodeTitle } from './strings.ts';
export { type GuiInputEvent, GuiWindow, type OpenWindowOptions } from './window.ts';
export type { Rect, Xconf } from './wire.ts';
export * as guiWire from './wire.ts';
