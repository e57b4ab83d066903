import type { VmImage } from '@moat/unikernel';
import { describe, expect, it } from 'vitest';
import { GuestHandle } from './guest-run.ts';
import type { Lab } from './lab.ts';
import { SharedLab } from './shared-lab.ts';

/** A lab without Xen: domUs end when `xl destroy` names them, unless listed as stuck. */
function fakeLab(o: { stuck?: string[]; leftover?: string } = {}) {
  const domUs = new Map<string, GuestHandle>();
  const state = { shutdowns: 0, destroyed: [] as string[] };
  const lab: Lab = {
    timings: { imageBuildMs: 0, bootMs: 1, dom0UptimeAtReadyMs: 1 },
    consoleTail: () => '',
    shareFile: (source) => `/mnt/lab/files/${source}`,
    runInDom0: () => new GuestHandle('dom0 x'),
    createDomU: (_image, options) => {
      const handle = new GuestHandle(`domU ${options.name}`);
      domUs.set(options.name ?? '?', handle);
      return handle;
    },
    exec: async (argv) => {
      if (argv[1] === 'destroy') {
        state.destroyed.push(argv[2] ?? '');
        if (!o.stuck?.includes(argv[2] ?? '')) domUs.get(argv[2] ?? '')?.exited(0, 'destroyed');
        return { code: 0, lines: [] };
      }
      const lines = ['Name  ID   Mem VCPUs State Time(s)', 'Domain-0  0  1024  2  r-----  9.0'];
      if (o.leftover) lines.push(`${o.leftover}  7  128  1  --ps-d  1.0`);
      return { code: 0, lines };
    },
    shutdown: async () => {
      state.shutdowns++;
    },
  };
  return { lab, state, domUs };
}

const image = {} as VmImage;
const quiet = () => {};

/** A SharedLab whose first boot gives `first` and later boots clean fakes; counts boots, keeps the log. */
function sharedOver(first: Lab, endWaitMs?: number) {
  const logged: string[] = [];
  const counts = { boots: 0 };
  const shared = new SharedLab(
    async () => (++counts.boots === 1 ? first : fakeLab().lab),
    (line) => logged.push(line),
    endWaitMs,
  );
  return { shared, logged, counts };
}

describe('one lab shared by the lab files of a run', () => {
  it('boots once; later files reuse it', async () => {
    const { lab } = fakeLab();
    let boots = 0;
    const shared = new SharedLab(async () => {
      boots++;
      return lab;
    }, quiet);
    const first = await shared.session('a');
    await first.end();
    const second = await shared.session('b');
    expect(boots).toBe(1);
    expect([first.reused, second.reused]).toEqual([false, true]);
  });

  it('destroys the domUs a file left running, and the next file keeps the lab', async () => {
    const { lab, state } = fakeLab();
    let boots = 0;
    const shared = new SharedLab(async () => {
      boots++;
      return lab;
    }, quiet);
    const session = await shared.session('a');
    session.createDomU(image, { type: 'pv', name: 'left-running' });
    await session.end();
    expect(state.destroyed).toEqual(['left-running']);
    await shared.session('b');
    expect([boots, state.shutdowns]).toEqual([1, 0]);
  });

  it('a file whose domU will not go leaves the lab to no one: it is shut down and the next file boots anew', async () => {
    const stuck = fakeLab({ stuck: ['hung'] });
    const { shared, logged, counts } = sharedOver(stuck.lab, 20);
    const session = await shared.session('a');
    session.createDomU(image, { type: 'pvh', name: 'hung' });
    await session.end();
    expect(stuck.state.shutdowns).toBe(1);
    expect(logged.join('\n')).toMatch(/a leaves the lab unusable \(still running: domU hung\)/);
    expect((await shared.session('b')).reused).toBe(false);
    expect(counts.boots).toBe(2);
  });

  it('a domain left in xl list (not ours to name) also makes the next file boot a new lab', async () => {
    const dirty = fakeLab({ leftover: 'stray' });
    const { shared, logged, counts } = sharedOver(dirty.lab);
    await (await shared.session('a')).end();
    expect(dirty.state.shutdowns).toBe(1);
    expect(logged.join('\n')).toMatch(/a leaves the lab unusable \(domains left: stray\)/);
    expect((await shared.session('b')).reused).toBe(false);
    expect(counts.boots).toBe(2);
  });
});
