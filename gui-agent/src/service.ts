import type { ServiceHandler } from '@moat/qrexec';
import type { GuiAgent } from './agent.ts';
import { MAX_LAYOUT_BYTES, parseMonitorLayout } from './monitors.ts';

export const SET_MONITOR_LAYOUT_SERVICE = 'qubes.SetMonitorLayout';

/**
 * `qubes.SetMonitorLayout` for the qrexec agent: reads the layout dom0 sends (at most
 * MAX_LAYOUT_BYTES), and hands the monitors to the GUI agent. A bad layout is refused with
 * exit code 1 and the old monitors stay.
 */
export function setMonitorLayoutService(agent: Pick<GuiAgent, 'setMonitors'>): ServiceHandler {
  return async (call) => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of call.stdin as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_LAYOUT_BYTES) {
        call.stderr.write(`layout longer than ${MAX_LAYOUT_BYTES} bytes\n`);
        return 1;
      }
      chunks.push(chunk);
    }
    const parsed = parseMonitorLayout(Buffer.concat(chunks).toString('latin1'));
    if (!parsed.ok) {
      call.stderr.write(`bad monitor layout: ${parsed.reason}\n`);
      return 1;
    }
    agent.setMonitors(parsed.monitors);
    return 0;
  };
}
