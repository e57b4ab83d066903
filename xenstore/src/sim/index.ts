/** `@moat/xenstore/sim`: an in-process xenstored modelled on the C xenstored of Xen 4.17. */
export { XENSTORED_4_17_QUOTAS, type XenstoredQuotas } from './quotas.ts';
export { SimTransport } from './transport.ts';
export { SimXenbusError, SimXenbusFile } from './xenbus-device.ts';
export { SimConnection, XenstoredSim, type XenstoredSimOptions } from './xenstored.ts';
