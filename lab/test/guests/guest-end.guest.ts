/**
 * A guest that ends without `done`, for the lab's own failure reports (guest-end.lab.test.ts):
 * role `exit` ends node with code 3; role `panic` panics its kernel (sysrq `c`, which
 * /proc/sysrq-trigger accepts whatever kernel.sysrq says). Each prints one line first.
 */
import { writeFileSync } from 'node:fs';
import { guestArgs } from '../../src/guest.ts';

const { role } = guestArgs();
// stdout is the console (a tty): written before the next statement runs.
console.log(`guest-end: ${String(role)} now`);
if (role === 'panic') writeFileSync('/proc/sysrq-trigger', 'c');
process.exit(3);
