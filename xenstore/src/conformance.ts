/**
 * The conformance suite: named cases that check xenstore-js against a xenstore server through
 * a transport factory. The same ids run here against XenstoredSim (vitest, one `it` per id) and
 * in the lab against the real C xenstored of Xen 4.17, inside a domU over /dev/xen/xenbus
 * (unprivileged) and in dom0 over the unix socket (privileged), with no skips. Where 4.17
 * treats the two kinds of caller differently (quotas bind unprivileged domains only), a case
 * checks the behaviour of the kind it runs as. Cases use node:assert, not a test framework, so
 * a plain node runner can execute them.
 */
import assert from 'node:assert/strict';
import { within } from '@moat/xen/conformance';
import { XenstoreClient } from './client.ts';
import { XenstoreError } from './errors.ts';
import type { PermissionEntry } from './perms.ts';
import type { XenstoreTransportFactory } from './transport.ts';
import type { WatchEvent, XenstoreWatch } from './watch.ts';
import { joinStrings, utf8, XsType } from './wire.ts';

export { type CaseResult, runCases } from '@moat/xen/conformance';

export interface ConformanceTarget {
  /** Opens a new connection as the identity under test; called several times per case. */
  connect: XenstoreTransportFactory;
  /** The domain the connections act as (0 for dom0's socket). */
  domid: number;
  /** True for dom0 (the socket, or dom0's own ring); false for a domU. */
  privileged: boolean;
  /**
   * Where cases may create nodes: a path under the domain's home (`/local/domain/<domid>`) that
   * this identity can write. Default `/local/domain/<domid>/data/moat-conformance`. Every case
   * removes what it created.
   */
  scratch?: string;
  /** Timeout for each request and each awaited event (default 20 s: the lab is emulated). */
  timeoutMs?: number;
}

export interface ConformanceCase {
  id: string;
  run(): Promise<void>;
}

interface Ctx {
  target: ConformanceTarget;
  domid: number;
  privileged: boolean;
  home: string;
  /** A fresh directory of this case, created before the case runs. */
  dir: string;
  timeoutMs: number;
  /** A new client on a new connection (closed after the case). */
  client(): Promise<XenstoreClient>;
}

async function expectCode(promise: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.ok(
      error instanceof XenstoreError,
      `${what}: expected XenstoreError ${code}, got ${String(error)}`,
    );
    assert.equal(error.code, code, `${what}: expected ${code}, got ${error.code}`);
    return;
  }
  assert.fail(`${what}: expected ${code}, but it succeeded`);
}

/** Waits for an event on `watch` that satisfies `match` (other events are skipped: spurious ones are allowed). */
function waitForEvent(
  watch: XenstoreWatch,
  match: (e: WatchEvent) => boolean,
  timeoutMs: number,
  what: string,
): Promise<WatchEvent> {
  return new Promise((resolve, reject) => {
    const seen: string[] = [];
    const timer = setTimeout(() => {
      off();
      reject(
        new assert.AssertionError({
          message: `${what}: no matching event within ${timeoutMs} ms (saw ${JSON.stringify(seen)})`,
        }),
      );
    }, timeoutMs);
    const off = watch.on((e) => {
      seen.push(e.path);
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Calls `acquire(0)`, `acquire(1)`, ... until one throws or `limit` succeeded (a quota probe). */
async function acquireUntilRefused<T>(
  limit: number,
  acquire: (i: number) => Promise<T>,
): Promise<{ got: T[]; refused: unknown }> {
  const got: T[] = [];
  for (let i = 0; i < limit; i++) {
    try {
      got.push(await acquire(i));
    } catch (error) {
      return { got, refused: error };
    }
  }
  return { got, refused: undefined };
}

type Body = (ctx: Ctx) => Promise<void>;

const cases: [string, Body][] = [
  [
    'read-write.roundtrip',
    async (c) => {
      const x = await c.client();
      await x.write(`${c.dir}/text`, 'hello xenstore');
      assert.equal(await x.readString(`${c.dir}/text`), 'hello xenstore');
      const binary = new Uint8Array([0, 1, 2, 0xff, 0, 0x80, 10]);
      await x.write(`${c.dir}/binary`, binary);
      assert.deepEqual(await x.read(`${c.dir}/binary`), binary, 'values are bytes, NULs included');
      await x.write(`${c.dir}/empty`, '');
      assert.equal((await x.read(`${c.dir}/empty`)).length, 0);
      await x.write(`${c.dir}/text`, 'replaced');
      assert.equal(await x.readString(`${c.dir}/text`), 'replaced');
    },
  ],
  [
    'read.missing-node-is-enoent',
    async (c) => {
      const x = await c.client();
      await expectCode(x.read(`${c.dir}/absent`), 'ENOENT', 'read of a missing node');
      await expectCode(x.read(`${c.dir}/absent/deeper`), 'ENOENT', 'read below a missing node');
      assert.equal(await x.tryRead(`${c.dir}/absent`), undefined);
      assert.equal(await x.exists(`${c.dir}/absent`), false);
    },
  ],
  [
    'write.creates-missing-parents',
    async (c) => {
      const x = await c.client();
      await x.write(`${c.dir}/a/b/c`, 'leaf');
      assert.equal((await x.read(`${c.dir}/a`)).length, 0, 'created parents have empty values');
      assert.equal((await x.read(`${c.dir}/a/b`)).length, 0);
      assert.deepEqual(await x.directory(`${c.dir}/a`), ['b']);
      assert.equal(await x.readString(`${c.dir}/a/b/c`), 'leaf');
    },
  ],
  [
    'mkdir.creates-and-is-idempotent',
    async (c) => {
      const x = await c.client();
      await x.mkdir(`${c.dir}/m/n`);
      assert.equal((await x.read(`${c.dir}/m/n`)).length, 0);
      await x.write(`${c.dir}/m/n`, 'kept');
      await x.mkdir(`${c.dir}/m/n`);
      assert.equal(await x.readString(`${c.dir}/m/n`), 'kept', 'mkdir of an existing node leaves it alone');
    },
  ],
  [
    'directory.lists-children',
    async (c) => {
      const x = await c.client();
      assert.deepEqual(await x.directory(c.dir), []);
      for (const name of ['one', 'two', 'three_3', 'with-dash']) await x.write(`${c.dir}/${name}`, name);
      assert.deepEqual((await x.directory(c.dir)).sort(), ['one', 'three_3', 'two', 'with-dash']);
      await expectCode(x.directory(`${c.dir}/absent`), 'ENOENT', 'directory of a missing node');
    },
  ],
  [
    'directory.longer-than-one-reply',
    async (c) => {
      const x = await c.client();
      // 300 children of 16 bytes each: 4800 bytes, more than one reply can carry.
      const names = Array.from({ length: 300 }, (_, i) => `child-${String(i).padStart(9, '0')}`);
      if (c.privileged) {
        await Promise.all(names.map((n) => x.mkdir(`${c.dir}/big/${n}`)));
        const listed = await x.directory(`${c.dir}/big`);
        assert.equal(listed.length, 300, 'the list comes back whole (XS_DIRECTORY_PART)');
        assert.deepEqual([...listed].sort(), names);
      } else {
        // An unprivileged domain's node record (child names included) must stay under 2048 bytes.
        const { got, refused } = await acquireUntilRefused(names.length, (i) =>
          x.mkdir(`${c.dir}/big/${names[i]}`),
        );
        const created = got.length;
        assert.ok(
          refused instanceof XenstoreError && refused.code === 'ENOSPC',
          `expected ENOSPC, got ${String(refused)}`,
        );
        assert.ok(
          created > 50 && created < 2048 / 16,
          `children accepted before the node-size quota: ${created}`,
        );
        assert.equal((await x.directory(`${c.dir}/big`)).length, created);
      }
    },
  ],
  [
    'rm.removes-subtree',
    async (c) => {
      const x = await c.client();
      await x.write(`${c.dir}/t/a/b`, '1');
      await x.write(`${c.dir}/t/c`, '2');
      await x.rm(`${c.dir}/t`);
      await expectCode(x.read(`${c.dir}/t/a/b`), 'ENOENT', 'read after rm');
      await expectCode(x.read(`${c.dir}/t`), 'ENOENT', 'read after rm');
      assert.deepEqual(await x.directory(c.dir), []);
      await x.rm(`${c.dir}/t`); // absent, parent present: fine
      await expectCode(x.rm(`${c.dir}/t/x/y`), 'ENOENT', 'rm below a missing parent');
    },
  ],
  [
    'paths.relative-to-domain-home',
    async (c) => {
      const x = await c.client();
      assert.ok(c.dir.startsWith(`${c.home}/`), `scratch ${c.dir} must be under ${c.home}`);
      const rel = c.dir.slice(c.home.length + 1);
      await x.write(`${rel}/relative`, 'r');
      assert.equal(await x.readString(`${c.dir}/relative`), 'r');
      assert.equal(await x.readString(`${rel}/relative`), 'r');
    },
  ],
  [
    'paths.invalid-names-are-einval',
    async (c) => {
      const x = await c.client();
      for (const bad of [
        `${c.dir}//double`,
        `${c.dir}/trailing/`,
        `${c.dir}/sp ace`,
        `${c.dir}/dot.ted`,
        `${c.dir}/$`,
      ]) {
        await expectCode(x.write(bad, 'v'), 'EINVAL', `write ${JSON.stringify(bad)}`);
      }
      await expectCode(x.read(`${c.dir}/a:b`), 'EINVAL', 'read with ":"');
    },
  ],
  [
    'paths.length-limit',
    async (c) => {
      const x = await c.client();
      // quota_max_path_len (2048) counts the characters after /local/domain/<id>/, for everyone.
      const base = c.dir.slice(c.home.length + 1);
      const segment = 'p'.repeat(99);
      let rel = base;
      while (rel.length + 1 + segment.length <= 2048 - 2) rel += `/${segment}`;
      rel += `/${'q'.repeat(2048 - rel.length - 1)}`;
      assert.equal(rel.length, 2048);
      await x.write(`${c.home}/${rel}`, 'at the limit');
      assert.equal(await x.readString(`${c.home}/${rel}`), 'at the limit');
      await expectCode(x.write(`${c.home}/${rel}x`, 'over'), 'EINVAL', 'a path one character over the limit');
    },
  ],
  [
    'get-domain-path',
    async (c) => {
      const x = await c.client();
      assert.equal(await x.getDomainPath(c.domid), c.home);
      assert.equal(await x.getDomainPath(7), '/local/domain/7');
      assert.equal(await x.getDomainPath(32752), '/local/domain/32752');
    },
  ],
  [
    'perms.new-nodes-inherit',
    async (c) => {
      const x = await c.client();
      const parent = `${c.dir}/inherit`;
      await x.mkdir(parent);
      const set: PermissionEntry[] = [
        { domid: c.domid, access: 'none' },
        { domid: 0, access: 'read' },
      ];
      await x.setPermissions(parent, set);
      await x.write(`${parent}/child/grandchild`, 'v');
      assert.deepEqual(await x.getPermissions(`${parent}/child`), set);
      assert.deepEqual(await x.getPermissions(`${parent}/child/grandchild`), set);
      if (!c.privileged) {
        assert.equal(
          (await x.getPermissions(c.dir))[0]!.domid,
          c.domid,
          'an unprivileged domain owns what it creates',
        );
      }
    },
  ],
  [
    'perms.set-and-get',
    async (c) => {
      const x = await c.client();
      const node = `${c.dir}/perms`;
      await x.write(node, 'v');
      for (const list of [
        [{ domid: c.domid, access: 'read' }],
        [{ domid: c.domid, access: 'both' }],
        [
          { domid: c.domid, access: 'none' },
          { domid: 0, access: 'write' },
        ],
        [
          { domid: c.domid, access: 'write' },
          { domid: 0, access: 'both' },
          { domid: c.domid, access: 'read' },
        ],
      ] as PermissionEntry[][]) {
        await x.setPermissions(node, list);
        assert.deepEqual(await x.getPermissions(node), list);
      }
      // The owner keeps full access whatever its own entry says.
      await x.setPermissions(node, [{ domid: c.domid, access: 'none' }]);
      await x.write(node, 'owner can still write');
      assert.equal(await x.readString(node), 'owner can still write');
    },
  ],
  [
    'perms.malformed-lists-are-einval',
    async (c) => {
      const x = await c.client();
      const node = `${c.dir}/bad-perms`;
      await x.write(node, 'v');
      const raw = (items: string[]) => x.rawRequest(XsType.SET_PERMS, joinStrings([node, ...items]), 0, node);
      await expectCode(raw([]), 'EINVAL', 'SET_PERMS without permissions');
      await expectCode(raw([`x${c.domid}`]), 'EINVAL', 'an unknown permission letter');
      await expectCode(raw(['r']), 'EINVAL', 'a permission without a domain id');
      await expectCode(raw([`r${c.domid}zz`]), 'EINVAL', 'trailing garbage after the domain id');
    },
  ],
  [
    'perms.owner-change-needs-privilege',
    async (c) => {
      const x = await c.client();
      const node = `${c.dir}/owner`;
      await x.write(node, 'v');
      if (c.privileged) {
        await x.setPermissions(node, [{ domid: 0, access: 'read' }]);
        assert.deepEqual(await x.getPermissions(node), [{ domid: 0, access: 'read' }]);
      } else {
        await expectCode(
          x.setPermissions(node, [{ domid: 0, access: 'both' }]),
          'EPERM',
          'giving a node to dom0',
        );
        assert.equal((await x.getPermissions(node))[0]!.domid, c.domid);
      }
    },
  ],
  [
    'perms.unprivileged-is-confined',
    async (c) => {
      const x = await c.client();
      // The root belongs to dom0 with no access for others (setup_structure()).
      const outside = `/moat-conformance-${c.domid}-${process.pid}`;
      if (c.privileged) {
        await expectCode(x.read(`${outside}-absent`), 'ENOENT', 'dom0 reading a missing node');
        await x.write(outside, 'dom0 may write anywhere');
        await x.rm(outside);
        assert.ok((await x.directory('/')).length > 0);
      } else {
        await expectCode(x.write(outside, 'v'), 'EACCES', 'writing below /');
        await expectCode(x.read('/'), 'EACCES', 'reading /');
        await expectCode(x.directory('/'), 'EACCES', 'listing /');
        // Parents decide whether "absent" may be told: below / it may not.
        await expectCode(x.read(`${outside}-absent`), 'EACCES', 'reading a missing node below /');
        await expectCode(
          x.setPermissions('/', [{ domid: c.domid, access: 'both' }]),
          'EACCES',
          'changing / permissions',
        );
      }
    },
  ],
  [
    'quota.permissions-per-node',
    async (c) => {
      const x = await c.client();
      const node = `${c.dir}/many-perms`;
      await x.write(node, 'v');
      const five: PermissionEntry[] = [
        { domid: c.domid, access: 'none' },
        { domid: 0, access: 'read' },
        { domid: 0, access: 'write' },
        { domid: 0, access: 'both' },
        { domid: 0, access: 'none' },
      ];
      await x.setPermissions(node, five);
      const six = [...five, { domid: 0, access: 'read' as const }];
      if (c.privileged) await x.setPermissions(node, six);
      else await expectCode(x.setPermissions(node, six), 'ENOSPC', 'a sixth permission entry');
    },
  ],
  [
    'quota.node-size',
    async (c) => {
      const x = await c.client();
      await x.write(`${c.dir}/small`, 'v'.repeat(1900));
      const big = 'v'.repeat(2100);
      if (c.privileged) {
        await x.write(`${c.dir}/big`, big);
        assert.equal((await x.read(`${c.dir}/big`)).length, 2100);
      } else {
        await expectCode(x.write(`${c.dir}/big`, big), 'ENOSPC', 'a 2100-byte value');
        await expectCode(x.read(`${c.dir}/big`), 'ENOENT', 'the refused node');
        await expectCode(x.write(`${c.dir}/small`, big), 'ENOSPC', 'growing a value past the quota');
        assert.equal((await x.read(`${c.dir}/small`)).length, 1900, 'the old value stays');
      }
    },
  ],
  [
    'quota.entries-per-domain',
    async (c) => {
      const x = await c.client();
      // Spread over directories of 40 so that no parent record reaches the node-size quota.
      const target = c.privileged ? 1100 : 1001;
      let created = 0;
      let refused: unknown;
      for (let d = 0; created < target; d++) {
        await x.mkdir(`${c.dir}/e${d}`).catch((error) => {
          refused = error;
        });
        if (refused) break;
        created++;
        const batch = Array.from(
          { length: Math.min(40, target - created) },
          (_, i) => `${c.dir}/e${d}/n${i}`,
        );
        const results = await Promise.allSettled(batch.map((p) => x.mkdir(p)));
        for (const r of results) {
          if (r.status === 'fulfilled') created++;
          else refused = r.reason;
        }
        if (refused) break;
      }
      if (c.privileged) {
        assert.equal(
          refused,
          undefined,
          `dom0 has no entry quota, refused after ${created}: ${String(refused)}`,
        );
        assert.equal(created, target);
      } else {
        assert.ok(
          refused instanceof XenstoreError && refused.code === 'ENOSPC',
          `expected ENOSPC, got ${String(refused)}`,
        );
        assert.ok(created > 0 && created < 1000, `nodes created before the quota: ${created}`);
        await x.rm(`${c.dir}/e0`);
        await x.write(`${c.dir}/after-cleanup`, 'room again');
      }
    },
  ],
  [
    'watch.fires-on-registration',
    async (c) => {
      const x = await c.client();
      await x.mkdir(`${c.dir}/w`);
      const w = await x.watch(`${c.dir}/w`, { token: 'first-fire' });
      const first = await within(c.timeoutMs, 'the initial event', w.next());
      assert.deepEqual(first, { path: `${c.dir}/w`, token: 'first-fire' });
      const missing = await x.watch(`${c.dir}/not-there`, { token: 'missing-node' });
      const ev = await within(c.timeoutMs, 'the initial event of a watch on a missing node', missing.next());
      assert.equal(ev.path, `${c.dir}/not-there`);
      await w.close();
      await missing.close();
    },
  ],
  [
    'watch.fires-for-another-client',
    async (c) => {
      const watcher = await c.client();
      const writer = await c.client();
      const seenByCallback: WatchEvent[] = [];
      const w = await watcher.watch(`${c.dir}/shared`, { onEvent: (e) => seenByCallback.push(e) });
      const created = waitForEvent(
        w,
        (e) => e.path === `${c.dir}/shared/leaf`,
        c.timeoutMs,
        'write by another client',
      );
      await writer.write(`${c.dir}/shared/leaf`, 'v');
      await created;
      const removed = waitForEvent(
        w,
        (e) => e.path === `${c.dir}/shared/leaf`,
        c.timeoutMs,
        'rm by another client',
      );
      await writer.rm(`${c.dir}/shared/leaf`);
      await removed;
      assert.equal(seenByCallback[0]?.path, `${c.dir}/shared`, 'the callback saw the initial event');
      assert.ok(
        seenByCallback.some((e) => e.path === `${c.dir}/shared/leaf`),
        'the callback saw the change too',
      );
      await w.close();
    },
  ],
  [
    'watch.async-iterator',
    async (c) => {
      const watcher = await c.client();
      const writer = await c.client();
      const w = await watcher.watch(`${c.dir}/iter`);
      const paths: string[] = [];
      const consumed = (async () => {
        for await (const e of w) {
          paths.push(e.path);
          if (e.path === `${c.dir}/iter/done`) break; // break ends the watch (unwatch)
        }
      })();
      await writer.write(`${c.dir}/iter/one`, '1');
      await writer.write(`${c.dir}/iter/done`, '2');
      await within(c.timeoutMs, 'iteration to the done event', consumed);
      assert.equal(paths[0], `${c.dir}/iter`, 'the initial event comes first');
      assert.ok(paths.includes(`${c.dir}/iter/one`));
      assert.ok(w.closed);
    },
  ],
  [
    'watch.tokens-route-events',
    async (c) => {
      const x = await c.client();
      const writer = await c.client();
      const a = await x.watch(`${c.dir}/ta`, { token: 'token-a' });
      const b = await x.watch(`${c.dir}/tb`, { token: 'token-b' });
      const same = await x.watch(`${c.dir}/ta`, { token: 'token-a2' });
      const onB: WatchEvent[] = [];
      b.on((e) => onB.push(e));
      const gotA = waitForEvent(a, (e) => e.path === `${c.dir}/ta/x`, c.timeoutMs, 'event for token-a');
      const gotSame = waitForEvent(
        same,
        (e) => e.path === `${c.dir}/ta/x`,
        c.timeoutMs,
        'event for token-a2',
      );
      await writer.write(`${c.dir}/ta/x`, '1');
      const [ea, es] = await Promise.all([gotA, gotSame]);
      assert.equal(ea.token, 'token-a');
      assert.equal(es.token, 'token-a2');
      const gotB = waitForEvent(b, (e) => e.path === `${c.dir}/tb/y`, c.timeoutMs, 'event for token-b');
      await writer.write(`${c.dir}/tb/y`, '2');
      await gotB;
      for (const e of onB) assert.ok(e.path.startsWith(`${c.dir}/tb`), `token-b got ${e.path}`);
      await Promise.all([a.close(), b.close(), same.close()]);
    },
  ],
  [
    'watch.relative-path-gives-relative-events',
    async (c) => {
      const x = await c.client();
      const writer = await c.client();
      const rel = `${c.dir.slice(c.home.length + 1)}/relw`;
      const w = await x.watch(rel);
      const ev = waitForEvent(w, (e) => e.path === `${rel}/k`, c.timeoutMs, 'relative event');
      await writer.write(`${c.dir}/relw/k`, 'v');
      await ev;
      await w.close();
    },
  ],
  [
    'watch.unwatch-stops-events',
    async (c) => {
      const x = await c.client();
      const writer = await c.client();
      const w = await x.watch(`${c.dir}/u`, { token: 'unwatch-me' });
      await w.close();
      assert.ok(w.closed);
      // The same token can be used again once the old watch is gone.
      const again = await x.watch(`${c.dir}/u`, { token: 'unwatch-me' });
      const ev = waitForEvent(again, (e) => e.path === `${c.dir}/u/k`, c.timeoutMs, 'event on the new watch');
      await writer.write(`${c.dir}/u/k`, 'v');
      await ev;
      await again.close();
    },
  ],
  [
    'watch.special-paths',
    async (c) => {
      const x = await c.client();
      const w = await x.watch('@introduceDomain');
      const r = await x.watch('@releaseDomain');
      assert.equal(
        (await within(c.timeoutMs, '@introduceDomain initial event', w.next())).path,
        '@introduceDomain',
      );
      assert.equal(
        (await within(c.timeoutMs, '@releaseDomain initial event', r.next())).path,
        '@releaseDomain',
      );
      await w.close();
      await r.close();
    },
  ],
  [
    'quota.watches-per-domain',
    async (c) => {
      const x = await c.client();
      const { got: watches, refused } = await acquireUntilRefused(c.privileged ? 200 : 140, (i) =>
        x.watch(`${c.dir}/qw${i}`, { onEvent: () => undefined }),
      );
      if (c.privileged) assert.equal(refused, undefined, `dom0 has no watch quota: ${String(refused)}`);
      else {
        assert.ok(
          refused instanceof XenstoreError && refused.code === 'E2BIG',
          `expected E2BIG, got ${String(refused)}`,
        );
        assert.ok(watches.length > 0 && watches.length <= 129, `watches before the quota: ${watches.length}`);
      }
      await Promise.all(watches.map((w) => w.close()));
      const after = await x.watch(`${c.dir}/after`);
      await after.close();
    },
  ],
  [
    'transaction.commit-makes-changes-visible',
    async (c) => {
      const x = await c.client();
      const other = await c.client();
      await x.write(`${c.dir}/tx/a`, 'before');
      const tx = await x.startTransaction();
      assert.equal(await tx.readString(`${c.dir}/tx/a`), 'before');
      await tx.write(`${c.dir}/tx/a`, 'inside');
      await tx.write(`${c.dir}/tx/new`, 'created');
      assert.equal(await tx.readString(`${c.dir}/tx/a`), 'inside', 'the transaction sees its own writes');
      assert.equal(await other.readString(`${c.dir}/tx/a`), 'before', 'others do not, before the commit');
      await expectCode(other.read(`${c.dir}/tx/new`), 'ENOENT', 'a node created in an open transaction');
      await tx.commit();
      assert.equal(await other.readString(`${c.dir}/tx/a`), 'inside');
      assert.equal(await other.readString(`${c.dir}/tx/new`), 'created');
    },
  ],
  [
    'transaction.abort-discards',
    async (c) => {
      const x = await c.client();
      await x.write(`${c.dir}/ab`, 'kept');
      const tx = await x.startTransaction();
      await tx.write(`${c.dir}/ab`, 'discarded');
      await tx.rm(`${c.dir}/ab`);
      await tx.write(`${c.dir}/ab-new`, 'discarded');
      await tx.abort();
      assert.equal(await x.readString(`${c.dir}/ab`), 'kept');
      await expectCode(x.read(`${c.dir}/ab-new`), 'ENOENT', 'a node of an aborted transaction');
    },
  ],
  [
    'transaction.conflict-is-eagain',
    async (c) => {
      const x = await c.client();
      const other = await c.client();
      await x.write(`${c.dir}/cf/counter`, '1');
      const tx = await x.startTransaction();
      const v = Number(await tx.readString(`${c.dir}/cf/counter`));
      await other.write(`${c.dir}/cf/counter`, '10');
      await tx.write(`${c.dir}/cf/counter`, String(v + 1));
      await tx.write(`${c.dir}/cf/side`, 'side effect');
      await expectCode(tx.commit(), 'EAGAIN', 'commit after a conflicting write');
      assert.equal(
        await x.readString(`${c.dir}/cf/counter`),
        '10',
        'the conflicting transaction changed nothing',
      );
      await expectCode(x.read(`${c.dir}/cf/side`), 'ENOENT', 'no side effect either');
      await expectCode(
        x.rawRequest(XsType.READ, joinStrings([`${c.dir}/cf/counter`]), tx.id),
        'ENOENT',
        'the ended transaction id',
      );
    },
  ],
  [
    'transaction.retries-on-eagain',
    async (c) => {
      const x = await c.client();
      const other = await c.client();
      await x.write(`${c.dir}/retry/counter`, '1');
      let attempts = 0;
      const result = await x.transaction(async (tx) => {
        attempts++;
        const v = Number(await tx.readString(`${c.dir}/retry/counter`));
        if (attempts === 1) await other.write(`${c.dir}/retry/counter`, '5');
        await tx.write(`${c.dir}/retry/counter`, String(v + 1));
        return v + 1;
      });
      assert.equal(attempts, 2, 'one conflict, one retry');
      assert.equal(result, 6);
      assert.equal(await x.readString(`${c.dir}/retry/counter`), '6');
      // A body that always conflicts gives up after maxAttempts with EAGAIN.
      let tries = 0;
      await expectCode(
        x.transaction(
          async (tx) => {
            tries++;
            await tx.read(`${c.dir}/retry/counter`);
            await other.write(`${c.dir}/retry/counter`, String(100 + tries));
            await tx.write(`${c.dir}/retry/mine`, 'x');
          },
          { maxAttempts: 3 },
        ),
        'EAGAIN',
        'a transaction that always conflicts',
      );
      assert.equal(tries, 3);
      // A body that throws aborts the transaction and passes the error on.
      await assert.rejects(
        x.transaction(async (tx) => {
          await tx.write(`${c.dir}/retry/thrown`, 'x');
          throw new Error('body failed');
        }),
        /body failed/,
      );
      await expectCode(x.read(`${c.dir}/retry/thrown`), 'ENOENT', 'the write of a thrown body');
    },
  ],
  [
    'transaction.watch-fires-on-commit',
    async (c) => {
      const x = await c.client();
      const watcher = await c.client();
      const w = await watcher.watch(`${c.dir}/txw`);
      const ev = waitForEvent(
        w,
        (e) => e.path === `${c.dir}/txw/k`,
        c.timeoutMs,
        'event of a committed write',
      );
      await x.transaction(async (tx) => {
        await tx.write(`${c.dir}/txw/k`, 'v');
      });
      await ev;
      await w.close();
    },
  ],
  [
    'transaction.unknown-id-is-enoent',
    async (c) => {
      const x = await c.client();
      await expectCode(
        x.rawRequest(XsType.READ, joinStrings([c.dir]), 0x7fff1234),
        'ENOENT',
        'READ in an unknown transaction',
      );
      // Not sent here: TRANSACTION_END with tx_id 0. xenstored answers ENOENT, but Linux's
      // /dev/xen/xenbus forwards it and then drops the reply (WARN_ON in xenbus_dev_queue_reply),
      // so the caller would wait forever.
      const tx = await x.startTransaction();
      await expectCode(
        x.rawRequest(XsType.TRANSACTION_END, joinStrings(['X']), tx.id),
        'EINVAL',
        'TRANSACTION_END X',
      );
      await tx.abort();
    },
  ],
  [
    'quota.transactions-per-connection',
    async (c) => {
      const x = await c.client();
      const { got: open, refused } = await acquireUntilRefused(c.privileged ? 30 : 20, () =>
        x.startTransaction(),
      );
      if (c.privileged) assert.equal(refused, undefined, `dom0 has no transaction quota: ${String(refused)}`);
      else {
        assert.ok(
          refused instanceof XenstoreError && refused.code === 'ENOSPC',
          `expected ENOSPC, got ${String(refused)}`,
        );
        assert.ok(open.length >= 1 && open.length <= 11, `transactions before the quota: ${open.length}`);
      }
      await Promise.all(open.map((t) => t.abort()));
      const again = await x.startTransaction();
      await again.abort();
    },
  ],
  [
    'quota.nodes-per-transaction',
    async (c) => {
      const x = await c.client();
      await x.mkdir(`${c.dir}/tn`);
      const tx = await x.startTransaction();
      let refused: unknown;
      let touched = 0;
      const limit = 1100;
      for (let start = 0; start < limit && !refused; start += 50) {
        const reads = Array.from({ length: 50 }, (_, i) => tx.read(`${c.dir}/tn/missing${start + i}`));
        for (const r of await Promise.allSettled(reads)) {
          if (r.status === 'rejected' && r.reason instanceof XenstoreError && r.reason.code === 'ENOENT')
            touched++;
          else if (r.status === 'rejected') refused ??= r.reason;
        }
      }
      if (c.privileged)
        assert.equal(refused, undefined, `dom0 has no per-transaction node quota: ${String(refused)}`);
      else {
        assert.ok(
          refused instanceof XenstoreError && refused.code === 'ENOSPC',
          `expected ENOSPC, got ${String(refused)}`,
        );
        // quota_trans_nodes (1024) counts every distinct node the transaction accessed, missing
        // ones too (access_node from read_node); the first ENOENT also made ask_parents read
        // `tn` inside the transaction. So exactly 1023 reads of distinct missing nodes succeed.
        assert.equal(touched, 1024 - 1, `missing nodes read before the quota: ${touched}`);
      }
      await tx.abort();
    },
  ],
  [
    'payload.limit-is-enforced-before-sending',
    async (c) => {
      const x = await c.client();
      const max = x.transport.maxRequestPayload;
      const path = `${c.dir}/payload`;
      const overhead = utf8(path).length + 1;
      await expectCode(
        x.write(path, 'v'.repeat(max - overhead + 1)),
        'E2BIG',
        'a request one byte over the limit',
      );
      // Exactly at the limit the request goes out; unprivileged callers then meet the node-size quota.
      const atLimit = x.write(path, 'v'.repeat(max - overhead));
      if (c.privileged) await atLimit;
      else await expectCode(atLimit, 'ENOSPC', 'a value at the payload limit');
      await x.write(path, 'still connected');
      assert.equal(await x.readString(path), 'still connected');
    },
  ],
  [
    'concurrency.requests-in-flight',
    async (c) => {
      const x = await c.client();
      const n = 64;
      await Promise.all(Array.from({ length: n }, (_, i) => x.write(`${c.dir}/par/k${i}`, `value-${i}`)));
      const values = await Promise.all(
        Array.from({ length: n }, (_, i) => x.readString(`${c.dir}/par/k${i}`)),
      );
      assert.deepEqual(
        values,
        values.map((_, i) => `value-${i}`),
      );
      const mixed = await Promise.allSettled([
        x.read(`${c.dir}/par/k1`),
        x.read(`${c.dir}/par/absent`),
        x.directory(`${c.dir}/par`),
        x.getPermissions(`${c.dir}/par/k2`),
      ]);
      assert.equal(mixed[0]!.status, 'fulfilled');
      assert.equal(mixed[1]!.status, 'rejected');
      assert.equal(mixed[2]!.status === 'fulfilled' && mixed[2].value.length, n);
      assert.equal(mixed[3]!.status, 'fulfilled');
    },
  ],
  [
    'privileged-operations',
    async (c) => {
      const x = await c.client();
      if (c.privileged) {
        assert.equal(await x.isDomainIntroduced(0), true);
        assert.equal(await x.isDomainIntroduced(0x7ff0), true, 'DOMID_SELF');
        assert.equal(await x.isDomainIntroduced(32000), false);
        await expectCode(x.releaseDomain(32000), 'ENOENT', 'releasing a domain that is not there');
        await expectCode(x.releaseDomain(0), 'EINVAL', 'releasing dom0');
        assert.equal(await x.control('print', ['moat xenstore conformance']), 'OK');
        await expectCode(x.control('no-such-command'), 'EINVAL', 'an unknown control command');
      } else {
        await expectCode(x.isDomainIntroduced(0), 'EACCES', 'IS_DOMAIN_INTRODUCED from a domU');
        await expectCode(x.introduceDomain(c.domid, 1, 1), 'EACCES', 'INTRODUCE from a domU');
        await expectCode(x.releaseDomain(c.domid), 'EACCES', 'RELEASE from a domU');
        await expectCode(x.control('print', ['x']), 'EACCES', 'CONTROL from a domU');
        await expectCode(x.setTarget(c.domid, 0), 'EACCES', 'SET_TARGET from a domU');
      }
    },
  ],
  [
    'errors.unknown-type-is-enosys',
    async (c) => {
      const x = await c.client();
      await expectCode(x.rawRequest(20, joinStrings(['']), 0), 'ENOSYS', 'the removed XS_RESTRICT');
      await expectCode(x.rawRequest(1000, joinStrings(['']), 0), 'ENOSYS', 'a type no xenstored knows');
      await expectCode(
        x.rawRequest(XsType.WATCH_EVENT, joinStrings(['a', 'b']), 0),
        'ENOSYS',
        'a client sending WATCH_EVENT',
      );
      assert.equal(text(await x.read(c.dir)).length, 0, 'the connection is still fine');
    },
  ],
];

let runCounter = 0;

/** The cases, in a stable order, ready to run against `target`. */
export function conformanceSuite(target: ConformanceTarget): ConformanceCase[] {
  const home = `/local/domain/${target.domid}`;
  const scratch = target.scratch ?? `${home}/data/moat-conformance`;
  const timeoutMs = target.timeoutMs ?? 20_000;
  return cases.map(([id, body]) => ({
    id,
    async run() {
      const clients: XenstoreClient[] = [];
      const open = async () => {
        const client = new XenstoreClient(await target.connect(), { timeoutMs });
        clients.push(client);
        return client;
      };
      const dir = `${scratch}/${id.replace(/[^A-Za-z0-9_-]/g, '-')}-${process.pid}-${++runCounter}`;
      const ctx: Ctx = {
        target,
        domid: target.domid,
        privileged: target.privileged,
        home,
        dir,
        timeoutMs,
        client: open,
      };
      const setup = await open();
      await setup.rm(dir).catch(() => undefined);
      await setup.mkdir(dir);
      try {
        await body(ctx);
      } finally {
        const cleaner = new XenstoreClient(await target.connect(), { timeoutMs });
        clients.push(cleaner);
        try {
          await cleaner.rm(dir);
        } finally {
          for (const c of clients) c.close();
        }
      }
    },
  }));
}
