/** @moat/gui-agent/daemon: the strict GUI daemon for the lab (dom0 side) and its PNG writer. */
export { type DaemonEvent, type DaemonWindow, GuiDaemon, type GuiDaemonOptions } from './daemon.ts';
export { encodePngFromBgrx } from './png.ts';
export { GUI_DAEMON_SOURCE, REFUSALS, type Refusal } from './refusals.ts';
