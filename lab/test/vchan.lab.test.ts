import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGuestOk } from '../src/guest-run.ts';
import { type LabSession, labSession } from '../src/shared-lab.ts';
import {
  buildVchanGuest,
  interopPlan,
  SEED_FROM_DOM0,
  SEED_FROM_DOMU,
  startVchanRun,
  type VchanRun,
} from '../src/vchan-lab.ts';
import { patternSha256 } from '../src/vchan-roles.ts';

/**
 * Our vchan (VchanStream over the native addon and libxenvchan, in a PV domU) against Debian's
 * C vchan-socket-proxy in dom0, in both roles, on real Xen 4.17. One domU for the
 * whole file; the domU and dom0 sides run their steps in order and each test awaits its pair.
 */
const MiB = 1024 * 1024;
/** 64 MiB each way in both pairings. */
const BYTES = 64 * MiB;
/**
 * With the C server: vchan-socket-proxy's server always takes libxenvchan's smallest rings
 * (1 KiB and 2 KiB), one event round trip per 1-2 KiB each way, so this pairing is bound by
 * the C server whoever the client is (a C client in our domU took as long as ours: 4 MiB each
 * way in 59 s and 59 s against 58 s and 62 s, one lab run, loaded machine). On an idle machine
 * 64 MiB each way took 80 s (the whole file 116 s); under heavy load it can take 10 minutes,
 * hence this test's own timeout. MOAT_LAB_VCHAN_C_SERVER_MIB=<n> for a quicker run.
 */
const C_SERVER_BYTES = Number(process.env.MOAT_LAB_VCHAN_C_SERVER_MIB ?? 64) * MiB;
const WAIT = { timeoutMs: 1_800_000 };

let lab: LabSession;
let run: VchanRun;
const fromDomU = patternSha256(SEED_FROM_DOMU, BYTES);
const fromDom0 = patternSha256(SEED_FROM_DOM0, BYTES);
const fromDomUViaCServer = patternSha256(SEED_FROM_DOMU, C_SERVER_BYTES);
const fromDom0ViaCServer = patternSha256(SEED_FROM_DOM0, C_SERVER_BYTES);

beforeAll(async () => {
  const guest = await buildVchanGuest();
  lab = await labSession('vchan');
  run = await startVchanRun(
    lab,
    guest,
    interopPlan({ ourServerBytes: BYTES, cServerBytes: C_SERVER_BYTES, timeoutMs: 1_500_000 }),
  );
});

afterAll(async () => {
  await lab?.end();
});

interface Exchange {
  received: number;
  sha256: string;
  extraBytes: number;
  inputEnd: string;
  end: string;
}

async function pair(name: string): Promise<{ domU: Exchange; dom0: Exchange }> {
  const [domU, dom0] = await Promise.all([run.domU.result(name, WAIT), run.dom0.result(name, WAIT)]);
  if (!domU.ok || !dom0.ok) {
    throw new Error(`${name}: domU ${domU.ok ? 'ok' : domU.error}; dom0 ${dom0.ok ? 'ok' : dom0.error}`);
  }
  return { domU: domU.data as Exchange, dom0: dom0.data as Exchange };
}

describe('vchan interop with the C vchan-socket-proxy on real Xen (lab)', () => {
  it('our server in a domU and a C client in dom0 move 64 MiB each way intact, and our close is their EOF', async () => {
    const { domU, dom0 } = await pair('our server, C client');
    // We closed after the C side's ACK byte: we saw the data and the ACK, they saw the data then EOF.
    expect(domU).toMatchObject({ received: BYTES + 1, sha256: fromDom0, extraBytes: 1 });
    expect(dom0).toMatchObject({ received: BYTES, sha256: fromDomU, extraBytes: 0, inputEnd: 'eof' });
    expect(dom0.end).toMatch(/^exit 0/);
  });

  it(`a C server in dom0 and our client in a domU move ${C_SERVER_BYTES / MiB} MiB each way intact, and their close is our EOF`, async () => {
    const { domU, dom0 } = await pair('C server, our client');
    expect(dom0).toMatchObject({ received: C_SERVER_BYTES + 1, sha256: fromDomUViaCServer, extraBytes: 1 });
    expect(dom0.end).toMatch(/^exit 0/);
    expect(domU).toMatchObject({
      received: C_SERVER_BYTES,
      sha256: fromDom0ViaCServer,
      extraBytes: 0,
      inputEnd: 'eof',
      end: 'closed',
    });
  }, 1_500_000);

  it('our server sees EOF or an error, not a hang, when the C client is killed mid-transfer', async () => {
    const [domU, dom0] = await Promise.all([
      run.domU.result('our server, C client killed', WAIT),
      run.dom0.result('our server, C client killed', WAIT),
    ]);
    expect(dom0.ok, dom0.error).toBe(true);
    expect((dom0.data as { end: string }).end).toMatch(/SIGKILL/);
    expect(domU.ok, domU.error).toBe(true);
    const survived = domU.data as { received: number; inputEnd: string };
    expect(survived.inputEnd).toMatch(/^(eof|error|closed)/);
    expect(survived.received).toBeLessThan(BYTES);
  });

  it('our client sees EOF or an error, not a hang, when the C server is killed mid-transfer', async () => {
    const [domU, dom0] = await Promise.all([
      run.domU.result('our client, C server killed', WAIT),
      run.dom0.result('our client, C server killed', WAIT),
    ]);
    expect(dom0.ok, dom0.error).toBe(true);
    expect((dom0.data as { end: string }).end).toMatch(/SIGKILL/);
    expect(domU.ok, domU.error).toBe(true);
    const survived = domU.data as { received: number; inputEnd: string };
    expect(survived.inputEnd).toMatch(/^(eof|error|closed)/);
    expect(survived.received).toBeLessThan(C_SERVER_BYTES);
  });

  it('both sides ran every step to the end', async () => {
    expectGuestOk(await run.domU.finished(WAIT));
    expectGuestOk(await run.dom0.finished(WAIT));
  });
});
