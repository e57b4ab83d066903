import { describe, expect, it } from 'vitest';
import { XenstoreClient } from '../client.ts';
import { XenstoreConnectionError, XenstoreError, XenstoreTimeoutError } from '../errors.ts';
import { perms } from '../perms.ts';
import { XenbusTransport } from '../transports/xenbus.ts';
import type { WatchEvent } from '../watch.ts';
import { encodeMessage, joinStrings, XsType } from '../wire.ts';
import { XenstoredSim } from './xenstored.ts';

// Behaviour of the sim that needs several domains at once (the conformance suite runs as one
// identity so that it can run unchanged against the real xenstored); the numbers are those of
// the C xenstored 4.17 quoted in ./quotas.ts.

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (error) {
    if (error instanceof XenstoreError) return error.code;
    throw error;
  }
};

const tick = () => new Promise((r) => setTimeout(r, 0));

function setup() {
  const sim = new XenstoredSim();
  sim.createDomain(3, 'client-a');
  sim.createDomain(4, 'client-b');
  const dom0 = new XenstoreClient(sim.connectSocket());
  const a = new XenstoreClient(sim.connect({ domid: 3 }));
  const b = new XenstoreClient(sim.connect({ domid: 4 }));
  return { sim, dom0, a, b };
}

describe('XenstoredSim permissions between domains', () => {
  it('lets a domain read and write exactly what the permission list grants it', async () => {
    const { dom0, a, b } = setup();
    await dom0.write('/local/domain/0/data/shared', 'v');
    await dom0.setPermissions('/local/domain/0/data/shared', perms('n0', 'r3'));
    expect(await a.readString('/local/domain/0/data/shared')).toBe('v');
    expect(await code(b.read('/local/domain/0/data/shared'))).toBe('EACCES');
    expect(await code(a.write('/local/domain/0/data/shared', 'x'))).toBe('EACCES');
    await dom0.setPermissions('/local/domain/0/data/shared', perms('n0', 'b3'));
    await a.write('/local/domain/0/data/shared/child', 'mine');
    expect((await a.getPermissions('/local/domain/0/data/shared/child'))[0]).toEqual({
      domid: 3,
      access: 'none',
    });
    expect(await code(a.setPermissions('/local/domain/0/data/shared', perms('n3')))).toBe('EACCES');
  });

  it('tells "absent" only to domains that may read the nearest existing parent', async () => {
    const { dom0, a, b } = setup();
    await dom0.mkdir('/local/domain/0/data/dir');
    await dom0.setPermissions('/local/domain/0/data/dir', perms('n0', 'r3'));
    expect(await code(a.read('/local/domain/0/data/dir/missing'))).toBe('ENOENT');
    expect(await code(b.read('/local/domain/0/data/dir/missing'))).toBe('EACCES');
  });

  it('ignores permission entries of domains that do not exist, and refuses such an owner', async () => {
    const { dom0 } = setup();
    await dom0.write('/p', 'v');
    await dom0.setPermissions('/p', perms('n0', 'r99'));
    expect(await dom0.getPermissions('/p')).toEqual(perms('n0', 'r99'));
    expect(await code(dom0.setPermissions('/p', perms('n99')))).toBe('ENOENT');
  });

  it('gives a domain its target domain rights after SET_TARGET', async () => {
    const { sim, dom0, b } = setup();
    await dom0.write('/local/domain/0/data/t', 'v');
    await dom0.setPermissions('/local/domain/0/data/t', perms('n0', 'r3'));
    expect(await code(b.read('/local/domain/0/data/t'))).toBe('EACCES');
    await dom0.setTarget(4, 3);
    expect(await b.readString('/local/domain/0/data/t')).toBe('v');
    expect(sim.peek('/local/domain/0/data/t')?.value).toBe('v');
  });
});

describe('XenstoredSim quotas (exact C xenstored 4.17 numbers)', () => {
  it('allows 1000 nodes per domain, counting the ones the toolstack gave it', async () => {
    const { sim, a } = setup();
    const owned = sim.entriesOwnedBy(3);
    expect(owned).toBe(11); // what libxl gives a new domain
    let created = 0;
    for (let d = 0; ; d++) {
      const r = await code(a.mkdir(`data/d${d}`));
      if (r !== 'ok') {
        expect(r).toBe('ENOSPC');
        break;
      }
      created++;
      const batch = await Promise.all(
        Array.from({ length: 40 }, (_, i) => code(a.mkdir(`data/d${d}/n${i}`))),
      );
      created += batch.filter((x) => x === 'ok').length;
      if (batch.includes('ENOSPC')) break;
    }
    expect(owned + created).toBe(1000);
    expect(sim.entriesOwnedBy(3)).toBe(1000);
  });

  it('allows 129 watches per domain (the check is "more than 128") and counts all its connections', async () => {
    const { sim, a } = setup();
    const a2 = new XenstoreClient(sim.connect({ domid: 3 }));
    for (let i = 0; i < 100; i++) await a.watch(`data/w${i}`, { onEvent: () => undefined });
    for (let i = 0; i < 29; i++) await a2.watch(`data/v${i}`, { onEvent: () => undefined });
    expect(await code(a2.watch('data/one-more'))).toBe('E2BIG');
    expect(await code(a.watch('data/one-more'))).toBe('E2BIG');
  });

  it('allows 11 open transactions per connection (the check is "more than 10")', async () => {
    const { sim, a } = setup();
    const txs = [];
    for (let i = 0; i < 11; i++) txs.push(await a.startTransaction());
    expect(await code(a.startTransaction())).toBe('ENOSPC');
    const other = new XenstoreClient(sim.connect({ domid: 3 }));
    await (await other.startTransaction()).abort();
    await txs[0]!.abort();
    await (await a.startTransaction()).abort();
  });

  it('refuses a record of 2048 bytes or more for a domain, counting header, permissions and value', async () => {
    const { a } = setup();
    // 24-byte header + one 8-byte permission + value: 2015 bytes of value is 2047 in all.
    await a.write('data/fits', 'x'.repeat(2015));
    expect(await code(a.write('data/too-big', 'x'.repeat(2016)))).toBe('ENOSPC');
  });

  it('refuses node writes past the memory quota with EIO and watches with ENOMEM', async () => {
    const sim = new XenstoredSim({ quotas: { memoryPerDomain: 8000 } });
    sim.createDomain(3);
    const a = new XenstoreClient(sim.connect({ domid: 3 }));
    let failure = 'ok';
    for (let i = 0; i < 10 && failure === 'ok'; i++)
      failure = await code(a.write(`data/k${i}`, 'x'.repeat(1500)));
    expect(failure).toBe('EIO');
    expect(await code(a.watch(`data/${'w'.repeat(1000)}`, { token: 't'.repeat(1000) }))).toBe('ENOMEM');
    await a.rm('data/k0');
    await a.write('data/fits-again', 'v');
  });

  it('refuses a transaction touching more than 1024 nodes, and then fails its commit', async () => {
    const { a } = setup();
    const tx = await a.startTransaction();
    const results = await Promise.all(Array.from({ length: 1100 }, (_, i) => code(tx.read(`data/m${i}`))));
    expect(results.filter((r) => r === 'ENOENT').length).toBe(1023); // the first read touches data too
    expect(results.filter((r) => r === 'ENOSPC').length).toBe(1100 - 1023);
    expect(await code(tx.commit())).toBe('ENOMEM');
  });
});

describe('XenstoredSim watches', () => {
  it('sends events only to watchers that may read the node (or its parent)', async () => {
    const { dom0, a, b } = setup();
    await dom0.mkdir('/local/domain/0/data/secret');
    await dom0.setPermissions('/local/domain/0/data/secret', perms('n0', 'r3'));
    const seenA: WatchEvent[] = [];
    const seenB: WatchEvent[] = [];
    await a.watch('/local/domain/0/data/secret', { onEvent: (e) => seenA.push(e) });
    await b.watch('/local/domain/0/data/secret', { onEvent: (e) => seenB.push(e) });
    await dom0.write('/local/domain/0/data/secret/k', 'v');
    await tick();
    expect(seenA.map((e) => e.path)).toContain('/local/domain/0/data/secret/k');
    expect(seenB.map((e) => e.path)).toEqual(['/local/domain/0/data/secret']); // the initial event only
  });

  it('tells a watcher that loses read access about the permission change', async () => {
    const { dom0, a } = setup();
    await dom0.write('/local/domain/0/data/x', 'v');
    await dom0.setPermissions('/local/domain/0/data/x', perms('n0', 'r3'));
    const seen: string[] = [];
    await a.watch('/local/domain/0/data/x', { onEvent: (e) => seen.push(e.path) });
    await dom0.setPermissions('/local/domain/0/data/x', perms('n0'));
    await tick();
    expect(seen).toEqual(['/local/domain/0/data/x', '/local/domain/0/data/x']);
  });

  it('fires @introduceDomain and @releaseDomain for dom0, and for domains granted read', async () => {
    const { sim, dom0, a } = setup();
    const seen0: string[] = [];
    const seenA: string[] = [];
    await dom0.watch('@introduceDomain', { onEvent: (e) => seen0.push(e.path) });
    await dom0.watch('@releaseDomain', { onEvent: (e) => seen0.push(e.path) });
    await a.watch('@introduceDomain', { onEvent: (e) => seenA.push(e.path) });
    await dom0.setPermissions('@releaseDomain', perms('n0', 'r3'));
    await a.watch('@releaseDomain', { onEvent: (e) => seenA.push(e.path) });
    await dom0.introduceDomain(9, 0x1234, 5);
    expect(await dom0.isDomainIntroduced(9)).toBe(true);
    sim.createDomain(10);
    await dom0.releaseDomain(9);
    await tick();
    expect(seen0).toEqual([
      '@introduceDomain',
      '@releaseDomain',
      '@introduceDomain',
      '@introduceDomain',
      '@releaseDomain',
    ]);
    expect(seenA).toEqual(['@introduceDomain', '@releaseDomain', '@releaseDomain']);
    expect(await dom0.isDomainIntroduced(9)).toBe(false);
    expect(await code(dom0.releaseDomain(9))).toBe('ENOENT');
  });

  it('on release closes the domain connections and removes the nodes the domain owned', async () => {
    const { sim, dom0, a } = setup();
    await a.write('data/some/thing', 'v');
    const closed = new Promise<Error>((resolve) => a.onClose(resolve));
    await dom0.releaseDomain(3);
    expect(await closed).toBeInstanceOf(XenstoreConnectionError);
    expect(sim.peek('/local/domain/3/data')).toBeUndefined();
    expect(sim.peek('/local/domain/3/name')?.value).toBe('client-a'); // owned by dom0
    expect(sim.entriesOwnedBy(3)).toBe(0);
  });

  it('drops watches and transactions on XS_RESET_WATCHES', async () => {
    const { a, b } = setup();
    const seen: string[] = [];
    await a.watch('data', { onEvent: (e) => seen.push(e.path) });
    const tx = await a.startTransaction();
    await a.resetWatches();
    await a.write('data/after', 'v');
    await tick();
    expect(seen).toEqual(['data']);
    expect(await code(tx.read('data'))).toBe('ENOENT');
    expect(await code(b.read('data'))).toBe('ok');
  });
});

describe('XenstoredSim transactions', () => {
  it('conflicts when a node read as absent is created meanwhile', async () => {
    const { sim, a } = setup();
    const other = new XenstoreClient(sim.connect({ domid: 3 }));
    const tx = await a.startTransaction();
    expect(await code(tx.read('data/flag'))).toBe('ENOENT');
    await other.write('data/flag', 'set by another connection');
    await tx.write('data/other', 'v');
    expect(await code(tx.commit())).toBe('EAGAIN');
  });

  it('does not conflict over nodes the transaction never touched', async () => {
    const { a } = setup();
    await a.write('data/x', '1');
    const tx = await a.startTransaction();
    await tx.write('data/y/z', 'v');
    await a.write('data/x', '2');
    await tx.commit();
    expect(await a.readString('data/y/z')).toBe('v');
  });

  it('answers TRANSACTION_END outside a transaction with ENOENT', async () => {
    const { a } = setup();
    expect(await code(a.rawRequest(XsType.TRANSACTION_END, joinStrings(['T']), 0))).toBe('ENOENT');
  });

  it('refuses a nested TRANSACTION_START with EBUSY', async () => {
    const { a } = setup();
    const tx = await a.startTransaction();
    expect(await code(a.rawRequest(XsType.TRANSACTION_START, joinStrings(['']), tx.id))).toBe('EBUSY');
    await tx.abort();
  });

  it('fires the watches of a transaction once, at commit', async () => {
    const { a } = setup();
    await a.mkdir('data/w');
    const own: string[] = [];
    await a.watch('data/w', { onEvent: (e) => own.push(e.path) });
    await a.transaction(async (tx) => {
      await tx.write('data/w/k', '1');
      await tick();
      expect(own).toEqual(['data/w']);
      await tx.write('data/w/k', '2');
    });
    await tick();
    expect(own).toEqual(['data/w', 'data/w/k']);
  });
});

describe('fake /dev/xen/xenbus (Linux driver behaviour)', () => {
  it('fails write() for a message over 4096 bytes (EINVAL) or a header over 4080 payload bytes (E2BIG)', () => {
    const sim = new XenstoredSim();
    sim.createDomain(3);
    const dev = sim.openXenbusDevice(3);
    expect(() => dev.write(new Uint8Array(4097))).toThrow(/EINVAL/);
    const h = encodeMessage(XsType.READ, 1, 0, new Uint8Array(0));
    new DataView(h.buffer).setUint32(12, 4081, true);
    expect(() => dev.write(h)).toThrow(/E2BIG/);
  });

  it('answers OK to an unwatch of an unknown watch, and rejects a watch without a token', async () => {
    const sim = new XenstoredSim();
    sim.createDomain(3);
    const x = new XenstoreClient(new XenbusTransport(sim.openXenbusDevice(3)));
    await x.rawRequest(XsType.UNWATCH, joinStrings(['data', 'nobody']));
    expect(await code(x.rawRequest(XsType.WATCH, joinStrings(['data'])))).toBe('EINVAL');
  });

  it('aborts the transactions and removes the watches of a closed file', async () => {
    const sim = new XenstoredSim();
    sim.createDomain(3);
    const x = new XenstoreClient(new XenbusTransport(sim.openXenbusDevice(3)));
    const y = new XenstoreClient(new XenbusTransport(sim.openXenbusDevice(3)));
    for (let i = 0; i < 11; i++) await x.startTransaction();
    expect(await code(y.startTransaction())).toBe('ENOSPC'); // one connection per domain behind the device
    for (let i = 0; i < 129; i++) await x.watch(`data/w${i}`, { onEvent: () => undefined });
    expect(await code(y.watch('data/more'))).toBe('E2BIG'); // write() failed with E2BIG
    x.close();
    await tick();
    await (await y.startTransaction()).abort();
    await (await y.watch('data/more')).close();
  });

  it('never answers XS_TRANSACTION_END with tx_id 0, as Linux drops that reply', async () => {
    const sim = new XenstoredSim();
    sim.createDomain(3);
    const x = new XenstoreClient(new XenbusTransport(sim.openXenbusDevice(3)));
    const r = await x
      .rawRequest(XsType.TRANSACTION_END, joinStrings(['T']), 0, undefined, { timeoutMs: 20 })
      .catch((e) => e);
    expect(r).toBeInstanceOf(XenstoreTimeoutError);
    expect(await x.readString('/local/domain/3/domid')).toBe('3');
  });

  it('refuses a transaction id this file did not start (ENOENT)', async () => {
    const sim = new XenstoredSim();
    sim.createDomain(3);
    const x = new XenstoreClient(new XenbusTransport(sim.openXenbusDevice(3)));
    const y = new XenstoreClient(new XenbusTransport(sim.openXenbusDevice(3)));
    const tx = await x.startTransaction();
    expect(await code(y.rawRequest(XsType.READ, joinStrings(['data']), tx.id))).toBe('ENOENT');
    expect(await code(x.rawRequest(XsType.READ, joinStrings(['data']), tx.id))).toBe('ok');
  });
});

describe('XenstoredSim facing a misbehaving client', () => {
  it('drops a connection whose request announces more than 4096 payload bytes', async () => {
    const sim = new XenstoredSim();
    const t = sim.connectSocket();
    const closed = new Promise<void>((resolve) => t.onClose(() => resolve()));
    const h = encodeMessage(XsType.WRITE, 1, 0, new Uint8Array(0));
    new DataView(h.buffer).setUint32(12, 4097, true);
    t.send(h);
    await closed;
    expect(sim.stats.killedConnections).toBe(1);
  });

  it('answers malformed arguments with EINVAL and keeps the connection', async () => {
    const { a } = setup();
    expect(await code(a.rawRequest(XsType.READ, new Uint8Array([0x61])))).toBe('EINVAL'); // no NUL
    expect(await code(a.rawRequest(XsType.READ, joinStrings(['a', 'b'])))).toBe('EINVAL'); // two args
    expect(await code(a.rawRequest(XsType.WATCH, joinStrings(['data', 't', '1'])))).toBe('EINVAL'); // depth: not in 4.17
    expect(await code(a.rawRequest(XsType.WRITE, new Uint8Array(0)))).toBe('EINVAL');
    expect(await a.readString('domid')).toBe('3');
  });
});

describe('XenstoreClient.waitFor against the sim', () => {
  it('resolves once another domain writes the awaited value', async () => {
    const { dom0, a } = setup();
    await dom0.write('/local/domain/0/backend/state', '1');
    await dom0.setPermissions('/local/domain/0/backend/state', perms('n0', 'r3'));
    const connected = a.waitFor(
      '/local/domain/0/backend/state',
      (v) => (v === '4' ? 'connected' : undefined),
      {
        timeoutMs: 2000,
      },
    );
    await dom0.write('/local/domain/0/backend/state', '2');
    await dom0.write('/local/domain/0/backend/state', '4');
    expect(await connected).toBe('connected');
  });

  it('times out with XenstoreTimeoutError when the value never comes', async () => {
    const { a } = setup();
    const r = await a.waitFor('data/never', (v) => v, { timeoutMs: 30 }).catch((e) => e);
    expect(r).toBeInstanceOf(XenstoreTimeoutError);
    expect(await a.readString('domid')).toBe('3');
  });
});
