/** `@moat/xen/conformance`: the loopback suite and the case runner the lab and the CLI use. */
export { type CaseResult, runCases, within } from './cases.ts';
export { type XenConformanceCase, type XenConformanceTarget, xenConformanceSuite } from './conformance.ts';
