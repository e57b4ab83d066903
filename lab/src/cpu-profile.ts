/**
 * A V8 CPU profile (node:inspector's `Profiler.stop`, the format `node --cpu-prof` writes)
 * summed up into what a lab report can print: where a guest's time went, by function, with
 * the idle and garbage-collector shares apart. Used by the netif guest's `profile-stop`.
 */

/** The parts of a `Profiler.Profile` the summary reads. */
export interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
    readonly hitCount?: number;
    readonly children?: readonly number[];
  }[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
}

export interface ProfileSummary {
  /** Profiled wall time, ms. */
  readonly ms: number;
  readonly samples: number;
  /** Shares (0..1) of the samples: the event loop waiting, V8's collector, V8/native outside JS. */
  readonly idle: number;
  readonly gc: number;
  readonly program: number;
  /** Functions by self time, busiest first: `name file:line`, ms, share of the busy samples. */
  readonly top: readonly { readonly fn: string; readonly ms: number; readonly busyShare: number }[];
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

export function summarizeCpuProfile(profile: CpuProfile, topN = 15): ProfileSummary {
  const ms = (profile.endTime - profile.startTime) / 1000;
  const hits = new Map<number, number>();
  if (profile.samples) for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  else for (const n of profile.nodes) hits.set(n.id, n.hitCount ?? 0);
  let total = 0;
  for (const h of hits.values()) total += h;
  const byFn = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  let program = 0;
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const name = (frame: CpuProfile['nodes'][number]['callFrame']) => {
    const file = frame.url.slice(frame.url.lastIndexOf('/') + 1);
    return `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
  };
  for (const n of profile.nodes) {
    const h = hits.get(n.id) ?? 0;
    if (h === 0) continue;
    const { functionName, url } = n.callFrame;
    if (functionName === '(idle)') idle += h;
    else if (functionName === '(garbage collector)') gc += h;
    else if (functionName === '(program)') program += h;
    // Native code (an addon's functions, V8 builtins) has no script: named by its JS caller.
    const caller = !url && !functionName.startsWith('(') ? byId.get(parent.get(n.id) ?? -1) : undefined;
    const key = `${name(n.callFrame)}${caller ? ` <- ${name(caller.callFrame)}` : ''}`;
    byFn.set(key, (byFn.get(key) ?? 0) + h);
  }
  const perSample = total > 0 ? ms / total : 0;
  const busy = total - idle;
  const top = [...byFn.entries()]
    .filter(([key]) => !key.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([fn, h]) => ({ fn, ms: round(h * perSample, 1), busyShare: busy > 0 ? round(h / busy, 3) : 0 }));
  const share = (h: number) => (total > 0 ? round(h / total, 3) : 0);
  return { ms: round(ms, 1), samples: total, idle: share(idle), gc: share(gc), program: share(program), top };
}
