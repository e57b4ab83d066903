/**
 * The vchan interop and bench guest, the same bundle in dom0 and in the domU: it runs the
 * named tasks it was given, in order, each as one step. In the domU the peer is dom0; in dom0
 * the peer is the domU whose id the host passes as `peer`.
 */
import { guestArgs, guestMain } from '../guest.ts';
import { guestContext, runVchanTask, type VchanTask } from '../vchan-roles.ts';

const args = guestArgs() as { peer?: number; self?: number; tasks?: [string, VchanTask][] };
const ctx = guestContext(args.peer ?? 0, args.self);
void guestMain(
  Object.fromEntries((args.tasks ?? []).map(([name, task]) => [name, () => runVchanTask(ctx, task)])),
);
