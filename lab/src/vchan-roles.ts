/**
 * The ends of the vchan interop tests and benches, as they run inside the lab's guests: our
 * VchanStream (native libxenvchan through @moat/xen) or Debian's C `vchan-socket-proxy`
 * driven through its stdin/stdout. Both ends of a pair run the same kind of task with
 * opposite roles; the host compares what each reported (see vchan-lab.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { connectVchan, listenVchan, type VchanStream, vchanXenstorePath } from '@moat/vchan';
import { openNativeDomain, type XenDomain } from '@moat/xen';
import { within } from '@moat/xen/conformance';
import { guestLog } from './guest.ts';
import { penaltyWorkloadJs } from './penalty-workload.ts';

/** Where a domU image puts the addon, the C peer and the C workload (see xenGuestFiles). */
export const GUEST_ADDON = '/mnt/app/moat_xen.node';
const DOMU_LOADER = '/mnt/lib64/ld-linux-x86-64.so.2';
const DOMU_PROXY = '/mnt/bin/vchan-socket-proxy';
const DOM0_PROXY = '/usr/lib/xen-4.17/bin/vchan-socket-proxy';
export const GUEST_WORKLOAD = '/mnt/bin/penalty-workload';

/** The byte after the data that says "I have everything": the closer may close now. */
const ACK = 0x06;
/** The test pattern repeats with a prime period, so a lost, doubled or moved chunk changes the hash. */
export const PATTERN_PERIOD = 1_048_573;
const CHUNK = 64 * 1024;

export type Impl = 'ours' | 'c';
export type Role = 'server' | 'client';

/** One end of one pair. `peer` is filled in by the guest (0 in a domU, the domU's id in dom0). */
export type VchanTask =
  /** Send `bytes` of pattern `sendSeed` while receiving `bytes`; the closer closes after an ACK. */
  | {
      kind: 'exchange';
      impl: Impl;
      role: Role;
      port: number;
      bytes: number;
      sendSeed: number;
      closer: boolean;
      ringBytes?: number;
      localBuffer?: number;
      timeoutMs: number;
    }
  /** Exchange like above, but the peer is killed: report how our end learnt of it. */
  | {
      kind: 'survive';
      impl: 'ours';
      role: Role;
      port: number;
      bytes: number;
      sendSeed: number;
      timeoutMs: number;
    }
  /** A C end that is SIGKILLed once it has received `killAfter` bytes. */
  | {
      kind: 'die';
      impl: 'c';
      role: Role;
      port: number;
      killAfter: number;
      sendSeed: number;
      timeoutMs: number;
    }
  /** Bench: send as fast as possible until the peer closes (C: from /dev/zero). */
  | {
      kind: 'source';
      impl: Impl;
      role: Role;
      port: number;
      ringBytes?: number;
      localBuffer?: number;
      timeoutMs: number;
    }
  /** Bench: receive `bytes`, time first to last byte, then close. */
  | {
      kind: 'sink';
      impl: Impl;
      role: Role;
      port: number;
      bytes: number;
      ringBytes?: number;
      localBuffer?: number;
      timeoutMs: number;
    }
  /** The emulation-penalty workload, as JS and as C. */
  | { kind: 'penalty'; iterations: number; runs: number };

/** `length` bytes of the pattern for `seed` (xorshift32), plus CHUNK so any offset has a full chunk. */
export function patternBlock(seed: number): Buffer {
  const block = Buffer.allocUnsafe(PATTERN_PERIOD + CHUNK);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < PATTERN_PERIOD; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block[i] = x & 0xff;
  }
  block.copy(block, PATTERN_PERIOD, 0, CHUNK);
  return block;
}

/** SHA-256 of the first `bytes` bytes of the pattern stream for `seed` (the host checks with it). */
export function patternSha256(seed: number, bytes: number): string {
  const block = patternBlock(seed);
  const hash = createHash('sha256');
  for (let sent = 0; sent < bytes; ) {
    const n = Math.min(PATTERN_PERIOD - (sent % PATTERN_PERIOD), bytes - sent);
    hash.update(block.subarray(sent % PATTERN_PERIOD, (sent % PATTERN_PERIOD) + n));
    sent += n;
  }
  return hash.digest('hex');
}

/** A byte pipe to the peer: our VchanStream, or the C proxy's stdin/stdout. */
interface Pipe {
  readonly input: Readable;
  readonly output: Writable;
  /** Our close: end() on a VchanStream, closing stdin of the proxy (which then exits). */
  close(): void;
  /** Resolves when our end is completely gone (stream closed, proxy exited) with how it went. */
  readonly gone: Promise<string>;
  kill?(): void;
}

interface GuestContext {
  /** The other domain. */
  readonly peer: number;
  /** This domain's id. */
  readonly self: number;
  domain(): XenDomain;
}

export function guestContext(peer: number, self?: number): GuestContext {
  let domain: XenDomain | undefined;
  const open = () => {
    if (!domain) {
      process.env.MOAT_XEN_ADDON ??= GUEST_ADDON;
      domain = openNativeDomain();
    }
    return domain;
  };
  return {
    peer,
    get self() {
      return self ?? open().domid;
    },
    domain: open,
  };
}

/** A console line with the process's age, to see where time goes under emulation. */
function mark(text: string): void {
  guestLog(`${text} at ${process.uptime().toFixed(1)} s`);
}

/** `localBuffer` undefined: listenVchan/connectVchan's default. */
async function openOurs(
  ctx: GuestContext,
  role: Role,
  port: number,
  ringBytes?: number,
  localBuffer?: number,
): Promise<Pipe> {
  const domain = ctx.domain();
  mark(`port ${port}: native domain ${domain.domid} open`);
  const buffer = localBuffer === undefined ? {} : { localBuffer };
  const stream: VchanStream =
    role === 'server'
      ? await listenVchan({
          domain,
          peer: ctx.peer,
          port,
          readMin: ringBytes ?? 0,
          writeMin: ringBytes ?? 0,
          ...buffer,
        })
      : await connectVchan({ domain, peer: ctx.peer, port, timeoutMs: 120_000, ...buffer });
  const gone = new Promise<string>((resolve) => {
    stream.once('close', () =>
      resolve(stream.errored ? `error ${(stream.errored as NodeJS.ErrnoException).code}` : 'closed'),
    );
  });
  // Errors surface through `gone` and the step's own checks; an unhandled one would kill the guest.
  stream.on('error', () => {});
  if (role === 'server') await stream.whenConnected();
  mark(`port ${port}: our ${role} connected`);
  return { input: stream, output: stream, close: () => stream.end(), gone };
}

function proxyArgv(ctx: GuestContext, role: Role, port: number): string[] {
  // The Qubes path: the server publishes /local/domain/<server>/data/vchan/<client>/<port>.
  const path =
    role === 'server'
      ? vchanXenstorePath(ctx.self, ctx.peer, port)
      : vchanXenstorePath(ctx.peer, ctx.self, port);
  const args = [...(role === 'server' ? ['-m', 'server'] : []), String(ctx.peer), path, '-'];
  // In a domU the proxy lives on the image's disk with its libraries; dom0 has it installed.
  return existsSync(DOMU_PROXY)
    ? [DOMU_LOADER, '--library-path', '/mnt/lib', DOMU_PROXY, ...args]
    : [DOM0_PROXY, ...args];
}

function openC(
  ctx: GuestContext,
  role: Role,
  port: number,
  stdin: 'pipe' | 'zero' = 'pipe',
  stdout: 'pipe' | 'ignore' = 'pipe',
): Pipe {
  const [file, ...args] = proxyArgv(ctx, role, port);
  const child: ChildProcess = spawn(file as string, args, {
    stdio: [stdin === 'zero' ? openSync('/dev/zero', 'r') : 'pipe', stdout, 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    if (stderr.length < 4000) stderr += s;
  });
  const gone = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) =>
      resolve(`exit ${code ?? signal}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ''}`),
    );
    child.once('error', (error) => resolve(`spawn error ${error.message}`));
  });
  // The proxy may be gone while we still write (peer death): EPIPE is reported through `gone`.
  child.stdin?.on('error', () => {});
  return {
    input: child.stdout as Readable,
    output: (child.stdin ?? undefined) as Writable,
    close: () => child.stdin?.end(),
    gone,
    kill: () => child.kill('SIGKILL'),
  };
}

async function openPipe(
  ctx: GuestContext,
  impl: Impl,
  role: Role,
  port: number,
  ringBytes?: number,
  localBuffer?: number,
): Promise<Pipe> {
  return impl === 'ours' ? openOurs(ctx, role, port, ringBytes, localBuffer) : openC(ctx, role, port);
}

/** Writes `bytes` of the pattern with backpressure; stops early (returns false) if the output fails. */
async function sendPattern(output: Writable, seed: number, bytes: number): Promise<boolean> {
  const block = patternBlock(seed);
  let failed = false;
  const onError = () => {
    failed = true;
  };
  output.on('error', onError);
  try {
    for (let sent = 0; sent < bytes && !failed && !output.destroyed; ) {
      const at = sent % PATTERN_PERIOD;
      const n = Math.min(CHUNK, bytes - sent);
      sent += n;
      if (!output.write(block.subarray(at, at + n))) {
        await new Promise<void>((resolve) => {
          const done = () => {
            output.off('drain', done);
            output.off('close', done);
            output.off('error', done);
            resolve();
          };
          output.on('drain', done);
          output.on('close', done);
          output.on('error', done);
        });
      }
    }
  } finally {
    output.off('error', onError);
  }
  return !failed && !output.destroyed;
}

/**
 * Hashes the first `bytes` that arrive and keeps a few bytes after them; `until` resolves when
 * `bytes + trailing` have come, `ended` on EOF or error.
 */
function receiver(input: Readable, bytes: number, trailing = 0) {
  const hash = createHash('sha256');
  let received = 0;
  let extra: number[] = [];
  let firstAt = 0;
  let lastAt = 0;
  let reached: (() => void) | undefined;
  const until = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const ended = new Promise<string>((resolve) => {
    input.once('end', () => resolve('eof'));
    input.once('error', (error) =>
      resolve(`error ${(error as NodeJS.ErrnoException).code ?? error.message}`),
    );
    input.once('close', () => resolve('closed'));
  });
  input.on('data', (chunk: Buffer) => {
    if (firstAt === 0) firstAt = performance.now();
    const want = Math.max(0, bytes - received);
    if (want > 0) hash.update(want >= chunk.length ? chunk : chunk.subarray(0, want));
    if (chunk.length > want) extra = [...extra, ...chunk.subarray(want, want + 16)].slice(0, 16);
    received += chunk.length;
    if (received >= bytes) lastAt ||= performance.now();
    if (received >= bytes + trailing) reached?.();
  });
  return {
    until,
    ended,
    get received() {
      return received;
    },
    get extra() {
      return extra;
    },
    sha256: () => hash.digest('hex'),
    get ms() {
      return lastAt - firstAt;
    },
  };
}

async function exchange(ctx: GuestContext, t: Extract<VchanTask, { kind: 'exchange' }>) {
  const pipe = await within(
    180_000,
    'the peer connecting',
    openPipe(ctx, t.impl, t.role, t.port, t.ringBytes, t.localBuffer),
  );
  const start = performance.now();
  const rx = receiver(pipe.input, t.bytes, t.closer ? 1 : 0);
  const work = async () => {
    const sent = await sendPattern(pipe.output, t.sendSeed, t.bytes);
    if (!sent) throw new Error('the output failed before every byte was written');
    await Promise.race([
      rx.until,
      rx.ended.then((how) =>
        Promise.reject(new Error(`input ended early (${how}) after ${rx.received} bytes`)),
      ),
    ]);
    if (t.closer) {
      if (rx.extra[0] !== ACK)
        throw new Error(`expected the peer's ACK after the data, got ${JSON.stringify(rx.extra)}`);
      pipe.close();
    } else {
      pipe.output.write(Buffer.of(ACK));
    }
    const how = await rx.ended;
    return { how, gone: await pipe.gone };
  };
  // Progress on the console, so a slow or stuck exchange can be told apart in the log.
  const progress = setInterval(
    () =>
      guestLog(
        `exchange port ${t.port}: received ${rx.received} of ${t.bytes} after ${Math.round(performance.now() - start)} ms`,
      ),
    15_000,
  );
  const { how, gone } = await within(t.timeoutMs, `exchanging ${t.bytes} bytes each way`, work()).finally(
    () => clearInterval(progress),
  );
  return {
    received: rx.received,
    sha256: rx.sha256(),
    extraBytes: rx.received - t.bytes,
    inputEnd: how,
    end: gone,
    ms: Math.round(performance.now() - start),
  };
}

async function survive(ctx: GuestContext, t: Extract<VchanTask, { kind: 'survive' }>) {
  const pipe = await within(180_000, 'the peer connecting', openPipe(ctx, 'ours', t.role, t.port));
  const rx = receiver(pipe.input, t.bytes);
  const start = performance.now();
  void sendPattern(pipe.output, t.sendSeed, t.bytes);
  const how = await within(
    t.timeoutMs,
    'EOF or an error after the peer was killed',
    Promise.race([rx.ended, rx.until.then(() => 'all data arrived: the peer was not killed')]),
  );
  const gone = await within(30_000, 'the stream closing after the peer died', pipe.gone);
  return {
    received: rx.received,
    inputEnd: how,
    end: gone,
    msToNotice: Math.round(performance.now() - start),
  };
}

async function die(ctx: GuestContext, t: Extract<VchanTask, { kind: 'die' }>) {
  const pipe = openC(ctx, t.role, t.port);
  const rx = receiver(pipe.input, t.killAfter);
  void sendPattern(pipe.output, t.sendSeed, 1 << 30);
  await within(t.timeoutMs, `receiving ${t.killAfter} bytes before the kill`, rx.until);
  pipe.kill?.();
  return {
    receivedBeforeKill: rx.received,
    end: await within(30_000, 'the killed proxy exiting', pipe.gone),
  };
}

async function source(ctx: GuestContext, t: Extract<VchanTask, { kind: 'source' }>) {
  if (t.impl === 'c') {
    // C reads /dev/zero itself: no JavaScript in the C figure.
    const pipe = openC(ctx, t.role, t.port, 'zero', 'ignore');
    return { end: await within(t.timeoutMs, 'the sink closing', pipe.gone) };
  }
  const pipe = await within(
    180_000,
    'the peer connecting',
    openOurs(ctx, t.role, t.port, t.ringBytes, t.localBuffer),
  );
  pipe.input.resume();
  const zeros = Buffer.alloc(CHUNK);
  const output = pipe.output;
  let sent = 0;
  const pump = async () => {
    while (!output.destroyed && !output.writableEnded) {
      sent += CHUNK;
      if (!output.write(zeros)) {
        await new Promise<void>((resolve) => {
          output.once('drain', resolve);
          output.once('close', resolve);
        });
      }
    }
  };
  void pump();
  const end = await within(t.timeoutMs, 'the sink closing', pipe.gone);
  return { end, sent };
}

async function sink(ctx: GuestContext, t: Extract<VchanTask, { kind: 'sink' }>) {
  const pipe =
    t.impl === 'c'
      ? openC(ctx, t.role, t.port)
      : await within(
          180_000,
          'the peer connecting',
          openOurs(ctx, t.role, t.port, t.ringBytes, t.localBuffer),
        );
  const rx = receiver(pipe.input, t.bytes);
  await within(t.timeoutMs, `receiving ${t.bytes} bytes`, rx.until);
  const ms = rx.ms;
  pipe.input.pause();
  if (t.impl === 'c') pipe.kill?.();
  else (pipe.input as VchanStream).destroy();
  await within(30_000, 'our end closing', pipe.gone);
  return { bytes: t.bytes, received: rx.received, ms, mbPerS: t.bytes / 1e6 / (ms / 1000) };
}

async function penalty(t: Extract<VchanTask, { kind: 'penalty' }>) {
  const js: number[] = [];
  let jsHash = 0;
  for (let i = 0; i < t.runs; i++) {
    const start = performance.now();
    jsHash = penaltyWorkloadJs(t.iterations);
    js.push(performance.now() - start);
  }
  const c: number[] = [];
  let cHash = -1;
  if (existsSync(GUEST_WORKLOAD)) {
    for (let i = 0; i < t.runs; i++) {
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn(GUEST_WORKLOAD, [String(t.iterations)], { stdio: ['ignore', 'pipe', 'inherit'] });
        let text = '';
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (s: string) => {
          text += s;
        });
        child.once('error', reject);
        child.once('exit', (code) =>
          code === 0 ? resolve(text) : reject(new Error(`workload exit ${code}`)),
        );
      });
      const r = JSON.parse(out) as { hash: number; ms: number };
      c.push(r.ms);
      cHash = r.hash;
    }
  }
  return { iterations: t.iterations, jsMs: js, jsHash, cMs: c, cHash };
}

/** Runs one task; the result is what the guest reports for its step. */
export function runVchanTask(ctx: GuestContext, task: VchanTask): Promise<unknown> {
  switch (task.kind) {
    case 'exchange':
      return exchange(ctx, task);
    case 'survive':
      return survive(ctx, task);
    case 'die':
      return die(ctx, task);
    case 'source':
      return source(ctx, task);
    case 'sink':
      return sink(ctx, task);
    case 'penalty':
      return penalty(task);
  }
}
