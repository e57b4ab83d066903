/**
 * The guest of xen.lab.test.ts: one bundle, several roles (args.role), so one domU image
 * serves every domU of the file and dom0 runs the same bundle.
 *
 * - xenstore-xenbus (domU) / xenstore-socket (dom0): @moat/xenstore's conformance suite against
 *   the C xenstored, one step per case id.
 * - xen-loopback (domU): @moat/xen's conformance suite on openNativeDomain().
 * - share (domU) + map (dom0): a page shared by the domU with gntalloc, mapped by dom0
 *   writable and read-only, copied with grant copy, and an event channel both ways.
 */
import assert from 'node:assert/strict';
import { openNativeDomain, openXenbusDevice, ownDomainId, type XenDomain } from '@moat/xen';
import { SocketTransport, XenbusTransport } from '@moat/xenstore';
import { conformanceSuite } from '@moat/xenstore/conformance';
import { type GuestStep, guestArgs, guestMain } from '../../src/guest.ts';
import { DOM0_SEED, DOMU_SEED, fillPattern, type ShareOffer, WAIT_MS } from './xen-pattern.ts';

function nextEvent(d: XenDomain, port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${what}: no event on port ${port} within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const off = d.eventChannels.onEvent((p) => {
      if (p !== port) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

function xenstoreSteps(role: string): Record<string, GuestStep> {
  const target =
    role === 'xenstore-socket'
      ? {
          connect: () => SocketTransport.connect(undefined, { timeoutMs: 30_000 }),
          domid: 0,
          privileged: true,
        }
      : {
          connect: async () => new XenbusTransport(openXenbusDevice()),
          domid: ownDomainId(),
          privileged: false,
        };
  const steps: Record<string, GuestStep> = {};
  for (const c of conformanceSuite({ ...target, timeoutMs: 60_000 })) steps[c.id] = () => c.run();
  return steps;
}

async function loopbackSteps(): Promise<Record<string, GuestStep>> {
  const { xenConformanceSuite } = await import('@moat/xen/conformance');
  const domain = openNativeDomain();
  const steps: Record<string, GuestStep> = {};
  const suite = xenConformanceSuite({
    domain,
    vchanPath: `/local/domain/${domain.domid}/data/vchan-conformance`,
    timeoutMs: 60_000,
  });
  for (const c of suite) steps[c.id] = () => c.run();
  return steps;
}

/** domU: shares pages with dom0, offers them (the host passes the offer to dom0), then waits. */
function shareSteps(): Record<string, GuestStep> {
  const d = openNativeDomain();
  const shared = d.grantSharer.share(0, 2);
  const readOnly = d.grantSharer.share(0, 1, { writable: false });
  fillPattern(new Uint8Array(shared.buffer), DOMU_SEED);
  fillPattern(new Uint8Array(readOnly.buffer), DOMU_SEED + 1);
  const port = d.eventChannels.allocUnbound(0);
  const notified = nextEvent(d, port, 'dom0 notifying the domU');
  notified.catch(() => {}); // awaited in its step; this only keeps an early timeout from being unhandled
  return {
    offer: (): ShareOffer => ({
      domid: d.domid,
      refs: [...shared.refs],
      readOnlyRefs: [...readOnly.refs],
      port,
    }),
    'event from dom0': () => notified,
    'dom0 wrote into the shared page': () => {
      const expected = new Uint8Array(4096);
      fillPattern(expected, DOM0_SEED);
      assert.deepEqual(new Uint8Array(shared.buffer, 0, 4096), expected, 'page 0 holds what dom0 wrote');
      // Grant copy wrote bytes 100..199 of page 1 from dom0.
      const copied = new Uint8Array(shared.buffer, 4096 + 100, 100);
      assert.deepEqual(
        [...copied],
        Array.from({ length: 100 }, (_, i) => (i * 7) & 0xff),
        'grant copy into page 1',
      );
      return { checkedBytes: 4196 };
    },
    'event to dom0': () => {
      d.eventChannels.notify(port);
      return { port };
    },
  };
}

/** dom0: maps the domU's offer and checks it both ways. */
function mapSteps(offer: ShareOffer): Record<string, GuestStep> {
  const d = openNativeDomain({ domid: 0 });
  let localPort = -1;
  return {
    'map writable and read': () => {
      const m = d.grantMapper.mapWritable(offer.domid, offer.refs);
      const expected = new Uint8Array(8192);
      fillPattern(expected, DOMU_SEED);
      assert.deepEqual(new Uint8Array(m.buffer), expected, 'dom0 sees what the domU wrote');
      fillPattern(new Uint8Array(m.buffer, 0, 4096), DOM0_SEED);
      m.unmap();
      return { pages: offer.refs.length };
    },
    'map read-only': () => {
      const m = d.grantMapper.mapReadOnly(offer.domid, offer.readOnlyRefs);
      const got = new Uint8Array(4096);
      m.pages.copyTo(got, 0, 0, 4096);
      const expected = new Uint8Array(4096);
      fillPattern(expected, DOMU_SEED + 1);
      assert.deepEqual(got, expected);
      assert.equal(m.pages.getUint8(5), expected[5]);
      m.unmap();
      // Mapped writable, a read-only grant must be refused by Xen.
      assert.throws(() => d.grantMapper.mapWritable(offer.domid, offer.readOnlyRefs).unmap());
      return { bytes: 4096 };
    },
    'grant copy both directions': () => {
      const into = new Uint8Array(64);
      const source = Uint8Array.from({ length: 100 }, (_, i) => (i * 7) & 0xff);
      const [ref0, ref1] = offer.refs;
      assert.ok(ref0 !== undefined && ref1 !== undefined);
      const status = d.grantCopier.copy([
        {
          direction: 'from-grant',
          domain: offer.domid,
          ref: offer.readOnlyRefs[0] ?? -1,
          offset: 0,
          length: 64,
          target: into,
          targetOffset: 0,
        },
        {
          direction: 'to-grant',
          domain: offer.domid,
          ref: ref1,
          offset: 100,
          length: 100,
          source,
          sourceOffset: 0,
        },
      ]);
      assert.deepEqual([...status], [0, 0], 'both segments copied');
      const expected = new Uint8Array(4096);
      fillPattern(expected, DOMU_SEED + 1);
      assert.deepEqual(into, expected.subarray(0, 64));
      return { segments: 2 };
    },
    'event to the domU': () => {
      localPort = d.eventChannels.bindInterdomain(offer.domid, offer.port);
      d.eventChannels.notify(localPort);
      return { localPort };
    },
    'event from the domU': () => nextEvent(d, localPort, 'the domU notifying dom0'),
  };
}

async function main() {
  const args = guestArgs();
  const role = String(args.role);
  if (role === 'xenstore-xenbus' || role === 'xenstore-socket') return guestMain(xenstoreSteps(role));
  if (role === 'xen-loopback') return guestMain(await loopbackSteps());
  if (role === 'share') return guestMain(shareSteps());
  if (role === 'map') return guestMain(mapSteps(args.offer as ShareOffer));
  return guestMain({ role: () => Promise.reject(new Error(`unknown role ${role}`)) });
}

void main();
