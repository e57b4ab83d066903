/**
 * What a VM's main imports from the libraries (the QubesDB replica, the qrexec agent, the GUI
 * agent, the xenstore client, vchan over Xen): `./moat bench vm-bundle` bundles this to show
 * that a VM carries no simulator, conformance suite, lab daemon or bench fixture.
 */

export { raiseGntallocLimit, setMonitorLayoutService, startGuiAgent } from '@moat/gui-agent';
export { startAgent } from '@moat/qrexec';
export { connectQubesDb } from '@moat/qubesdb';
export { waitForServerInXenstore, xenstoreLiveness, xenVchanTransport } from '@moat/vchan';
export { openNativeDomain, openXenbusDevice } from '@moat/xen';
export { xenstoreOverXenbus } from '@moat/xenstore';
