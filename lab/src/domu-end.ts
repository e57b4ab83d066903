/**
 * How a domU ended, in words, from what `xl create -F` prints and what Xen printed about the
 * domain on its own console, so a guest that ends without `done` explains itself.
 */
import { GuestHandle } from './guest-run.ts';

/** SHUTDOWN_* codes, xen/include/public/sched.h (the order is the codes 0..5). */
export const SHUTDOWN_REASONS = ['poweroff', 'reboot', 'suspend', 'crash', 'watchdog', 'soft_reset'] as const;

/** "reboot (reason code 1)"; unknown codes are named as such. */
export function shutdownReasonWords(code: number): string {
  const name = SHUTDOWN_REASONS[code];
  return `${name ?? 'unknown reason'} (reason code ${code})`;
}

/** What one line of `xl create -F` (tools/xl/xl_vmcontrol.c) says about the domain, if anything. */
export type XlEvent =
  | { kind: 'domid'; domid: number }
  | { kind: 'shutdown'; domid: number; code: number }
  | { kind: 'destroyed'; domid: number };

export function parseXlLine(line: string): XlEvent | undefined {
  const waiting = /Waiting for domain .* \(domid (\d+)\) to die/.exec(line);
  if (waiting) return { kind: 'domid', domid: Number(waiting[1]) };
  const shutdown = /Domain (\d+) has shut down, reason code (\d+)/.exec(line);
  if (shutdown) return { kind: 'shutdown', domid: Number(shutdown[1]), code: Number(shutdown[2]) };
  const destroyed = /Domain (\d+) has been destroyed/.exec(line);
  if (destroyed) return { kind: 'destroyed', domid: Number(destroyed[1]) };
  return undefined;
}

/** Lines of one register dump at most (xen/arch/x86/x86_64/traps.c show_registers: about 14). */
const MAX_DUMP_LINES = 30;
/** A line that names a domain or vCPU ("d3v0", "(d3)", "Dom3"): never part of another's dump. */
const ANY_DOMAIN = /\bd\d+v\d+\b|\(d\d+\)|\bDom\d+\b/;

/**
 * Xen's console lines about one domain: "(XEN) d2v0 ...", "(XEN) d2 ...", the guest's own early
 * output "(d2) ..." (earlyprintk=xen), and the vCPU state Xen dumps after "*** Dumping Dom2
 * vcpu#0 state: ***" (common/keyhandler.c vcpu_show_execution_state, printed on a triple fault by
 * hvm_triple_fault): its lines ("RIP: 0010:[<ffffffff81...>]", the general registers, CR0-CR4)
 * do not name the domain, but say where the vCPU was. Domain ids are not reused within one
 * boot, so the id names one domain.
 */
export function xenLinesAbout(lines: readonly string[], domid: number): string[] {
  const about = new RegExp(`\\bd${domid}(?:v\\d+)?\\b|\\(d${domid}\\)|\\bDom${domid}\\b`);
  const dumpStart = new RegExp(`\\*\\*\\* Dumping Dom${domid} vcpu#`);
  const picked: string[] = [];
  let dumpLeft = 0;
  for (const line of lines) {
    if (dumpStart.test(line)) {
      picked.push(line);
      dumpLeft = MAX_DUMP_LINES;
    } else if (about.test(line)) {
      picked.push(line);
      // The guest's own output ("(d2) ...") is not part of a dump (Xen prints one under its
      // console lock).
      if (!line.startsWith('(XEN) ')) dumpLeft = 0;
    } else if (dumpLeft > 0 && line.startsWith('(XEN) ') && !ANY_DOMAIN.test(line) && !line.includes('***')) {
      picked.push(line);
      dumpLeft--;
      // The segment selectors close show_registers' output.
      if (/\bcs: [0-9a-f]{4}\b/.test(line)) dumpLeft = 0;
    } else {
      dumpLeft = 0;
    }
  }
  return picked;
}

/**
 * A triple fault whose dumped vCPU state is Xen's own: CS e008 (Xen's __HYPERVISOR_CS) and a RIP
 * in Xen's text (ffff82d04...). Seen in the lab (lab/NOTES.md, the PVH reboot ending): the RIP was
 * the instruction after VMRUN in Xen's svm_asm_do_resume and RAX the VMCB's address, i.e. the
 * guest's saved state was the host state QEMU keeps for a VMRUN. No guest can put that there;
 * QEMU's TCG emulation of SVM lost the guest's registers. Returns the words for the failure.
 */
export function tripleFaultOnHostState(xenLines: readonly string[]): string | undefined {
  if (!xenLines.some((line) => /Triple fault/.test(line))) return undefined;
  for (const line of xenLines) {
    const rip = /RIP:\s+e008:\[<(ffff82d0[0-9a-f]{8})>\]/.exec(line);
    if (rip)
      return `a triple fault with Xen's own registers as the vCPU's state (RIP e008:${rip[1]}): QEMU's SVM emulation lost the guest's state (lab/NOTES.md)`;
  }
  return undefined;
}

/** A domU's handle: also reads xl's lines for the domain id and its shutdown reason. */
export class DomUHandle extends GuestHandle {
  private domid: number | undefined;
  private shutdownCode: number | undefined;
  private destroyed = false;

  constructor(
    guest: string,
    onTimeout: () => void,
    /** Xen's console lines about a domain id (the lab's com1 log). */
    private readonly xenLines: (domid: number) => string[],
  ) {
    super(guest, onTimeout);
  }

  override line(text: string): void {
    if (text.startsWith('xl: ')) {
      const event = parseXlLine(text);
      if (event) this.domid = event.domid;
      if (event?.kind === 'shutdown') this.shutdownCode = event.code;
      if (event?.kind === 'destroyed') this.destroyed = true;
    }
    super.line(text);
  }

  /** `detail` says how xl ended; this adds how the domain ended. */
  override exited(code: number | null, detail: string): void {
    const ending =
      this.shutdownCode !== undefined
        ? `the domain shut down: ${shutdownReasonWords(this.shutdownCode)}`
        : this.destroyed
          ? 'the domain was destroyed from dom0 (no shutdown of its own)'
          : 'xl reported no shutdown of the domain';
    const xen = this.domid !== undefined ? this.xenLines(this.domid) : [];
    if (this.domid !== undefined) this.setHypervisorLines(xen);
    const emulation = tripleFaultOnHostState(xen);
    super.exited(code, `${ending}${emulation ? `, ${emulation}` : ''}; xl create: ${detail}`);
  }
}
