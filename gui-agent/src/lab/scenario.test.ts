import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { SimHypervisor } from '@moat/xen/sim';
import { describe, expect, it } from 'vitest';
import { GUI_SCENARIO, guiDom0Steps, guiVmSteps, runScenario } from './scenario.ts';

describe('the GUI lab scenario on the host (sim grants, unix-socket vchan)', () => {
  it('runs both halves to the end with the results the lab test expects', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'gui-scenario-'));
    try {
      const hv = new SimHypervisor({ gntallocLimit: 2048 });
      const vm = hv.createDomain({ name: 'gui' });
      const result = await runScenario(
        guiVmSteps({
          transport: socketVchanTransport({ directory, localDomain: vm.domid }),
          grants: vm.grantSharer,
          guiDomain: 0,
        }),
        guiDom0Steps({
          transport: socketVchanTransport({ directory, localDomain: 0 }),
          grants: hv.dom0.grantMapper,
          copier: hv.dom0.grantCopier,
          vmDomain: vm.domid,
        }),
      );
      const d = result.dom0 as Record<string, Record<string, unknown>>;
      const v = result.vm as Record<string, Record<string, unknown>>;
      expect(d['pattern matches']).toMatchObject({
        image: { count: 0 },
        png: { width: 320, height: 240, count: 0 },
      });
      expect(d['resize reached the domU']).toMatchObject({
        geometry: { ...GUI_SCENARIO.resized, queued: false },
        image: { count: 0 },
      });
      expect(d['keys and damage']).toMatchObject({ insideWrong: 0, outsideChanged: 0 });
      expect(d['close request ended it']).toMatchObject({ windows: 0, mappedPages: 0, warnings: [] });
      expect(d['cycles leave no grants']).toMatchObject({ destroyed: 100, windows: 0, mappedPages: 0 });
      expect(v['open/close cycles']).toEqual({ sharedPages: 0, windows: 0 });
      const keys = (v['events handled']!.events as { type: string; pressed?: boolean; keysym?: string }[])
        .filter((e) => e.type === 'key' && e.pressed)
        .map((e) => e.keysym);
      expect(keys).toEqual(['a', 'z', 'Left', 'KP_Add']);
      expect(v['events handled']).toMatchObject({ size: { width: 400, height: 300 }, sharedPages: 0 });
      const bench = d['bench frames and grant copy']!;
      expect(bench.frames).toBe(GUI_SCENARIO.bench.frames);
      expect(bench.fps).toBeGreaterThan(0);
      expect(bench.grantCopyFps).toBeGreaterThan(0);
      expect(v['bench frames']).toMatchObject({ sharedPages: 0 });
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
