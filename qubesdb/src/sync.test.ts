import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketVchanTransport } from '@moat/vchan/socket';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { measureWatchLatency } from './bench.ts';
import { QubesDbDaemon } from './dom0.ts';
import { QubesDbError } from './errors.ts';
import { connectQubesDb, type QubesDb } from './vm.ts';

const VM = 12;
let directory: string;
let daemons: QubesDbDaemon[] = [];
let replicas: QubesDb[] = [];
const quiet = () => {};

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'qubesdb-'));
});
afterEach(async () => {
  for (const db of replicas) db.close();
  for (const daemon of daemons) await daemon.stop();
  daemons = [];
  replicas = [];
  rmSync(directory, { recursive: true, force: true });
});

async function startDaemon(initial: [string, string][] = []): Promise<QubesDbDaemon> {
  const daemon = new QubesDbDaemon({
    vmDomain: VM,
    vmName: 'sys-moat',
    transport: socketVchanTransport({ directory, localDomain: 0 }),
    initial,
    log: quiet,
  });
  daemons.push(daemon);
  await daemon.start();
  return daemon;
}

async function connectVm(options: { reconnect?: boolean } = {}): Promise<QubesDb> {
  const db = await connectQubesDb({
    transport: socketVchanTransport({ directory, localDomain: VM }),
    timeoutMs: 5000,
    log: quiet,
    ...options,
  });
  replicas.push(db);
  return db;
}

/** Waits until `check` holds, polling on the event loop (bounded). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('QubesDB between our VM side and our dom0 daemon, over unix-socket vchan', () => {
  it('the VM synchronises the whole database on connect', async () => {
    const daemon = await startDaemon([
      ['/name', 'sys-moat'],
      ['/qubes-ip', '10.137.0.12'],
      ['/qubes-service/qubes-firewall', '1'],
    ]);
    const synced = daemon.nextEvent('synchronised', 5000);
    const db = await connectVm();
    expect(db.synchronised).toBe(true);
    expect(db.read('/name')).toBe('sys-moat');
    expect(db.list('/qubes-')).toEqual(['/qubes-ip', '/qubes-service/qubes-firewall']);
    expect([...db.multiread('/qubes-service/')]).toEqual([['/qubes-service/qubes-firewall', '1']]);
    expect((await synced).entries).toBe(3);
    expect(daemon.vmSynchronised).toBe(true);
  });

  it('sees dom0 writes and removals at run time, in order, through watches', async () => {
    const daemon = await startDaemon([['/name', 'vm']]);
    const db = await connectVm();
    const seen: string[] = [];
    db.watch('/qubes-ip', (path) => seen.push(`ip:${path}=${db.read(path) ?? '-'}`));
    db.watch('/qubes-service/', (path) => seen.push(`svc:${path}`));
    daemon.write('/qubes-ip', '10.137.0.99');
    daemon.write('/qubes-service/a', '1');
    daemon.write('/qubes-service/b', '1');
    daemon.write('/qubes-ipv6', 'not watched');
    daemon.rm('/qubes-ip');
    daemon.rm('/qubes-service/');
    await until(() => seen.length === 5, 'five watch events');
    expect(seen).toEqual([
      'ip:/qubes-ip=10.137.0.99',
      'svc:/qubes-service/a',
      'svc:/qubes-service/b',
      'ip:/qubes-ip=-',
      'svc:/qubes-service/',
    ]);
    expect(db.list('')).toEqual(['/name', '/qubes-ipv6']);
    expect(db.stats).toMatchObject({ pushedWrites: 4, pushedRemovals: 2, protocolErrors: 0 });
  });

  it('watches work as async iterators too', async () => {
    const daemon = await startDaemon();
    const db = await connectVm();
    const iterator = db.watches('/x/');
    daemon.write('/x/1', 'a');
    daemon.write('/x/2', 'b');
    expect((await iterator.next()).value).toBe('/x/1');
    expect((await iterator.next()).value).toBe('/x/2');
    await iterator.return?.();
  });

  it('the VM writes and removes; dom0 gets them and answers OK', async () => {
    const daemon = await startDaemon([['/name', 'vm']]);
    const db = await connectVm();
    const vmWrite = daemon.nextEvent('vm-write', 5000);
    db.write('/qubes-vm-state', 'running');
    expect(await vmWrite).toMatchObject({ path: '/qubes-vm-state' });
    expect(daemon.read('/qubes-vm-state')).toBe('running');
    const vmRm = daemon.nextEvent('vm-rm', 5000);
    expect(db.rm('/qubes-vm-state')).toBe(true);
    await vmRm;
    expect(daemon.read('/qubes-vm-state')).toBeUndefined();
    expect(db.rm('/nothing-here')).toBe(false);
    expect(db.stats.errorResponses).toBe(0);
  });

  it('refuses writes the daemon would refuse, without touching the link', async () => {
    await startDaemon();
    const db = await connectVm();
    expect(() => db.write('relative', 'x')).toThrow(QubesDbError);
    expect(() => db.write('/dir/', 'x')).toThrow(QubesDbError);
    expect(() => db.write('/bad path', 'x')).toThrow(QubesDbError);
    expect(() => db.write('/nul', Uint8Array.of(0x41, 0))).toThrow(QubesDbError);
    expect(() => db.write('/big', 'x'.repeat(3072))).toThrow(QubesDbError);
    db.write('/max', 'x'.repeat(3071));
    expect(db.read('/max')?.length).toBe(3071);
  });

  it('the firewall commit convention: a complete snapshot per empty write to the base', async () => {
    const daemon = await startDaemon([
      ['/qubes-firewall/10.137.0.5/policy', 'drop'],
      ['/qubes-firewall/10.137.0.5/0000', 'action=accept proto=tcp dstports=443-443'],
      ['/qubes-firewall/10.137.0.5', ''],
    ]);
    const db = await connectVm();
    // Already committed when we synchronised.
    const first = db.latestCommit('/qubes-firewall/10.137.0.5');
    expect(first && [...first.entries]).toEqual([
      ['0000', 'action=accept proto=tcp dstports=443-443'],
      ['policy', 'drop'],
    ]);
    const next = db.waitForCommit('/qubes-firewall/10.137.0.5', { timeoutMs: 5000 });
    const snapshots = db.commits('/qubes-firewall/10.137.0.5/');
    expect((await snapshots.next()).value?.sequence).toBe(first?.sequence);
    // qubesd's reload: rm base/, write the rules, then the empty commit write.
    daemon.commit('/qubes-firewall/10.137.0.5', [
      ['policy', 'accept'],
      ['0000', 'action=drop dst4=192.168.0.0/16'],
      ['0001', 'action=drop proto=udp'],
    ]);
    const committed = await next;
    expect([...committed.entries]).toEqual([
      ['0000', 'action=drop dst4=192.168.0.0/16'],
      ['0001', 'action=drop proto=udp'],
      ['policy', 'accept'],
    ]);
    expect((await snapshots.next()).value).toBe(committed);
    await snapshots.return?.();
    // Writes after the commit do not change the committed snapshot until the next commit.
    daemon.write('/qubes-firewall/10.137.0.5/0002', 'action=accept');
    await until(() => db.read('/qubes-firewall/10.137.0.5/0002') !== undefined, 'the uncommitted rule');
    expect(db.latestCommit('/qubes-firewall/10.137.0.5')?.entries.has('0002')).toBe(false);
  });

  it('waitForCommit fails with ETIMEDOUT or on close instead of hanging', async () => {
    await startDaemon();
    const db = await connectVm();
    await expect(db.waitForCommit('/none', { timeoutMs: 10 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    const pending = db.waitForCommit('/none');
    db.close();
    await expect(pending).rejects.toMatchObject({ code: 'ECLOSED' });
  });

  it('dom0 writes made before the VM connected are in the dump, not pushed twice', async () => {
    const daemon = await startDaemon();
    daemon.write('/early', '1');
    const db = await connectVm();
    expect(db.read('/early')).toBe('1');
    expect(db.stats.pushedWrites).toBe(0);
  });

  it('the VM reconnects and re-synchronises when dom0 restarts its daemon', async () => {
    const first = await startDaemon([
      ['/name', 'vm'],
      ['/gone', 'x'],
    ]);
    const db = await connectVm();
    await first.stop();
    const seen: string[] = [];
    db.watch('/new', (path) => seen.push(path));
    const second = await startDaemon([
      ['/name', 'vm'],
      ['/new', 'y'],
    ]);
    await second.nextEvent('synchronised', 5000);
    await until(() => db.read('/new') === 'y', 'the re-synchronised entry');
    expect(seen).toEqual(['/new']);
    expect(db.stats.reconnects).toBe(1);
    // Like the C VM daemon, the replica is not cleared on re-sync.
    expect(db.read('/gone')).toBe('x');
    second.write('/after', 'z');
    await until(() => db.read('/after') === 'z', 'a write after reconnecting');
  });

  it('close() also stops a reconnection that is waiting for dom0', async () => {
    const first = await startDaemon([['/name', 'vm']]);
    const db = await connectVm();
    await first.stop();
    await until(() => db.stats.reconnects === 1, 'the reconnection attempt');
    db.close();
    await new Promise((resolve) => setTimeout(resolve, 30));
    const second = await startDaemon([['/name', 'vm']]);
    let connected = false;
    second.onEvent((event) => {
      if (event.kind === 'connected') connected = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(connected).toBe(false);
  });

  it('dom0 listens again after the VM goes away, and serves the next connection', async () => {
    const daemon = await startDaemon([['/name', 'vm']]);
    const db = await connectVm();
    const disconnected = daemon.nextEvent('disconnected', 5000);
    db.close();
    expect((await disconnected).error).toBeUndefined();
    expect(daemon.vmSynchronised).toBe(false);
    daemon.write('/while-away', '1');
    const again = await connectVm();
    expect(again.read('/while-away')).toBe('1');
  });

  it('measures write → watch delivery latency against a bare socket (reported, not asserted)', async () => {
    const report = await measureWatchLatency({ writes: 200 });
    console.log(
      `qubesdb write→watch over unix-socket vchan (${report.qubesdb.samples} writes): median ${report.qubesdb.medianMs} ms, ` +
        `p90 ${report.qubesdb.p90Ms} ms, p99 ${report.qubesdb.p99Ms} ms, max ${report.qubesdb.maxMs} ms; ` +
        `bare unix socket median ${report.rawSocket.medianMs} ms; ratio ${report.medianRatio.toFixed(2)}`,
    );
    expect(report.qubesdb.samples).toBe(200);
  });
});
