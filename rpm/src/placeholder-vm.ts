/**
 * Stand-in for a moat VM that is not built yet: it says so on the console every minute and
 * idles, so its template and kernel directory can be packaged and booted before the real VM
 * exists. `MOAT_VM_NAME` and `MOAT_VM_ISSUE` are set when it is bundled (rpm/src/dist.ts).
 */
declare const MOAT_VM_NAME: string;
declare const MOAT_VM_ISSUE: string;

const line = `${MOAT_VM_NAME} placeholder: the real VM comes with issue ${MOAT_VM_ISSUE}; idling`;
console.log(line);
setInterval(() => console.log(line), 60_000);
